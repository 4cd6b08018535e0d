import Foundation
import ServalEngine
import ServalONNX
import ServalTensor
import Testing

/// Golden models from scripts/fixtures/make_fixtures.py: Serval must reproduce onnxruntime's outputs
/// (float32 within 1e-4 relative error, labels exactly).
struct GoldenModelTests {
    static let caseNames: [String] = {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: Fixtures.root.path)) ?? []
        return names.filter { FileManager.default.fileExists(atPath: Fixtures.root.appendingPathComponent("\($0)/case.json").path) }.sorted()
    }()

    @Test func fixturesArePresent() {
        #expect(Self.caseNames.count >= 15, "run scripts/fixtures/make_fixtures.py")
    }

    @Test(arguments: caseNames)
    func matchesOnnxRuntime(_ name: String) throws {
        let golden = try GoldenCase(name: name)
        for threads in [1, 2] {
            let session = try Session(graph: golden.model.graph, options: SessionOptions(intraOpThreads: threads))
            let results = try session.run(golden.inputs)
            for (output, expected) in golden.outputs {
                let actual = try #require(results[output]?.tensor, "output \(output) missing")
                try expectClose(actual, expected, "\(name)/\(output)")
            }
            for (output, expected) in golden.maps {
                guard case .mapSequence(let maps)? = results[output] else {
                    Issue.record("\(name)/\(output) is not a sequence of maps")
                    continue
                }
                #expect(try maps.keys.int64s() == expected.keys.int64s())
                try expectClose(maps.values, expected.values, "\(name)/\(output)")
            }
        }
    }

    /// A request with zero rows answers zero rows (scikit-learn models included), as the MLP always did.
    @Test(arguments: caseNames.filter { $0.hasPrefix("sklearn_") })
    func zeroRowsAnswerZeroRows(_ name: String) throws {
        let golden = try GoldenCase(name: name)
        var feeds: [String: Value] = [:]
        for (input, value) in golden.inputs {
            let tensor = try #require(value.tensor)
            feeds[input] = .tensor(Tensor(zeros: tensor.dtype, shape: [0] + tensor.shape.dropFirst()))
        }
        let results = try Session(graph: golden.model.graph).run(feeds)
        #expect(!results.isEmpty)
        for (output, value) in results {
            switch value {
            case .tensor(let tensor): #expect(tensor.shape.first == 0, "\(name)/\(output) has shape \(tensor.shape)")
            case .mapSequence(let maps): #expect(maps.keys.count == 0 || maps.values.shape.first == 0, "\(name)/\(output)")
            }
        }
    }

    @Test func unoptimizedGraphGivesTheSameResults() throws {
        for name in ["resnet18_small", "mobilenet_v2_small", "mlp_matmul", "lenet"] {
            let golden = try GoldenCase(name: name)
            let plain = try Session(graph: golden.model.graph, options: SessionOptions(optimize: false)).run(golden.inputs)
            let optimized = try Session(graph: golden.model.graph).run(golden.inputs)
            for (output, value) in plain {
                try expectClose(try #require(optimized[output]?.tensor), try #require(value.tensor), "\(name)/\(output)")
            }
        }
    }

    @Test func optimizerFoldsBatchNormAndFusesActivations() throws {
        let graph = try GoldenCase(name: "resnet18_small").model.graph
        let optimized = try Session(graph: graph).optimizedGraph
        #expect(graph.nodes.contains { $0.opType == "BatchNormalization" })
        #expect(!optimized.nodes.contains { $0.opType == "BatchNormalization" })
        #expect(!optimized.nodes.contains { $0.opType == "Relu" && $0.inputs.first.map { name in optimized.nodes.contains { $0.outputs.contains(name) && $0.opType == "Conv" } } == true })
        #expect(optimized.nodes.contains { $0.opType == "FusedConv" })
        let mlp = try Session(graph: try GoldenCase(name: "mlp_matmul").model.graph).optimizedGraph
        // The trailing Identity stays: it names a graph output.
        #expect(mlp.nodes.map(\.opType) == ["FusedMatMul", "FusedMatMul", "Identity"])
    }

    @Test func concurrentRunsAgree() async throws {
        let golden = try GoldenCase(name: "lenet")
        let session = try Session(graph: golden.model.graph)
        let expected = try #require(golden.outputs.first)
        try await withThrowingTaskGroup(of: Tensor.self) { group in
            for _ in 0..<8 {
                group.addTask { try #require(try session.run(golden.inputs)[expected.key]?.tensor) }
            }
            for try await result in group { try expectClose(result, expected.value, "lenet concurrent") }
        }
    }
}

/// One fixture folder: model, inputs and reference outputs.
struct GoldenCase {
    struct Manifest: Decodable {
        struct MapFiles: Decodable {
            let keys: String
            let values: String
        }
        let inputs: [String: String]
        let outputs: [String: String]
        let maps: [String: MapFiles]
    }

    let model: ONNXModel
    let inputs: [String: Value]
    let outputs: [String: Tensor]
    let maps: [String: (keys: Tensor, values: Tensor)]

    init(name: String) throws {
        let folder = Fixtures.root.appendingPathComponent(name)
        let manifest = try JSONDecoder().decode(Manifest.self, from: Data(contentsOf: folder.appendingPathComponent("case.json")))
        func load(_ file: String) throws -> Tensor { try NPYFormat.decode(Data(contentsOf: folder.appendingPathComponent(file))) }
        model = try ONNXModel(contentsOf: folder.appendingPathComponent("model.onnx"))
        inputs = try manifest.inputs.mapValues { .tensor(try load($0)) }
        outputs = try manifest.outputs.mapValues(load)
        maps = try manifest.maps.mapValues { (try load($0.keys), try load($0.values)) }
    }
}

enum Fixtures {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures")
}

/// Float tensors: |actual − expected| ≤ 1e-4 · max(|expected|, 1e-2); other types: exact equality.
func expectClose(_ actual: Tensor, _ expected: Tensor, _ label: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
    #expect(actual.shape == expected.shape, "\(label): shape", sourceLocation: sourceLocation)
    guard actual.shape == expected.shape else { return }
    if expected.dtype == .string || actual.dtype == .string {
        #expect(actual.strings == expected.strings, "\(label): strings", sourceLocation: sourceLocation)
        return
    }
    #expect(actual.dtype == expected.dtype, "\(label): dtype", sourceLocation: sourceLocation)
    let a = try actual.doubles(), e = try expected.doubles()
    if expected.dtype.isFloatingPoint {
        let worst = zip(a, e).map { abs($0 - $1) / max(abs($1), 1e-2) }.max() ?? 0
        #expect(worst < 1e-4, "\(label): worst relative error \(worst)", sourceLocation: sourceLocation)
    } else {
        #expect(a == e, "\(label): values differ", sourceLocation: sourceLocation)
    }
}
