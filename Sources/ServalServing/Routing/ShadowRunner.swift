import Foundation
import Metrics
import Synchronization
import ServalWire

/// Runs shadow copies after the primary has answered, off the request path: a bounded queue that drops (and
/// counts) when full, and one idle-priority worker thread that runs each copy on its shadow version, outside that
/// version's batcher, and compares the rows.
public final class ShadowRunner: Sendable {
    struct Job: Sendable {
        let model: String
        let target: String
        let shadow: ServedModel
        let request: InferenceRequest
        let primary: InferenceResponse
    }

    /// Cumulative figures of one shadow target.
    public struct Figures: Sendable, Equatable {
        public var requests = 0
        public var dropped = 0
        public var failed = 0
        public var rows = 0
        public var disagreeingRows = 0
        public var disagreementRate: Double { rows == 0 ? 0 : Double(disagreeingRows) / Double(rows) }
    }

    /// Figures by model and target, shared with the worker.
    final class Book: Sendable {
        private let state = Mutex<[TrafficStatistics.ArmKey: Figures]>([:])
        func update(_ model: String, _ target: String, _ change: (inout Figures) -> Void) {
            state.withLock { change(&$0[.init(model: model, arm: target), default: Figures()]) }
        }
        func read(_ model: String, _ target: String) -> Figures { state.withLock { $0[.init(model: model, arm: target)] ?? Figures() } }
    }

    private let queue: JobQueue
    private let book = Book()

    /// `capacity`: shadow copies waiting at most; more are dropped.
    public init(capacity: Int = 256) {
        let queue = JobQueue(capacity: capacity)
        self.queue = queue
        let book = self.book
        // One thread of its own at idle priority: the kernel runs it only on CPU that serving threads leave free, so
        // a shadow never delays the primary's next request. It holds the queue and the book, not the runner.
        let thread = Thread {
            IdlePriority.applyToCurrentThread()
            while let job = queue.next() { Self.run(job, book) }
        }
        thread.name = "serval-shadow"
        thread.start()
    }

    deinit {
        queue.close()
    }

    /// Queues a copy; never waits. Returns false when the queue was full and the copy was dropped.
    @discardableResult
    func submit(_ job: Job) -> Bool {
        if queue.offer(job) { return true }
        book.update(job.model, job.target) { $0.dropped += 1 }
        Counter(label: "serval_shadow_dropped_total", dimensions: [("model", job.model), ("version", String(job.shadow.version))]).increment()
        return false
    }

    public func figures(model: String, target: String) -> Figures { book.read(model, target) }

    private static func run(_ job: Job, _ book: Book) {
        let dimensions = [("model", job.model), ("version", String(job.shadow.version))]
        Counter(label: "serval_shadow_requests_total", dimensions: dimensions).increment()
        do {
            let answer = try job.shadow.inferInline(job.request)
            let outcome = ShadowComparison.compare(primary: job.primary, shadow: answer)
            book.update(job.model, job.target) {
                $0.requests += 1
                $0.rows += outcome.rows
                $0.disagreeingRows += outcome.disagreeing
            }
            Counter(label: "serval_shadow_rows_total", dimensions: dimensions).increment(by: outcome.rows)
            Counter(label: "serval_shadow_disagreements_total", dimensions: dimensions).increment(by: outcome.disagreeing)
        } catch {
            book.update(job.model, job.target) {
                $0.requests += 1
                $0.failed += 1
            }
            Counter(label: "serval_shadow_failures_total", dimensions: dimensions).increment()
        }
    }
}

/// The shadow worker's bounded FIFO: `offer` never blocks, `next` waits for a job or returns nil once closed.
private final class JobQueue: @unchecked Sendable {
    // @unchecked: `jobs`, `head` and `closed` are read and written only while `condition` is locked.
    private let condition = NSCondition()
    private var jobs: [ShadowRunner.Job?]
    private var head = 0
    private var count = 0
    private var closed = false

    init(capacity: Int) { jobs = Array(repeating: nil, count: max(1, capacity)) }

    func offer(_ job: ShadowRunner.Job) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        guard !closed, count < jobs.count else { return false }
        jobs[(head + count) % jobs.count] = job
        count += 1
        condition.signal()
        return true
    }

    func next() -> ShadowRunner.Job? {
        condition.lock()
        defer { condition.unlock() }
        while count == 0 && !closed { condition.wait() }
        guard count > 0 else { return nil }
        let job = jobs[head]
        jobs[head] = nil
        head = (head + 1) % jobs.count
        count -= 1
        return job
    }

    func close() {
        condition.lock()
        closed = true
        condition.broadcast()
        condition.unlock()
    }
}

/// Lowers the calling thread to the kernel's idle class (Linux `SCHED_IDLE`), below every normal thread.
enum IdlePriority {
    static func applyToCurrentThread() {
        #if os(Linux)
        var parameters = sched_param(sched_priority: 0)
        _ = sched_setscheduler(0, 5 /* SCHED_IDLE */, &parameters)
        #endif
    }
}
