#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A 64-byte aligned, fixed-size block of memory that backs a numeric `Tensor`.
///
/// `@unchecked Sendable`: the class itself never mutates after init; tensors only write through it
/// after proving unique ownership (copy-on-write), so no two threads write the same storage.
public final class TensorStorage: @unchecked Sendable {
    public static let alignment = 64

    public let bytes: UnsafeMutableRawPointer
    public let byteCount: Int

    /// Allocates uninitialised memory of at least `byteCount` bytes.
    public init(byteCount: Int) {
        self.byteCount = byteCount
        var pointer: UnsafeMutableRawPointer?
        let status = posix_memalign(&pointer, TensorStorage.alignment, Swift.max(byteCount, TensorStorage.alignment))
        guard status == 0, let pointer else { fatalError("out of memory allocating \(byteCount) bytes") }
        bytes = pointer
    }

    /// Allocates zero-filled memory.
    public convenience init(zeroedByteCount byteCount: Int) {
        self.init(byteCount: byteCount)
        bytes.initializeMemory(as: UInt8.self, repeating: 0, count: byteCount)
    }

    public func copy() -> TensorStorage {
        let clone = TensorStorage(byteCount: byteCount)
        clone.bytes.copyMemory(from: bytes, byteCount: byteCount)
        return clone
    }

    deinit { free(bytes) }
}
