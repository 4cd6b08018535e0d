/// The element type of a `Tensor`, named after ONNX's `TensorProto.DataType`.
public enum DType: Int, Sendable, CaseIterable, CustomStringConvertible {
    case float32 = 1
    case uint8 = 2
    case int8 = 3
    case uint16 = 4
    case int16 = 5
    case int32 = 6
    case int64 = 7
    case string = 8
    case bool = 9
    case float16 = 10
    case float64 = 11
    case uint32 = 12
    case uint64 = 13

    /// Creates the dtype for an ONNX `TensorProto.DataType` code, or nil when Serval does not store that type.
    public init?(onnxCode: Int) { self.init(rawValue: onnxCode) }

    /// The ONNX `TensorProto.DataType` code.
    public var onnxCode: Int { rawValue }

    /// Bytes per element; 0 for `string`, whose elements are stored out of line.
    public var byteSize: Int {
        switch self {
        case .float32, .int32, .uint32: return 4
        case .float64, .int64, .uint64: return 8
        case .float16, .int16, .uint16: return 2
        case .int8, .uint8, .bool: return 1
        case .string: return 0
        }
    }

    public var isFloatingPoint: Bool { self == .float32 || self == .float64 || self == .float16 }

    public var isInteger: Bool {
        switch self {
        case .int8, .uint8, .int16, .uint16, .int32, .uint32, .int64, .uint64: return true
        default: return false
        }
    }

    /// The ONNX spelling (`tensor(float)` style, without the wrapper).
    public var description: String {
        switch self {
        case .float32: return "float"
        case .float64: return "double"
        case .float16: return "float16"
        case .int8: return "int8"
        case .uint8: return "uint8"
        case .int16: return "int16"
        case .uint16: return "uint16"
        case .int32: return "int32"
        case .uint32: return "uint32"
        case .int64: return "int64"
        case .uint64: return "uint64"
        case .bool: return "bool"
        case .string: return "string"
        }
    }

    /// The KServe v2 / Triton datatype name (`FP32`, `INT64`, `BYTES`...).
    public var kserveName: String {
        switch self {
        case .float32: return "FP32"
        case .float64: return "FP64"
        case .float16: return "FP16"
        case .int8: return "INT8"
        case .uint8: return "UINT8"
        case .int16: return "INT16"
        case .uint16: return "UINT16"
        case .int32: return "INT32"
        case .uint32: return "UINT32"
        case .int64: return "INT64"
        case .uint64: return "UINT64"
        case .bool: return "BOOL"
        case .string: return "BYTES"
        }
    }

    /// Parses a KServe v2 datatype name.
    public init?(kserveName: String) {
        guard let match = DType.allCases.first(where: { $0.kserveName == kserveName }) else { return nil }
        self = match
    }
}
