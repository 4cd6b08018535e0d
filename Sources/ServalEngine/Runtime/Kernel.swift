import ServalTensor

/// A compiled operator: built once per node at load (attributes read, weights pre-packed),
/// then run any number of times, possibly from many tasks at once.
public protocol Kernel: Sendable {
    /// Computes the node's outputs. `inputs[i]` is nil for an omitted optional input.
    func run(_ inputs: [Value?], _ context: RunContext) throws -> [Value]
}

/// Per-run services for kernels: the buffer pool and the intra-op thread budget.
public final class RunContext {
    public let pool: BufferPool
    public let threads: Int

    public init(pool: BufferPool = BufferPool(), threads: Int = 1) {
        self.pool = pool
        self.threads = max(1, threads)
    }

    /// An output tensor whose storage may come from the pool; every element must be written.
    public func allocate(_ dtype: DType, _ shape: [Int]) -> Tensor { pool.tensor(dtype, shape: shape) }

    /// Runs `body(chunk)` for chunks 0..<count, spread over at most `threads` workers.
    public func parallelFor(_ count: Int, _ body: (Int) -> Void) {
        Parallel.forEach(count, threads: threads, body)
    }
}

/// A kernel written as a closure, for ops whose work fits in a few lines.
public struct ClosureKernel: Kernel {
    let body: @Sendable ([Value?], RunContext) throws -> [Value]
    public init(_ body: @escaping @Sendable ([Value?], RunContext) throws -> [Value]) { self.body = body }
    public func run(_ inputs: [Value?], _ context: RunContext) throws -> [Value] { try body(inputs, context) }
}

extension Array where Element == Value? {
    /// The tensor at `index`, throwing if it is missing or not a tensor.
    public func tensor(_ index: Int) throws -> Tensor {
        guard index < count, let value = self[index] else { throw KernelError("missing required input \(index)") }
        guard case .tensor(let tensor) = value else { throw KernelError("input \(index) must be a tensor") }
        return tensor
    }

    /// The tensor at `index`, or nil when the optional input is omitted.
    public func optionalTensor(_ index: Int) throws -> Tensor? {
        guard index < count, let value = self[index] else { return nil }
        guard case .tensor(let tensor) = value else { throw KernelError("input \(index) must be a tensor") }
        return tensor
    }
}
