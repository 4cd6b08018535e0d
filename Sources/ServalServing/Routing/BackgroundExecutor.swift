import Foundation

/// A task executor with one thread of its own at the lowest normal priority (nice 19): work that must not delay
/// requests (the monitor's intake) runs there, taking CPU that serving threads leave free. Unlike the idle class a
/// shadow runs in, it is never starved outright, so an actor it holds is released within bounded time.
public final class BackgroundExecutor: TaskExecutor, @unchecked Sendable {
    // @unchecked: `jobs` is guarded by `condition`; the thread only reads it under the lock.
    private let condition = NSCondition()
    private var jobs: [UnownedJob] = []

    public init(name: String) {
        let thread = Thread { self.loop() }  // the thread keeps its executor: both live as long as the process
        thread.name = name
        thread.start()
    }

    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        condition.lock()
        jobs.append(job)
        condition.signal()
        condition.unlock()
    }

    private func loop() {
        #if os(Linux)
        // Linux keeps nice per thread, and `who` 0 is the calling thread: only this one is lowered.
        _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, 19)
        #endif
        var batch: [UnownedJob] = []
        while true {
            condition.lock()
            while jobs.isEmpty { condition.wait() }
            swap(&batch, &jobs)
            condition.unlock()
            for job in batch { job.runSynchronously(on: asUnownedTaskExecutor()) }
            batch.removeAll(keepingCapacity: true)
        }
    }
}
