import Dispatch

/// Fork-join helper for kernels; runs inline when one thread is allowed.
public enum Parallel {
    public static func forEach(_ count: Int, threads: Int, _ body: (Int) -> Void) {
        if threads <= 1 || count <= 1 {
            for i in 0..<count { body(i) }
            return
        }
        let workers = min(threads, count)
        withoutActuallyEscaping(body) { body in
            let box = UncheckedSendable(body)
            DispatchQueue.concurrentPerform(iterations: workers) { worker in
                var i = worker
                while i < count {
                    box.value(i)
                    i += workers
                }
            }
        }
    }
}

/// Carries a non-Sendable closure into `concurrentPerform`.
/// Safe because `forEach` blocks until every worker has returned, and kernels write disjoint output ranges per chunk.
struct UncheckedSendable<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}
