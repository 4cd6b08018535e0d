import Foundation
import ServalEngine
import ServalONNX
import ServalTensor
import Testing

/// Broken or unsupported model files give one clear error, never a crash.
struct ImportErrorTests {
    private func temporaryFile(_ bytes: Data) throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("serval-\(UUID().uuidString).onnx")
        try bytes.write(to: url)
        return url
    }

    @Test func rejectsTruncatedFile() throws {
        let full = try Data(contentsOf: Fixtures.root.appendingPathComponent("lenet/model.onnx"))
        let url = try temporaryFile(full.prefix(full.count / 2))
        #expect { try ONNXModel(contentsOf: url) } throws: { error in
            "\(error)".hasPrefix("not a valid ONNX model")
        }
    }

    @Test func rejectsRandomBytes() throws {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<20 {
            let bytes = Data((0..<512).map { _ in UInt8.random(in: 0...255, using: &generator) })
            let url = try temporaryFile(bytes)
            #expect(throws: ONNXImportError.self) { try ONNXModel(contentsOf: url) }
        }
    }

    @Test func rejectsMissingFile() {
        #expect { try ONNXModel(contentsOf: URL(fileURLWithPath: "/nonexistent/model.onnx")) } throws: { error in
            "\(error)".contains("cannot read /nonexistent/model.onnx")
        }
    }

    @Test func listsEveryUnsupportedOperatorWithDomainAndOpset() throws {
        let model = try ONNXModel(contentsOf: Fixtures.root.appendingPathComponent("unsupported_ops.onnx"))
        #expect { try Session(graph: model.graph) } throws: { error in
            guard case EngineError.unsupportedOperators(let ops) = error else { return false }
            return ops == [UnsupportedOperator(domain: "", opType: "NonMaxSuppression", opset: 17),
                           UnsupportedOperator(domain: "com.example", opType: "FancyOp", opset: 1)]
                && "\(error)" == "unsupported operators: ai.onnx:NonMaxSuppression (opset 17), com.example:FancyOp (opset 1)"
        }
    }

    @Test func readsExternalDataRelativeToTheModel() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("serval-external-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let weights: [Float] = [1, 2, 3, 4]
        var blob = Data(repeating: 0xAB, count: 16)  // offset: the tensor starts after 16 unrelated bytes
        weights.withUnsafeBytes { blob.append(contentsOf: $0) }
        try blob.write(to: folder.appendingPathComponent("weights.bin"))
        try ExternalDataModel.make(location: "weights.bin", offset: 16, length: 16).write(to: folder.appendingPathComponent("model.onnx"))
        let model = try ONNXModel(contentsOf: folder.appendingPathComponent("model.onnx"))
        let results = try Session(graph: model.graph).run(["x": Tensor(shape: [4], scalars: [Float](repeating: 1, count: 4))])
        #expect(results["y"]?.tensor?.scalars(as: Float.self) == [2, 3, 4, 5])
    }

    /// A 1 KB file whose initializer declares 100 GB is refused from the sizes alone, before any allocation.
    @Test func refusesADeclaredSizeTheExternalFileDoesNotHold() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("serval-external-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try Data(repeating: 0, count: 1024).write(to: folder.appendingPathComponent("weights.bin"))
        for length in [nil, 100_000_000_000] as [Int?] {
            try ExternalDataModel.make(location: "weights.bin", offset: 0, length: length, dims: [25_000_000_000]).write(to: folder.appendingPathComponent("model.onnx"))
            #expect { try ONNXModel(contentsOf: folder.appendingPathComponent("model.onnx")) } throws: { error in
                "\(error)".contains("weights.bin holds 1024 bytes after offset 0; the tensor declares 100000000000")
            }
        }
    }

    @Test func refusesAShapeWhoseSizeDoesNotFitAnInteger() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("serval-external-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try ExternalDataModel.make(location: "weights.bin", offset: 0, length: 16, dims: [1 << 40, 1 << 30]).write(to: folder.appendingPathComponent("model.onnx"))
        #expect { try ONNXModel(contentsOf: folder.appendingPathComponent("model.onnx")) } throws: { error in
            "\(error)".contains("declares more elements than can exist")
        }
    }

    @Test func reportsMissingExternalFile() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("serval-external-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try ExternalDataModel.make(location: "missing.bin", offset: 0, length: 16).write(to: folder.appendingPathComponent("model.onnx"))
        #expect { try ONNXModel(contentsOf: folder.appendingPathComponent("model.onnx")) } throws: { error in
            "\(error)".hasPrefix("external data of tensor 'w'")
        }
    }
}
