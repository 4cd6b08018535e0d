/// A Swift type that can be the element of a numeric `Tensor`.
public protocol TensorScalar: Sendable {
    static var dtype: DType { get }
}

/// A numeric element type with the conversions that generic kernels need.
public protocol NumericScalar: TensorScalar, Numeric, Comparable {
    /// Converts with C semantics: floats round to nearest, integers truncate toward zero and saturate.
    init(fromDouble value: Double)
    var doubleValue: Double { get }
    /// Integer types: the value's two's-complement bits widened to 64; floats: not used.
    init(integerBits: Int64)
    var integerBits: Int64 { get }
    static var isIntegerType: Bool { get }
    /// Arithmetic that never traps: integers wrap, and divide by zero gives 0.
    static func add(_ a: Self, _ b: Self) -> Self
    static func subtract(_ a: Self, _ b: Self) -> Self
    static func multiply(_ a: Self, _ b: Self) -> Self
    static func divide(_ a: Self, _ b: Self) -> Self
    static var lowest: Self { get }
    static var highest: Self { get }
}

extension NumericScalar where Self: FixedWidthInteger {
    @inlinable public init(integerBits: Int64) { self.init(truncatingIfNeeded: integerBits) }
    @inlinable public var integerBits: Int64 { Int64(truncatingIfNeeded: self) }
    @inlinable public static var isIntegerType: Bool { true }
    @inlinable public static func add(_ a: Self, _ b: Self) -> Self { a &+ b }
    @inlinable public static func subtract(_ a: Self, _ b: Self) -> Self { a &- b }
    @inlinable public static func multiply(_ a: Self, _ b: Self) -> Self { a &* b }
    @inlinable public static func divide(_ a: Self, _ b: Self) -> Self {
        if b == 0 { return 0 }
        let (quotient, overflow) = a.dividedReportingOverflow(by: b)
        return overflow ? a : quotient
    }
    @inlinable public static var lowest: Self { .min }
    @inlinable public static var highest: Self { .max }
}

extension NumericScalar where Self: BinaryFloatingPoint {
    @inlinable public init(integerBits: Int64) { self.init(integerBits) }
    @inlinable public var integerBits: Int64 { integerFromDouble(doubleValue) }
    @inlinable public static var isIntegerType: Bool { false }
    @inlinable public static func add(_ a: Self, _ b: Self) -> Self { a + b }
    @inlinable public static func subtract(_ a: Self, _ b: Self) -> Self { a - b }
    @inlinable public static func multiply(_ a: Self, _ b: Self) -> Self { a * b }
    @inlinable public static func divide(_ a: Self, _ b: Self) -> Self { a / b }
    @inlinable public static var lowest: Self { -.infinity }
    @inlinable public static var highest: Self { .infinity }
}

extension NumericScalar {
    /// Converts an element of another numeric type the way ONNX Cast does.
    @inlinable public init<Source: NumericScalar>(converting value: Source) {
        if Self.isIntegerType && Source.isIntegerType {
            self.init(integerBits: value.integerBits)
        } else if Source.isIntegerType && !Self.isIntegerType && (Source.self == Int64.self || Source.self == UInt64.self) {
            self.init(fromDouble: Source.self == UInt64.self ? Double(UInt64(truncatingIfNeeded: value.integerBits)) : Double(value.integerBits))
        } else {
            self.init(fromDouble: value.doubleValue)
        }
    }
}

extension Float: NumericScalar {
    public static var dtype: DType { .float32 }
    @inlinable public init(fromDouble value: Double) { self = Float(value) }
    @inlinable public var doubleValue: Double { Double(self) }
}
extension Double: NumericScalar {
    public static var dtype: DType { .float64 }
    @inlinable public init(fromDouble value: Double) { self = value }
    @inlinable public var doubleValue: Double { self }
}
extension Float16: NumericScalar {
    public static var dtype: DType { .float16 }
    @inlinable public init(fromDouble value: Double) { self = Float16(value) }
    @inlinable public var doubleValue: Double { Double(self) }
}

/// Integer conversions follow C semantics for in-range values and clamp NaN/out-of-range to 0/limits.
@inlinable public func integerFromDouble<I: FixedWidthInteger>(_ value: Double) -> I {
    if value.isNaN { return 0 }
    if value <= Double(I.min) { return I.min }
    if value >= Double(I.max) { return I.max }
    return I(value.rounded(.towardZero))
}

extension Int8: NumericScalar {
    public static var dtype: DType { .int8 }
    @inlinable public init(fromDouble value: Double) { self = integerFromDouble(value) }
    @inlinable public var doubleValue: Double { Double(self) }
}
extension UInt8: NumericScalar {
    public static var dtype: DType { .uint8 }
    @inlinable public init(fromDouble value: Double) { self = integerFromDouble(value) }
    @inlinable public var doubleValue: Double { Double(self) }
}
extension Int16: NumericScalar {
    public static var dtype: DType { .int16 }
    @inlinable public init(fromDouble value: Double) { self = integerFromDouble(value) }
    @inlinable public var doubleValue: Double { Double(self) }
}
extension UInt16: NumericScalar {
    public static var dtype: DType { .uint16 }
    @inlinable public init(fromDouble value: Double) { self = integerFromDouble(value) }
    @inlinable public var doubleValue: Double { Double(self) }
}
extension Int32: NumericScalar {
    public static var dtype: DType { .int32 }
    @inlinable public init(fromDouble value: Double) { self = integerFromDouble(value) }
    @inlinable public var doubleValue: Double { Double(self) }
}
extension UInt32: NumericScalar {
    public static var dtype: DType { .uint32 }
    @inlinable public init(fromDouble value: Double) { self = integerFromDouble(value) }
    @inlinable public var doubleValue: Double { Double(self) }
}
extension Int64: NumericScalar {
    public static var dtype: DType { .int64 }
    @inlinable public init(fromDouble value: Double) { self = integerFromDouble(value) }
    @inlinable public var doubleValue: Double { Double(self) }
}
extension UInt64: NumericScalar {
    public static var dtype: DType { .uint64 }
    @inlinable public init(fromDouble value: Double) { self = integerFromDouble(value) }
    @inlinable public var doubleValue: Double { Double(self) }
}
extension Bool: TensorScalar {
    public static var dtype: DType { .bool }
}
