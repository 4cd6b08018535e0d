import Foundation
import Logging
import Metrics
import ServalServing
import ServalWire
import ServiceLifecycle
import Synchronization

/// Wakes idle workers: rung by a submission in this process, by a PostgreSQL notification from another, or by
/// shutdown. A ring while nobody waits is kept for the next wait.
public final class Doorbell: Sendable {
    private struct State {
        var rung = false
        var waiters: [UUID: CheckedContinuation<Void, Never>] = [:]
    }

    private let state = Mutex(State())

    public init() {}

    public func ring() {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            guard !state.waiters.isEmpty else {
                state.rung = true
                return []
            }
            defer { state.waiters = [:] }
            return Array(state.waiters.values)
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Returns at the next ring (or at once if one is pending), or after `limit`.
    public func wait(upTo limit: Duration) async {
        let id = UUID()
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let pending = state.withLock { state -> Bool in
                if state.rung {
                    state.rung = false
                    return true
                }
                state.waiters[id] = continuation
                return false
            }
            if pending {
                continuation.resume()
                return
            }
            // The timer resumes the wait unless a ring took it first (then it finds nothing to resume).
            Task {
                try? await Task.sleep(for: limit)
                self.state.withLock { $0.waiters.removeValue(forKey: id) }?.resume()
            }
        }
    }
}

/// Settings of the job workers (`--job-workers`, `--job-lease-secs`, `--job-result-ttl-secs`).
public struct JobWorkerSettings: Sendable {
    /// Concurrent jobs this process runs; 0: none.
    public var workers: Int = 1
    public var leaseSeconds: Double = 60
    public var resultTTLSeconds: Double = 86_400
    /// How often an idle worker looks for jobs it was not woken for (backoff ends, other replicas' expiries).
    public var pollInterval: Duration = .seconds(1)
    /// On SQLite one process owns the queue: at start, the jobs it left running are requeued at once.
    public var ownsQueue: Bool = true

    public init() {}
}

/// Runs queued jobs in this process: `workers` loops, each claiming one job at a time, renewing its lease while it
/// runs, and writing the answer (or the error) through the queue's conditional updates. On graceful shutdown it
/// stops claiming, lets running jobs finish, and gives back the lease of any job cancelled before it ends.
public struct JobWorker: Service {
    let queue: JobQueue
    let runner: JobRunner
    let doorbell: Doorbell
    let settings: JobWorkerSettings
    let logger: Logger
    let clock: @Sendable () -> Double
    /// Unique per process, so a restarted process never completes its predecessor's attempts.
    public let name: String

    public init(
        queue: JobQueue, runner: JobRunner, doorbell: Doorbell, settings: JobWorkerSettings, logger: Logger,
        clock: @escaping @Sendable () -> Double = { Date().timeIntervalSince1970 }
    ) {
        self.queue = queue
        self.runner = runner
        self.doorbell = doorbell
        self.settings = settings
        self.logger = logger
        self.clock = clock
        self.name = "\(ProcessInfo.processInfo.hostName):\(ProcessInfo.processInfo.processIdentifier):\(UUID().uuidString.prefix(8))"
    }

    public func run() async throws {
        guard settings.workers > 0 else { return }
        if settings.ownsQueue {
            do {
                let requeued = try await queue.sweep(now: clock(), abandoned: true)
                if requeued > 0 { logger.notice("requeued jobs left running by the previous run", metadata: ["jobs": "\(requeued)"]) }
            } catch {
                logger.error("could not requeue abandoned jobs", metadata: ["error": "\(error)"])
            }
        }
        let stopping = StopFlag()
        let doorbell = self.doorbell
        await withGracefulShutdownHandler {
            await withTaskGroup(of: Void.self) { group in
                // Other processes' submissions arrive as notifications (PostgreSQL); SQLite returns at once.
                group.addTask {
                    try? await queue.store.listen(JobQueue.channel) { doorbell.ring() }
                }
                group.addTask { await self.housekeeping(stopping) }
                for index in 0..<settings.workers {
                    group.addTask { await self.loop(index, stopping) }
                }
                // The listener and housekeeping end with cancellation once every worker loop has returned.
                var finished = 0
                while finished < settings.workers + 2, await group.next() != nil {
                    finished += 1
                    if stopping.isSet { group.cancelAll() }
                }
            }
        } onGracefulShutdown: {
            stopping.set()
            for _ in 0..<max(1, settings.workers) { doorbell.ring() }
        }
    }

    /// Expires, takes back lapsed leases and purges old results, once per poll interval.
    private func housekeeping(_ stopping: StopFlag) async {
        while !stopping.isSet && !Task.isCancelled {
            do {
                let now = clock()
                try await queue.sweep(now: now)
                try await queue.purge(finishedBefore: now - settings.resultTTLSeconds)
                try await JobMetrics.shared.publish(queue, now: now)
            } catch {
                if Task.isCancelled || stopping.isSet { return }
                logger.warning("job housekeeping failed; retrying", metadata: ["error": "\(error)"])
            }
            try? await Task.sleep(for: settings.pollInterval)
        }
    }

    private func loop(_ index: Int, _ stopping: StopFlag) async {
        let worker = "\(name)/\(index)"
        while !stopping.isSet {
            let claims: [JobClaim]
            do {
                claims = try await queue.claim(worker: worker, now: clock(), lease: settings.leaseSeconds)
            } catch {
                logger.warning("could not claim jobs; retrying", metadata: ["error": "\(error)"])
                await doorbell.wait(upTo: settings.pollInterval)
                continue
            }
            guard let claim = claims.first else {
                await doorbell.wait(upTo: settings.pollInterval)
                continue
            }
            await execute(claim)
        }
    }

    /// Runs one claimed job with its lease renewed, then records the outcome.
    func execute(_ claim: JobClaim) async {
        let started = ContinuousClock.now
        let job = claim.job
        let outcome: Result<(version: Int, result: JobResult, callbackBody: String), Error> = await withTaskGroup(of: Result<(version: Int, result: JobResult, callbackBody: String), Error>?.self) { group in
            group.addTask {
                do { return .success(try await runner.run(claim)) } catch { return .failure(error) }
            }
            group.addTask {
                // Renew at a third of the lease; a lost lease (cancelled, or taken back) stops the run.
                while !Task.isCancelled {
                    try? await Task.sleep(for: .seconds(settings.leaseSeconds / 3))
                    if Task.isCancelled { return nil }
                    if let held = try? await queue.renew(claim, now: clock(), lease: settings.leaseSeconds), !held {
                        return .failure(LeaseLost())
                    }
                }
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first ?? .failure(CancellationError())
        }
        let elapsed = (ContinuousClock.now - started).components
        let seconds = Double(elapsed.seconds) + Double(elapsed.attoseconds) / 1e18
        do {
            switch outcome {
            case .success(let answer):
                let written = try await queue.complete(claim, version: answer.version, result: answer.result, callbackBody: answer.callbackBody, now: clock())
                JobMetrics.shared.recordAttempt(model: job.model, outcome: written ? "succeeded" : "discarded", seconds: seconds)
            case .failure(let error as ServingError):
                // Bad input fails at once; the server's own faults and unavailability are retried.
                let retryable = error.isServerFault || error.kind == .unavailable || error.kind == .resourceExhausted || error.kind == .deadlineExceeded
                let status = try await queue.fail(claim, error: error.message, status: error.httpStatus, retryable: retryable, now: clock())
                JobMetrics.shared.recordAttempt(model: job.model, outcome: status == .queued ? "retried" : status == .failed ? "failed" : "discarded", seconds: seconds)
            case .failure(is LeaseLost):
                // Cancelled by the client, or taken back after a lapse: this attempt's answer is not wanted.
                JobMetrics.shared.recordAttempt(model: job.model, outcome: "discarded", seconds: seconds)
            case .failure(is CancellationError):
                // Shutdown outlasted the drain: give the job back uncounted, from a task the cancellation does not reach.
                try await Task.detached { try await queue.release(claim, now: clock()) }.value
                JobMetrics.shared.recordAttempt(model: job.model, outcome: "released", seconds: seconds)
            case .failure(let error):
                let status = try await queue.fail(claim, error: "\(error)", status: 500, retryable: true, now: clock())
                JobMetrics.shared.recordAttempt(model: job.model, outcome: status == .queued ? "retried" : "failed", seconds: seconds)
            }
        } catch {
            // The store is unreachable: the lease lapses and another attempt runs the job.
            logger.warning("could not record a job's outcome; its lease will lapse and it will run again", metadata: ["job": "\(job.id)", "error": "\(error)"])
        }
    }
}

/// The worker no longer holds the job's lease.
struct LeaseLost: Error {}

/// Set once, on graceful shutdown; read by every worker loop.
final class StopFlag: Sendable {
    private let value = Atomic<Bool>(false)
    var isSet: Bool { value.load(ordering: .acquiring) }
    func set() { value.store(true, ordering: .releasing) }
}
