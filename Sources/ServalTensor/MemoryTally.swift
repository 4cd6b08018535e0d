/// Adds up the bytes a set of values keeps alive, counting each tensor buffer once however many tensors share it
/// (copy-on-write copies, a kernel holding its graph's initializer). For the resident cost of a loaded model.
public struct MemoryTally {
    private var seen = Set<ObjectIdentifier>()
    private var seenBuffers = Set<UInt>()
    public private(set) var bytes = 0

    public init() {}

    /// A tensor's storage (once per buffer) or its strings' UTF-8 bytes.
    public mutating func add(_ tensor: Tensor) {
        if tensor.dtype == .string {
            bytes += tensor.strings.reduce(0) { $0 + $1.utf8.count + MemoryLayout<String>.stride }
            return
        }
        if seen.insert(ObjectIdentifier(tensor.storage)).inserted { bytes += tensor.storage.byteCount }
    }

    /// Bytes that no other value shares (a pool's idle buffers).
    public mutating func add(bytes count: Int) { bytes += max(0, count) }

    /// A buffer that values may share (an array's elements: copies share them until written), counted once.
    /// Returns false when it was counted already.
    @discardableResult
    public mutating func add(bytes count: Int, buffer: UnsafeRawPointer?) -> Bool {
        if let buffer, !seenBuffers.insert(UInt(bitPattern: buffer)).inserted { return false }
        bytes += max(0, count)
        return true
    }
}
