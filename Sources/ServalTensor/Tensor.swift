/// An n-dimensional array: dtype, shape and contiguous row-major storage, with copy-on-write.
///
/// Numeric tensors live in 64-byte aligned `TensorStorage`; string tensors keep their elements in `strings`.
/// Copies share storage until one of them is written through `withUnsafeMutableBufferPointer`.
public struct Tensor: Sendable {
    public let dtype: DType
    public private(set) var shape: [Int]
    @usableFromInline var storage: TensorStorage
    public private(set) var strings: [String]

    /// Number of elements (1 for a scalar, 0 if any dimension is 0).
    public var count: Int { shape.reduce(1, *) }
    public var rank: Int { shape.count }
    public var byteCount: Int { count * dtype.byteSize }

    /// A zero-filled tensor (empty strings for `string`).
    public init(zeros dtype: DType, shape: [Int]) {
        let count = shape.reduce(1, *)
        self.dtype = dtype
        self.shape = shape
        self.storage = TensorStorage(zeroedByteCount: count * dtype.byteSize)
        self.strings = dtype == .string ? Array(repeating: "", count: count) : []
    }

    /// A tensor whose numeric contents are not initialised; the caller must write every element.
    public init(uninitialized dtype: DType, shape: [Int]) {
        precondition(dtype != .string, "string tensors have no raw storage")
        self.dtype = dtype
        self.shape = shape
        self.storage = TensorStorage(byteCount: shape.reduce(1, *) * dtype.byteSize)
        self.strings = []
    }

    /// Wraps existing storage (from a buffer pool or a file); `storage` must hold at least `count * byteSize` bytes.
    public init(storage: TensorStorage, dtype: DType, shape: [Int]) {
        precondition(storage.byteCount >= shape.reduce(1, *) * dtype.byteSize, "storage too small for shape")
        self.dtype = dtype
        self.shape = shape
        self.storage = storage
        self.strings = []
    }

    public init<T: TensorScalar>(shape: [Int], scalars: [T]) {
        precondition(shape.reduce(1, *) == scalars.count, "shape \(shape) does not hold \(scalars.count) elements")
        self.init(uninitialized: T.dtype, shape: shape)
        scalars.withUnsafeBytes { source in
            if let base = source.baseAddress { storage.bytes.copyMemory(from: base, byteCount: source.count) }
        }
    }

    public init(shape: [Int], strings: [String]) {
        precondition(shape.reduce(1, *) == strings.count, "shape \(shape) does not hold \(strings.count) strings")
        self.dtype = .string
        self.shape = shape
        self.storage = TensorStorage(byteCount: 0)
        self.strings = strings
    }

    public static func scalar<T: TensorScalar>(_ value: T) -> Tensor { Tensor(shape: [], scalars: [value]) }

    /// The elements as a Swift array; `T` must match `dtype`.
    public func scalars<T: TensorScalar>(as type: T.Type = T.self) -> [T] {
        withUnsafeBufferPointer(as: T.self) { Array($0) }
    }

    @inlinable
    public func withUnsafeBufferPointer<T: TensorScalar, R>(
        as type: T.Type, _ body: (UnsafeBufferPointer<T>) throws -> R
    ) rethrows -> R {
        precondition(T.dtype == dtype, "tensor is \(dtype), read as \(T.dtype)")
        let pointer = storage.bytes.assumingMemoryBound(to: T.self)
        return try body(UnsafeBufferPointer(start: pointer, count: count))
    }

    /// Gives write access, copying the storage first if another tensor shares it.
    @inlinable
    public mutating func withUnsafeMutableBufferPointer<T: TensorScalar, R>(
        as type: T.Type, _ body: (UnsafeMutableBufferPointer<T>) throws -> R
    ) rethrows -> R {
        precondition(T.dtype == dtype, "tensor is \(dtype), written as \(T.dtype)")
        if !isKnownUniquelyReferenced(&storage) { storage = storage.copy() }
        let pointer = storage.bytes.assumingMemoryBound(to: T.self)
        return try body(UnsafeMutableBufferPointer(start: pointer, count: count))
    }

    /// Raw little-endian bytes of a numeric tensor.
    public func withUnsafeRawBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try body(UnsafeRawBufferPointer(start: storage.bytes, count: byteCount))
    }

    public mutating func withUnsafeMutableRawBytes<R>(_ body: (UnsafeMutableRawBufferPointer) throws -> R) rethrows -> R {
        if !isKnownUniquelyReferenced(&storage) { storage = storage.copy() }
        return try body(UnsafeMutableRawBufferPointer(start: storage.bytes, count: byteCount))
    }

    /// Replaces the string elements (string tensors only).
    public mutating func setStrings(_ values: [String]) {
        precondition(dtype == .string && values.count == count)
        strings = values
    }

    /// The same elements under another shape with the same element count; shares storage.
    public func reshaped(_ newShape: [Int]) -> Tensor {
        precondition(newShape.reduce(1, *) == count, "cannot reshape \(shape) to \(newShape)")
        var copy = self
        copy.shape = newShape
        return copy
    }

    /// True when both tensors share one storage block (used by buffer reuse and tests).
    public func sharesStorage(with other: Tensor) -> Bool { storage === other.storage }

    /// Hands the storage to `body` if this tensor is its only owner, for recycling.
    public mutating func releaseUniqueStorage(_ body: (TensorStorage) -> Void) {
        guard dtype != .string, isKnownUniquelyReferenced(&storage) else { return }
        body(storage)
    }
}

extension Tensor: CustomStringConvertible {
    public var description: String { "tensor(\(dtype))\(shape)" }
}

extension Tensor {
    /// The flat index of the first NaN or infinite element of a floating-point tensor; nil when every element is
    /// finite, and always nil for other datatypes.
    public func firstNonFinite() -> Int? {
        func scan<T: BinaryFloatingPoint & TensorScalar>(_ type: T.Type) -> Int? {
            withUnsafeBufferPointer(as: T.self) { values in values.firstIndex { !$0.isFinite } }
        }
        switch dtype {
        case .float32: return scan(Float.self)
        case .float64: return scan(Double.self)
        case .float16: return scan(Float16.self)
        default: return nil
        }
    }
}
