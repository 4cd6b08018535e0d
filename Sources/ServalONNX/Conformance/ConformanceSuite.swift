import Foundation
import ServalEngine
import ServalTensor

/// Runs ONNX backend test cases (`model.onnx` + `test_data_set_N/{input,output}_K.pb`) and compares
/// Serval's outputs with the expected ones using the suite's tolerances (rtol 1e-3, atol 1e-7).
public struct ConformanceSuite {
    public enum Outcome: Sendable, Equatable {
        case passed
        case failed(String)
        case skipped(String)
    }

    public let root: URL
    public var relativeTolerance: Double = 1e-3
    public var absoluteTolerance: Double = 1e-7

    public init(root: URL) { self.root = root }

    /// Every case folder under `root`, as paths relative to it (e.g. `node/test_add`), sorted.
    public func caseNames() -> [String] {
        guard let enumerator = FileManager.default.enumerator(at: root, includingPropertiesForKeys: nil) else { return [] }
        var names: [String] = []
        let base = root.standardizedFileURL.path
        for case let url as URL in enumerator where url.lastPathComponent == "model.onnx" {
            let folder = url.deletingLastPathComponent().standardizedFileURL.path
            names.append(String(folder.dropFirst(base.count).drop(while: { $0 == "/" })))
        }
        return names.sorted()
    }

    /// Runs one case. Unsupported operators make it `skipped`; anything else that goes wrong is `failed`.
    public func run(_ name: String) -> Outcome {
        let folder = root.appendingPathComponent(name)
        let model: ONNXModel
        do { model = try ONNXModel(contentsOf: folder.appendingPathComponent("model.onnx")) } catch {
            return .failed("load: \(error)")
        }
        let unsupported = Session.unsupportedOperators(in: model.graph)
        if !unsupported.isEmpty { return .skipped(EngineError.unsupportedOperators(unsupported).description) }
        let session: Session
        do { session = try Session(graph: model.graph) } catch { return .failed("compile: \(error)") }
        let dataSets = ((try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? [])
            .filter { $0.hasPrefix("test_data_set_") }.sorted()
        if dataSets.isEmpty { return .failed("no test_data_set folders") }
        for dataSet in dataSets {
            let directory = folder.appendingPathComponent(dataSet)
            do {
                let inputs = try readTensors(directory, prefix: "input_")
                var feeds: [String: Value] = [:]
                for (index, input) in model.graph.inputs.enumerated() where index < inputs.count {
                    feeds[input.name] = .tensor(inputs[index])
                }
                let results = try session.run(feeds)
                let expected = try readTensors(directory, prefix: "output_")
                for (index, output) in model.graph.outputs.enumerated() where index < expected.count {
                    guard let actual = results[output.name] else { return .failed("\(dataSet): no output '\(output.name)'") }
                    if let problem = compare(actual, expected[index]) { return .failed("\(dataSet) output '\(output.name)': \(problem)") }
                }
            } catch {
                return .failed("\(dataSet): \(error)")
            }
        }
        return .passed
    }

    private func readTensors(_ directory: URL, prefix: String) throws -> [Tensor] {
        var tensors: [Tensor] = []
        var index = 0
        while true {
            let url = directory.appendingPathComponent("\(prefix)\(index).pb")
            guard let data = try? Data(contentsOf: url) else { break }
            tensors.append(try ONNXModel.tensor(serialized: data))
            index += 1
        }
        return tensors
    }

    /// nil when `actual` matches `expected`, else what differs.
    public func compare(_ actual: Value, _ expected: Tensor) -> String? {
        guard case .tensor(let tensor) = actual else { return "got \(actual.typeDescription), expected a tensor" }
        guard tensor.dtype == expected.dtype else { return "dtype \(tensor.dtype), expected \(expected.dtype)" }
        guard tensor.shape == expected.shape else { return "shape \(tensor.shape), expected \(expected.shape)" }
        if tensor.dtype == .string { return tensor.strings == expected.strings ? nil : "strings differ" }
        guard let a = try? tensor.doubles(), let e = try? expected.doubles() else { return "cannot compare \(tensor.dtype)" }
        for i in 0..<a.count {
            if a[i].isNaN && e[i].isNaN { continue }
            if a[i] == e[i] { continue }
            if abs(a[i] - e[i]) > absoluteTolerance + relativeTolerance * abs(e[i]) {
                return "element \(i) is \(a[i]), expected \(e[i])"
            }
        }
        return nil
    }
}
