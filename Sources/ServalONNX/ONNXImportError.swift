/// Why an ONNX file could not be turned into a Serval graph.
public enum ONNXImportError: Error, Sendable, CustomStringConvertible, Equatable {
    case unreadableFile(path: String, reason: String)
    case notAModel(String)
    case unsupportedIRVersion(Int)
    case unsupportedTensorType(tensor: String, typeCode: Int)
    case malformedTensor(tensor: String, reason: String)
    case externalData(tensor: String, reason: String)

    public var description: String {
        switch self {
        case .unreadableFile(let path, let reason): return "cannot read \(path): \(reason)"
        case .notAModel(let reason): return "not a valid ONNX model: \(reason)"
        case .unsupportedIRVersion(let version): return "unsupported ONNX IR version \(version) (supported: 3 to 14)"
        case .unsupportedTensorType(let tensor, let code): return "tensor '\(tensor)' has unsupported data type \(Self.typeName(code))"
        case .malformedTensor(let tensor, let reason): return "tensor '\(tensor)' is malformed: \(reason)"
        case .externalData(let tensor, let reason): return "external data of tensor '\(tensor)': \(reason)"
        }
    }

    static func typeName(_ code: Int) -> String {
        let names = [0: "UNDEFINED", 14: "COMPLEX64", 15: "COMPLEX128", 16: "BFLOAT16", 17: "FLOAT8E4M3FN", 18: "FLOAT8E4M3FNUZ",
                     19: "FLOAT8E5M2", 20: "FLOAT8E5M2FNUZ", 21: "UINT4", 22: "INT4", 23: "FLOAT4E2M1"]
        return names[code].map { "\($0) (\(code))" } ?? "code \(code)"
    }
}
