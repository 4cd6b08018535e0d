import Foundation
import ServalJobs
import ServalStore
import ServalTestSupport
import Testing

/// The job state machine on both store backends, with time driven by the test (`now` is passed to every call).
@Suite("Job queue: state machine, idempotency, priority, leases (SQLite and PostgreSQL)")
struct JobQueueTests {
    static func queue(_ backend: SQLDialect, retryBase: Double = 1) async throws -> JobQueue {
        try await JobQueue(store: try await TestStores.make(backend), callbackSecret: "s3cret", retryBase: retryBase)
    }

    static func submission(_ body: String = "{\"inputs\":[]}", model: String = "iris", priority: Int = 0, maxAttempts: Int = 3,
                           deadline: Double? = nil, callback: String? = nil, key: String? = nil) -> JobSubmission {
        JobSubmission(model: model, version: nil, body: Array(body.utf8), headerLength: nil, priority: priority, maxAttempts: maxAttempts,
                      deadlineSeconds: deadline, callbackURL: callback, idempotencyKey: key)
    }

    static func answer(_ text: String) -> JobResult { JobResult(body: Array(text.utf8), headerLength: nil) }

    @Test(arguments: TestStores.backends)
    func aJobRunsOnceAndItsResultIsWrittenOnce(_ backend: SQLDialect) async throws {
        let queue = try await Self.queue(backend)
        let (job, created) = try await queue.submit(Self.submission(), now: 100)
        #expect(created)
        #expect(job.status == .queued)
        let claims = try await queue.claim(worker: "w1", now: 101, lease: 60)
        let claim = try #require(claims.first)
        #expect(claim.job.id == job.id)
        #expect(claim.attempt == 1)
        #expect(claim.body == Array("{\"inputs\":[]}".utf8))
        #expect(try await queue.claim(worker: "w2", now: 101, lease: 60).isEmpty)
        let running = try #require(try await queue.job(job.id))
        #expect(running.status == .running)
        #expect(running.startedAt == 101)
        #expect(try await queue.complete(claim, version: 2, result: Self.answer("first"), callbackBody: "{}", now: 102))
        #expect(try await !queue.complete(claim, version: 2, result: Self.answer("second"), callbackBody: "{}", now: 103))
        let done = try #require(try await queue.job(job.id))
        #expect(done.status == .succeeded)
        #expect(done.version == 2)
        #expect(done.finishedAt == 102)
        #expect(try await queue.result(job.id) == Self.answer("first"))
    }

    @Test(arguments: TestStores.backends)
    func anIdempotencyKeyReturnsTheOriginalForTheSameRequestAndRefusesAnother(_ backend: SQLDialect) async throws {
        let queue = try await Self.queue(backend)
        let (first, _) = try await queue.submit(Self.submission("A", key: "k1"), now: 1)
        let (again, created) = try await queue.submit(Self.submission("A", key: "k1"), now: 2)
        #expect(!created)
        #expect(again.id == first.id)
        for other in [Self.submission("B", key: "k1"), Self.submission("A", model: "mlp", key: "k1")] {
            let error = await #expect(throws: JobError.self) { try await queue.submit(other, now: 3) }
            #expect(error?.status == 409)
            #expect(error?.message.contains(first.id) == true)
        }
        #expect(try await queue.list(model: nil, status: nil, limit: 10, after: nil).jobs.count == 1)
    }

    @Test(arguments: TestStores.backends)
    func higherPriorityRunsFirstThenOldestFirst(_ backend: SQLDialect) async throws {
        let queue = try await Self.queue(backend)
        let low1 = try await queue.submit(Self.submission(priority: 0), now: 1).job
        let high = try await queue.submit(Self.submission(priority: 5), now: 2).job
        let low2 = try await queue.submit(Self.submission(priority: 0), now: 3).job
        var order: [String] = []
        for _ in 0..<3 { order += try await queue.claim(worker: "w", now: 10, lease: 60).map(\.job.id) }
        #expect(order == [high.id, low1.id, low2.id])
    }

    @Test(arguments: TestStores.backends)
    func anExpiredLeaseRequeuesTheJobAndTheLateWorkerWritesNothing(_ backend: SQLDialect) async throws {
        let queue = try await Self.queue(backend, retryBase: 2)
        let job = try await queue.submit(Self.submission(), now: 0).job
        let late = try #require(try await queue.claim(worker: "A", now: 0, lease: 10).first)
        #expect(try await queue.renew(late, now: 5, lease: 10))  // lease now ends at 15
        #expect(try await queue.sweep(now: 14) == 0)
        #expect(try await queue.sweep(now: 15) == 1)
        let requeued = try #require(try await queue.job(job.id))
        #expect(requeued.status == .queued)
        #expect(requeued.attemptErrors.map(\.attempt) == [1])
        #expect(requeued.attemptErrors.first?.error.contains("lease expired") == true)
        #expect(requeued.availableAt == 17)  // backoff 2 s after the first attempt
        #expect(try await queue.claim(worker: "B", now: 16, lease: 10).isEmpty)
        let fresh = try #require(try await queue.claim(worker: "B", now: 17, lease: 10).first)
        #expect(fresh.attempt == 2)
        // Both finish: only the lease holder's answer is written.
        #expect(try await !queue.renew(late, now: 18, lease: 10))
        #expect(try await !queue.complete(late, version: 1, result: Self.answer("late"), callbackBody: "{}", now: 18))
        #expect(try await queue.fail(late, error: "late", status: 500, retryable: true, now: 18) == nil)
        #expect(try await queue.complete(fresh, version: 1, result: Self.answer("fresh"), callbackBody: "{}", now: 19))
        #expect(try await queue.result(job.id) == Self.answer("fresh"))
        #expect(try await queue.job(job.id)?.attempts == 2)
    }

    @Test(arguments: TestStores.backends)
    func aJobOutOfAttemptsIsDeadLetteredWithEveryAttemptsError(_ backend: SQLDialect) async throws {
        let queue = try await Self.queue(backend, retryBase: 1)
        let job = try await queue.submit(Self.submission(maxAttempts: 3), now: 0).job
        var now = 0.0
        for attempt in 1...3 {
            let claim = try #require(try await queue.claim(worker: "w", now: now, lease: 60).first)
            #expect(claim.attempt == attempt)
            let status = try await queue.fail(claim, error: "model unavailable (\(attempt))", status: 503, retryable: true, now: now)
            #expect(status == (attempt < 3 ? .queued : .failed))
            now += 100
        }
        let dead = try #require(try await queue.job(job.id))
        #expect(dead.status == .failed)
        #expect(dead.errorStatus == 503)
        #expect(dead.error == "model unavailable (3)")
        #expect(dead.attemptErrors.map(\.error) == ["model unavailable (1)", "model unavailable (2)", "model unavailable (3)"])
        #expect(try await queue.claim(worker: "w", now: now, lease: 60).isEmpty)
        #expect(try await queue.result(job.id) == nil)
    }

    @Test(arguments: TestStores.backends)
    func aBadInputFailsAtOnceWithoutRetry(_ backend: SQLDialect) async throws {
        let queue = try await Self.queue(backend)
        let job = try await queue.submit(Self.submission(maxAttempts: 5), now: 0).job
        let claim = try #require(try await queue.claim(worker: "w", now: 0, lease: 60).first)
        #expect(try await queue.fail(claim, error: "input 'x' has shape [3]", status: 400, retryable: false, now: 1) == .failed)
        let failed = try #require(try await queue.job(job.id))
        #expect(failed.attempts == 1)
        #expect(failed.errorStatus == 400)
    }

    @Test(arguments: TestStores.backends)
    func cancellingStopsQueuedAndRunningJobsAndAFinalJobIsAConflict(_ backend: SQLDialect) async throws {
        let queue = try await Self.queue(backend)
        let queued = try await queue.submit(Self.submission(), now: 0).job
        let running = try await queue.submit(Self.submission(), now: 0).job
        #expect(try await queue.cancel(queued.id, now: 1)?.status == .cancelled)
        let claim = try #require(try await queue.claim(worker: "w", now: 2, lease: 60).first)
        #expect(claim.job.id == running.id)
        #expect(try await queue.cancel(running.id, now: 3)?.status == .cancelled)
        #expect(try await !queue.renew(claim, now: 4, lease: 60))
        #expect(try await !queue.complete(claim, version: 1, result: Self.answer("x"), callbackBody: "{}", now: 4))
        #expect(try await queue.job(running.id)?.status == .cancelled)
        let error = await #expect(throws: JobError.self) { try await queue.cancel(queued.id, now: 5) }
        #expect(error?.status == 409)
        #expect(try await queue.cancel("job_nope", now: 5) == nil)
    }

    @Test(arguments: TestStores.backends)
    func aJobPastItsDeadlineExpiresAndNeverRuns(_ backend: SQLDialect) async throws {
        let queue = try await Self.queue(backend)
        let job = try await queue.submit(Self.submission(deadline: 5), now: 0).job
        #expect(try await queue.sweep(now: 4) == 0)
        #expect(try await queue.sweep(now: 5) == 1)
        #expect(try await queue.job(job.id)?.status == .expired)
        #expect(try await queue.claim(worker: "w", now: 6, lease: 60).isEmpty)
    }

    @Test(arguments: TestStores.backends)
    func aRestartRequeuesWhatWasRunningAndCountsTheCrashedAttempt(_ backend: SQLDialect) async throws {
        let queue = try await Self.queue(backend, retryBase: 0)
        let job = try await queue.submit(Self.submission(maxAttempts: 2), now: 0).job
        _ = try await queue.claim(worker: "old-process", now: 0, lease: 60)
        #expect(try await queue.sweep(now: 1, abandoned: true) == 1)
        let requeued = try #require(try await queue.job(job.id))
        #expect(requeued.status == .queued)
        #expect(requeued.attempts == 1)
        #expect(requeued.attemptErrors.first?.error.contains("server stopped") == true)
        // A second crash uses the last attempt: the job is dead-lettered, not run a third time.
        _ = try await queue.claim(worker: "second-process", now: 2, lease: 60)
        _ = try await queue.sweep(now: 3, abandoned: true)
        #expect(try await queue.job(job.id)?.status == .failed)
    }

    @Test(arguments: TestStores.backends)
    func aReleasedJobGoesBackUncounted(_ backend: SQLDialect) async throws {
        let queue = try await Self.queue(backend)
        let job = try await queue.submit(Self.submission(), now: 0).job
        let claim = try #require(try await queue.claim(worker: "w", now: 0, lease: 60).first)
        try await queue.release(claim, now: 1)
        let released = try #require(try await queue.job(job.id))
        #expect(released.status == .queued)
        #expect(released.attempts == 0)
        #expect(try await queue.claim(worker: "w2", now: 1, lease: 60).first?.attempt == 1)
    }

    @Test(arguments: TestStores.backends)
    func listingPagesNewestFirstAndFilters(_ backend: SQLDialect) async throws {
        let queue = try await Self.queue(backend)
        var ids: [String] = []
        for index in 0..<5 { ids.append(try await queue.submit(Self.submission(model: index % 2 == 0 ? "iris" : "mlp"), now: Double(index)).job.id) }
        let first = try await queue.list(model: nil, status: nil, limit: 2, after: nil)
        #expect(first.jobs.map(\.id) == [ids[4], ids[3]])
        let second = try await queue.list(model: nil, status: nil, limit: 2, after: first.next)
        #expect(second.jobs.map(\.id) == [ids[2], ids[1]])
        let last = try await queue.list(model: nil, status: nil, limit: 2, after: second.next)
        #expect(last.jobs.map(\.id) == [ids[0]])
        #expect(last.next == nil)
        #expect(try await queue.list(model: "mlp", status: .queued, limit: 10, after: nil).jobs.map(\.id) == [ids[3], ids[1]])
        #expect(try await queue.list(model: nil, status: .succeeded, limit: 10, after: nil).jobs.isEmpty)
        let error = await #expect(throws: JobError.self) { try await queue.list(model: nil, status: nil, limit: 2, after: "job_unknown") }
        #expect(error?.status == 400)
    }

    @Test(arguments: TestStores.backends)
    func purgingRemovesFinishedJobsTheirKeysAndTheirCallbacks(_ backend: SQLDialect) async throws {
        let queue = try await Self.queue(backend)
        let done = try await queue.submit(Self.submission("A", callback: "http://127.0.0.1:9/hook", key: "k"), now: 0).job
        let waiting = try await queue.submit(Self.submission("B"), now: 0).job
        let claim = try #require(try await queue.claim(worker: "w", now: 0, lease: 60).first)
        #expect(claim.job.id == done.id)
        #expect(try await queue.complete(claim, version: 1, result: Self.answer("{}"), callbackBody: "{\"ok\":true}", now: 10))
        let callbacks = try await queue.callbacks(done.id)
        #expect(callbacks.map(\.event) == ["job.succeeded"])
        #expect(callbacks.first?.body == "{\"ok\":true}")
        #expect(callbacks.first?.secret == "s3cret")
        #expect(try await queue.purge(finishedBefore: 9) == 0)
        #expect(try await queue.purge(finishedBefore: 10) == 1)
        #expect(try await queue.job(done.id) == nil)
        #expect(try await queue.callbacks(done.id).isEmpty)
        #expect(try await queue.job(waiting.id)?.status == .queued)
        // The key went with its job: the same key makes a new one.
        let (again, created) = try await queue.submit(Self.submission("A", key: "k"), now: 20)
        #expect(created)
        #expect(again.id != done.id)
    }

    @Test(arguments: TestStores.backends)
    func everyEndOfAJobWithACallbackQueuesOneDelivery(_ backend: SQLDialect) async throws {
        let queue = try await Self.queue(backend)
        let hook = "http://127.0.0.1:9/hook"
        let failed = try await queue.submit(Self.submission(maxAttempts: 1, callback: hook), now: 0).job
        let claim = try #require(try await queue.claim(worker: "w", now: 0, lease: 60).first)
        _ = try await queue.fail(claim, error: "boom", status: 500, retryable: true, now: 1)
        let expired = try await queue.submit(Self.submission(deadline: 1, callback: hook), now: 0).job
        _ = try await queue.sweep(now: 2)
        let cancelled = try await queue.submit(Self.submission(callback: hook), now: 0).job
        _ = try await queue.cancel(cancelled.id, now: 3)
        for (job, event) in [(failed, "job.failed"), (expired, "job.expired"), (cancelled, "job.cancelled")] {
            let deliveries = try await queue.callbacks(job.id)
            #expect(deliveries.map(\.event) == [event])
            #expect(deliveries.first?.body.contains("\"id\":\"\(job.id)\"") == true)
        }
    }
}
