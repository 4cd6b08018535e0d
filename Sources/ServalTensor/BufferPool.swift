/// Recycles tensor storage between the steps of a run, and across runs of the same session.
///
/// Storage is filed by exact byte size: a plan for a fixed input shape asks for the same sizes every run,
/// so after the first run most allocations are served from here instead of `malloc`.
/// `@unchecked Sendable`: the pool itself is not thread-safe; a session hands each pool to one run at a time
/// (checked out of and back into a mutex-guarded idle list), so it is never used by two threads at once.
public final class BufferPool: @unchecked Sendable {
    private var free: [Int: [TensorStorage]] = [:]
    private var retainedBytes = 0
    /// Upper bound on idle bytes kept between runs.
    public let capacity: Int

    public init(capacity: Int = 1 << 30) { self.capacity = capacity }

    /// Uninitialised storage of exactly `byteCount` bytes, reused if one is idle.
    public func storage(byteCount: Int) -> TensorStorage {
        if var list = free[byteCount], let reused = list.popLast() {
            free[byteCount] = list
            retainedBytes -= byteCount
            return reused
        }
        return TensorStorage(byteCount: byteCount)
    }

    public func tensor(_ dtype: DType, shape: [Int]) -> Tensor {
        if dtype == .string { return Tensor(zeros: .string, shape: shape) }
        let bytes = shape.reduce(1, *) * dtype.byteSize
        return Tensor(storage: storage(byteCount: bytes), dtype: dtype, shape: shape)
    }

    /// Takes the tensor's storage back if nothing else references it.
    public func recycle(_ tensor: inout Tensor) {
        tensor.releaseUniqueStorage { storage in
            guard retainedBytes + storage.byteCount <= capacity, storage.byteCount > 0 else { return }
            free[storage.byteCount, default: []].append(storage)
            retainedBytes += storage.byteCount
        }
    }

    public var idleBytes: Int { retainedBytes }
}
