/// A generic operation over one numeric element type, chosen at run time from a `DType`.
///
/// Swift has no generic closures; a visitor lets a kernel write its loop once as a generic method
/// and still get a specialised copy per element type.
public protocol NumericVisitor {
    associatedtype Result
    func visit<T: NumericScalar>(_ type: T.Type) throws -> Result
}

/// Raised when a dtype is not one a generic numeric routine accepts.
public struct UnsupportedDTypeError: Error, CustomStringConvertible {
    public let dtype: DType
    public let context: String
    public var description: String { "\(context) does not support element type \(dtype)" }
    public init(dtype: DType, context: String) {
        self.dtype = dtype
        self.context = context
    }
}

extension DType {
    /// Calls `visitor.visit(T.self)` with the Swift type of this numeric dtype.
    @inlinable
    public func dispatch<V: NumericVisitor>(_ visitor: V, context: String = "operation") throws -> V.Result {
        switch self {
        case .float32: return try visitor.visit(Float.self)
        case .float64: return try visitor.visit(Double.self)
        case .float16: return try visitor.visit(Float16.self)
        case .int8: return try visitor.visit(Int8.self)
        case .uint8: return try visitor.visit(UInt8.self)
        case .int16: return try visitor.visit(Int16.self)
        case .uint16: return try visitor.visit(UInt16.self)
        case .int32: return try visitor.visit(Int32.self)
        case .uint32: return try visitor.visit(UInt32.self)
        case .int64: return try visitor.visit(Int64.self)
        case .uint64: return try visitor.visit(UInt64.self)
        case .bool, .string: throw UnsupportedDTypeError(dtype: self, context: context)
        }
    }
}
