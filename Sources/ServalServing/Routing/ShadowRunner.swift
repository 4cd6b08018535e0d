import Metrics
import Synchronization
import ServalWire

/// Runs shadow copies after the primary has answered, off the request path: a bounded queue that drops (and
/// counts) when full, one worker that runs each copy on its shadow version and compares the rows.
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

    private let continuation: AsyncStream<Job>.Continuation
    private let book = Book()
    private let worker: Task<Void, Never>

    /// `capacity`: shadow copies waiting at most; more are dropped.
    public init(capacity: Int = 256) {
        let (stream, continuation) = AsyncStream.makeStream(of: Job.self, bufferingPolicy: .bufferingOldest(capacity))
        self.continuation = continuation
        let book = self.book
        worker = Task.detached(priority: .utility) {
            for await job in stream { await Self.run(job, book) }
        }
    }

    deinit {
        continuation.finish()
    }

    /// Queues a copy; never waits. Returns false when the queue was full and the copy was dropped.
    @discardableResult
    func submit(_ job: Job) -> Bool {
        if case .enqueued = continuation.yield(job) { return true }
        book.update(job.model, job.target) { $0.dropped += 1 }
        Counter(label: "serval_shadow_dropped_total", dimensions: [("model", job.model), ("version", String(job.shadow.version))]).increment()
        return false
    }

    public func figures(model: String, target: String) -> Figures { book.read(model, target) }

    private static func run(_ job: Job, _ book: Book) async {
        let dimensions = [("model", job.model), ("version", String(job.shadow.version))]
        Counter(label: "serval_shadow_requests_total", dimensions: dimensions).increment()
        do {
            let answer = try await job.shadow.infer(job.request)
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
