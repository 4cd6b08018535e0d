import CServalKernels
import Foundation
import Synchronization

/// Fork-join helper for kernels; runs inline when one thread is allowed.
public enum Parallel {
    /// Runs `body(i)` for i in 0..<count on the calling thread and up to `threads − 1` pool workers.
    /// Returns when every call has returned. Indices are handed out one at a time, so uneven work balances.
    public static func forEach(_ count: Int, threads: Int, _ body: (Int) -> Void) {
        if threads <= 1 || count <= 1 {
            for i in 0..<count { body(i) }
            return
        }
        IntraOpPool.shared.run(count, helpers: min(threads, count) - 1, body)
    }
}

/// Persistent worker threads for intra-op parallelism.
///
/// Kernels split work into sub-millisecond pieces, where waking a sleeping thread (as `concurrentPerform` does)
/// costs as much as the piece. Workers here spin briefly after each job, so the next kernel of the same run finds
/// them awake, and park on a condition once idle. One job runs at a time: a caller that finds the pool busy (another
/// model instance computing) runs its work on its own thread, which keeps instances × threads within the CPUs.
final class IntraOpPool: @unchecked Sendable {
    // @unchecked: `job` is written only by the caller holding `busy`, before `generation` is bumped with release
    // ordering, and read only by the workers that generation names as helpers, after they observe it with acquire
    // ordering; the caller does not touch `job` again until each of those helpers has signalled `pending`.
    static let shared = IntraOpPool(workers: min(255, max(0, ProcessInfo.processInfo.activeProcessorCount - 1)))

    /// The work being shared out: the body and the number of indices.
    private struct Job {
        var body: ((Int) -> Void)?
        var count = 0
    }

    private let workers: Int
    private let busy = Mutex(false)
    /// Job sequence number × 256 + the number of helpers it wants, so a worker learns from one atomic load whether
    /// the job needs it (and then may read `job`) or not (and then must not).
    private let generation = Atomic<Int>(0)
    private let nextIndex = Atomic<Int>(0)
    private let pending = Atomic<Int>(0)  // helpers of the current job not yet finished
    private var job = Job()
    private let sleepers = NSCondition()
    private var sleeping = 0  // guarded by `sleepers`
    private let spinLimit = 2_000  // polls (pause each) before a worker parks: tens of microseconds

    init(workers: Int) {
        self.workers = workers
        for worker in 0..<workers {
            let thread = Thread { [unowned self] in self.work(as: worker) }
            thread.name = "serval-intra-op-\(worker)"
            thread.start()
        }
    }

    func run(_ count: Int, helpers requested: Int, _ body: (Int) -> Void) {
        let helpers = min(requested, workers)
        let acquired = helpers > 0 && busy.withLock { taken in
            if taken { return false }
            taken = true
            return true
        }
        guard acquired else {
            for i in 0..<count { body(i) }
            return
        }
        withoutActuallyEscaping(body) { body in
            job = Job(body: body, count: count)
            nextIndex.store(0, ordering: .relaxed)
            pending.store(helpers, ordering: .relaxed)
            let sequence = generation.load(ordering: .relaxed) >> 8
            generation.store((sequence + 1) << 8 | helpers, ordering: .releasing)
            sleepers.lock()
            if sleeping > 0 { sleepers.broadcast() }
            sleepers.unlock()
            drain(body, count)
            while pending.load(ordering: .acquiring) > 0 { spinPause() }
            job = Job()
        }
        busy.withLock { $0 = false }
    }

    private func drain(_ body: (Int) -> Void, _ count: Int) {
        while true {
            let index = nextIndex.add(1, ordering: .relaxed).oldValue
            if index >= count { return }
            body(index)
        }
    }

    private func work(as worker: Int) {
        var seen = 0
        while true {
            var spins = 0
            var current = generation.load(ordering: .acquiring)
            while current == seen {
                spins += 1
                if spins < spinLimit {
                    spinPause()
                } else {
                    sleepers.lock()
                    sleeping += 1
                    while generation.load(ordering: .acquiring) == seen { sleepers.wait() }
                    sleeping -= 1
                    sleepers.unlock()
                }
                current = generation.load(ordering: .acquiring)
            }
            seen = current
            guard worker < current & 0xFF else { continue }
            participate()
            pending.subtract(1, ordering: .releasing)
        }
    }

    /// Takes indices of the current job. Its copy of the body is released on return, before the worker signals
    /// `pending`: the caller's `withoutActuallyEscaping` checks that no copy outlives the job.
    private func participate() {
        guard let body = job.body else { return }
        drain(body, job.count)
    }
}

/// A hint to the CPU that this thread is spin-waiting (x86 `pause`), so a sibling hyper-thread runs faster.
@inline(__always)
private func spinPause() {
    serval_spin_pause()
}
