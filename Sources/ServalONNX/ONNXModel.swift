import Foundation
import SwiftProtobuf
import ServalEngine
import ServalTensor

/// An ONNX file translated into Serval's graph IR, with the metadata `serval inspect` shows.
public struct ONNXModel: Sendable {
    public let graph: Graph
    public let irVersion: Int
    public let producer: String
    public let modelVersion: Int
    public let metadata: [String: String]

    /// Loads a model file; external tensor data is resolved relative to the file's folder.
    /// `fileRead` is called once the file's bytes are in memory, before they are parsed (load-time breakdowns).
    public init(contentsOf url: URL, fileRead: () -> Void = {}) throws {
        // The file's bytes are dropped once parsed, before the weights are decoded (peak memory: two copies, not three).
        let proto = try Self.parse(try { let data = try Self.read(url); fileRead(); return data }())
        try self.init(proto: proto, baseDirectory: url.deletingLastPathComponent())
    }

    public init(serialized data: Data, baseDirectory: URL? = nil) throws {
        try self.init(proto: try Self.parse(data), baseDirectory: baseDirectory)
    }

    private static func read(_ url: URL) throws -> Data {
        do { return try Data(contentsOf: url) } catch {
            throw ONNXImportError.unreadableFile(path: url.path, reason: (error as NSError).localizedDescription)
        }
    }

    private static func parse(_ data: Data) throws -> Onnx_ModelProto {
        do {
            return try Onnx_ModelProto(serializedBytes: data)
        } catch {
            throw ONNXImportError.notAModel("protobuf decoding failed (\(error)); the file is truncated or not ONNX")
        }
    }

    private init(proto: consuming Onnx_ModelProto, baseDirectory: URL?) throws {
        var proto = proto
        guard proto.hasGraph else { throw ONNXImportError.notAModel("the file has no graph") }
        guard proto.hasIrVersion, (3...14).contains(proto.irVersion) else {
            if !proto.hasIrVersion { throw ONNXImportError.notAModel("the file has no IR version") }
            throw ONNXImportError.unsupportedIRVersion(Int(proto.irVersion))
        }
        var opsets: [String: Int] = [:]
        for entry in proto.opsetImport {
            // Some exporters list a domain twice; the highest version wins.
            let domain = Graph.canonicalDomain(entry.domain)
            opsets[domain] = max(opsets[domain] ?? 0, Int(entry.version))
        }
        if opsets[""] == nil && proto.opsetImport.isEmpty { opsets[""] = 1 }
        // The importer takes the only reference to the graph message, so each weight's bytes go once decoded.
        var graphProto = proto.graph
        proto.graph = Onnx_GraphProto()
        graph = try GraphImporter(baseDirectory: baseDirectory).graph(from: &graphProto, opsets: opsets)
        irVersion = Int(proto.irVersion)
        producer = [proto.producerName, proto.producerVersion].filter { !$0.isEmpty }.joined(separator: " ")
        modelVersion = Int(proto.modelVersion)
        metadata = Dictionary(proto.metadataProps.map { ($0.key, $0.value) }, uniquingKeysWith: { _, last in last })
    }
}

/// Translates a `GraphProto`: names, types, attributes and constants only; it never computes.
struct GraphImporter {
    let baseDirectory: URL?

    /// Translates `proto`, emptying its initializers as they are decoded so their bytes are freed along the way.
    func graph(from proto: inout Onnx_GraphProto, opsets: [String: Int]) throws -> Graph {
        var initializers: [String: Tensor] = [:]
        for index in proto.initializer.indices {
            let tensor = proto.initializer[index]
            initializers[tensor.name] = try TensorDecoding.tensor(from: tensor, baseDirectory: baseDirectory)
            proto.initializer[index] = Onnx_TensorProto()
        }
        if !proto.sparseInitializer.isEmpty {
            throw ONNXImportError.notAModel("sparse initializers are not supported")
        }
        let inputs = proto.input.filter { initializers[$0.name] == nil }.map { ValueInfo(name: $0.name, type: valueType($0.type)) }
        let outputs = proto.output.map { ValueInfo(name: $0.name, type: valueType($0.type)) }
        var valueInfo: [String: ValueType] = [:]
        for info in proto.valueInfo { valueInfo[info.name] = valueType(info.type) }
        let nodes = try proto.node.map { node in
            Node(name: node.name, opType: node.opType, domain: node.domain, inputs: node.input, outputs: node.output,
                 attributes: try attributes(node.attribute, node: node.name.isEmpty ? node.opType : node.name))
        }
        return Graph(nodes: nodes, inputs: inputs, outputs: outputs, initializers: initializers, opsets: opsets, valueInfo: valueInfo)
    }

    func valueType(_ proto: Onnx_TypeProto) -> ValueType {
        switch proto.value {
        case .tensorType(let tensor)?:
            let dtype = DType(onnxCode: Int(tensor.elemType))
            guard tensor.hasShape else { return .tensor(dtype: dtype, shape: nil) }
            let dims: [ServalEngine.Dimension] = tensor.shape.dim.map { dim in
                switch dim.value {
                case .dimValue(let value)?: return .fixed(Int(value))
                case .dimParam(let name)?: return name.isEmpty ? .unknown : .symbolic(name)
                case nil: return .unknown
                }
            }
            return .tensor(dtype: dtype, shape: dims)
        case .sequenceType(let sequence)?:
            return .sequence(valueType(sequence.elemType))
        case .mapType(let map)?:
            return .map(key: DType(onnxCode: Int(map.keyType)), value: valueType(map.valueType))
        default:
            return .unknown
        }
    }

    func attributes(_ protos: [Onnx_AttributeProto], node: String) throws -> [String: Attribute] {
        var result: [String: Attribute] = [:]
        for proto in protos {
            result[proto.name] = try attribute(proto, node: node)
        }
        return result
    }

    func attribute(_ proto: Onnx_AttributeProto, node: String) throws -> Attribute {
        func text(_ data: Data) -> String { String(decoding: data, as: UTF8.self) }
        switch proto.type {
        case .float: return .float(proto.f)
        case .int: return .int(Int(proto.i))
        case .string: return .string(text(proto.s))
        case .tensor: return .tensor(try TensorDecoding.tensor(from: proto.t, baseDirectory: baseDirectory))
        case .graph: return .graph(name: proto.g.name)
        case .sparseTensor: return .sparseTensor
        case .typeProto: return .typeProto
        case .floats: return .floats(proto.floats)
        case .ints: return .ints(proto.ints.map { Int($0) })
        case .strings: return .strings(proto.strings.map(text))
        case .tensors: return .tensors(try proto.tensors.map { try TensorDecoding.tensor(from: $0, baseDirectory: baseDirectory) })
        case .graphs: return .graphs(names: proto.graphs.map(\.name))
        case .sparseTensors: return .sparseTensor
        case .typeProtos: return .typeProto
        default:
            // IR < 3 files may leave `type` unset: infer it from the populated field.
            if !proto.floats.isEmpty { return .floats(proto.floats) }
            if !proto.ints.isEmpty { return .ints(proto.ints.map { Int($0) }) }
            if !proto.strings.isEmpty { return .strings(proto.strings.map(text)) }
            if proto.hasF { return .float(proto.f) }
            if proto.hasI { return .int(Int(proto.i)) }
            if proto.hasS { return .string(text(proto.s)) }
            if proto.hasT { return .tensor(try TensorDecoding.tensor(from: proto.t, baseDirectory: baseDirectory)) }
            if proto.hasG { return .graph(name: proto.g.name) }
            throw ONNXImportError.notAModel("node \(node): attribute '\(proto.name)' has no value")
        }
    }
}

extension ONNXModel {
    /// Decodes a serialized `TensorProto` (the backend test suite's `.pb` files, `serval run` inputs).
    public static func tensor(serialized data: Data) throws -> Tensor {
        let proto: Onnx_TensorProto
        do { proto = try Onnx_TensorProto(serializedBytes: data) } catch {
            throw ONNXImportError.notAModel("not a TensorProto: \(error)")
        }
        return try TensorDecoding.tensor(from: proto, baseDirectory: nil)
    }
}
