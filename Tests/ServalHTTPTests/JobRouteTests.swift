import Foundation
import ServalJobs
import ServalServer
import Testing

/// The async jobs API over HTTP against a real server: submission, results equal to the synchronous answer,
/// `Prefer: respond-async`, validation at submission, idempotency, cancelling, listing and callbacks.
@Suite("Async jobs over HTTP")
struct JobRouteTests {
    static let iris = #"{"inputs": [{"name": "X", "shape": [2, 4], "datatype": "FP32", "data": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}]}"#

    static func irisRows(_ count: Int, offset: Int = 0) -> String {
        let rows = (0..<count).map { index -> String in
            let i = Double(index + offset)
            return "[\(4.3 + (i * 0.37).truncatingRemainder(dividingBy: 3.6)), \(2.0 + (i * 0.11).truncatingRemainder(dividingBy: 2.4)), \(1.0 + (i * 0.53).truncatingRemainder(dividingBy: 5.9)), \(0.1 + (i * 0.07).truncatingRemainder(dividingBy: 2.4))]"
        }
        return #"{"inputs": [{"name": "X", "shape": [\#(count), 4], "datatype": "FP32", "data": [\#(rows.joined(separator: ","))]}]}"#
    }

    /// A server whose job workers are on (`workers` 1) or off (jobs stay queued).
    static func with(workers: Int = 1, secret: String? = nil, repository: URL? = nil, _ body: (TestServer) async throws -> Void) async throws {
        try await TestServer.with(repository: repository, configure: { options in
            options.jobWorkers.workers = workers
            options.jobWorkers.pollInterval = .milliseconds(50)
            options.jobRetryBase = 0
            options.webhookSecret = secret
        }) { server, _ in try await body(server) }
    }

    static func submit(_ server: TestServer, _ body: String, to path: String = "/v2/models/iris/jobs", key: String? = nil) async throws -> TestServer.Reply {
        try await server.send("POST", path, body: Data(body.utf8), headers: key.map { ["Idempotency-Key": $0] } ?? [:])
    }

    static func finished(_ server: TestServer, _ id: String) async throws -> [String: Any] {
        var last: [String: Any] = [:]
        let done = await eventually {
            guard let reply = try? await server.get("/v2/jobs/\(id)"), let object = try? reply.object() else { return false }
            last = object
            return ["succeeded", "failed", "cancelled", "expired"].contains(object["status"] as? String ?? "")
        }
        #expect(done, "job \(id) did not finish: \(last)")
        return last
    }

    @Test func aJobIsAcceptedAtOnceAndItsResultIsTheSynchronousAnswer() async throws {
        try await Self.with { server in
            let accepted = try await Self.submit(server, Self.iris)
            #expect(accepted.status == 202)
            let body = try accepted.object()
            let id = try #require(body["id"] as? String)
            #expect(accepted.headers["Location"] == "/v2/jobs/\(id)")
            #expect(body["status"] as? String == "queued")
            #expect(body["model"] as? String == "iris")
            #expect(body["created_at"] is String)
            let job = try await Self.finished(server, id)
            #expect(job["status"] as? String == "succeeded")
            #expect(job["version"] as? String == "1")
            #expect(job["attempts"] as? Int == 1)
            let result = try await server.get("/v2/jobs/\(id)/result")
            #expect(result.status == 200)
            // The job answers under its own id (the request sent none); the same request with that id, synchronously:
            let synchronous = try await server.post("/v2/models/iris/infer", "{\"id\": \"\(id)\", " + Self.iris.dropFirst())
            #expect(result.text == synchronous.text)
        }
    }

    @Test func preferRespondAsyncOnInferIsTheSameCall() async throws {
        try await Self.with { server in
            let reply = try await server.send("POST", "/v2/models/iris/infer", body: Data(Self.iris.utf8), headers: ["Prefer": "respond-async, wait=10"])
            #expect(reply.status == 202)
            #expect(reply.headers["Preference-Applied"] == "respond-async")
            let id = try #require(try reply.object()["id"] as? String)
            #expect(try await Self.finished(server, id)["status"] as? String == "succeeded")
        }
    }

    @Test(arguments: [
        (#"{"inputs":[{"name":"X","shape":[1,3],"datatype":"FP32","data":[1,2,3]}]}"#, 400, "input 'X' has shape [1, 3], expected [-1, 4]"),
        (#"{"inputs":[{"name":"X","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}],"parameters":{"priority":"high"}}"#, 400, "parameters.priority must be an integer"),
        (#"{"inputs":[{"name":"X","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}],"parameters":{"callback_url":"ftp://x"}}"#, 400, "parameters.callback_url must be an http or https URL"),
        (#"{"inputs":[{"name":"X","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}],"parameters":{"deadline_secs":-1}}"#, 400, "parameters.deadline_secs must be a positive number"),
        (#"{"inputs":[{"name":"X","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}],"parameters":{"max_attempts":0}}"#, 400, "parameters.max_attempts must be between 1 and 100"),
    ])
    func aBadSubmissionIsRefusedAtOnceNamingTheField(_ body: String, _ status: Int, _ message: String) async throws {
        try await Self.with(workers: 0) { server in
            let reply = try await Self.submit(server, body)
            #expect(reply.status == status)
            #expect((try reply.object()["error"] as? String)?.contains(message) == true, "\(reply.text)")
            #expect((try await server.get("/v2/jobs").object()["jobs"] as? [Any])?.isEmpty == true, "nothing was queued")
        }
    }

    @Test func unknownModelsAndVersionsAreNotFoundAtSubmission() async throws {
        try await Self.with(workers: 0) { server in
            #expect(try await Self.submit(server, Self.iris, to: "/v2/models/nope/jobs").status == 404)
            #expect(try await Self.submit(server, Self.iris, to: "/v2/models/iris/versions/9/jobs").status == 404)
            let pinned = try await Self.submit(server, Self.iris, to: "/v2/models/iris/versions/1/jobs")
            #expect(pinned.status == 202)
            #expect(try pinned.object()["version"] as? String == "1")
        }
    }

    @Test func anIdempotencyKeyGivesTheOriginalJobOrAConflict() async throws {
        try await Self.with(workers: 0) { server in
            let first = try await Self.submit(server, Self.iris, key: "order-17")
            #expect(first.status == 202)
            let again = try await Self.submit(server, Self.iris, key: "order-17")
            #expect(again.status == 200)
            #expect(try again.object()["id"] as? String == (try first.object()["id"] as? String))
            let other = try await Self.submit(server, Self.irisRows(1), key: "order-17")
            #expect(other.status == 409)
            #expect((try other.object()["error"] as? String)?.contains("Idempotency-Key 'order-17'") == true)
            #expect((try await server.get("/v2/jobs").object()["jobs"] as? [Any])?.count == 1)
        }
    }

    @Test func aQueuedJobHasNoResultYetAndCanBeCancelledOnce() async throws {
        try await Self.with(workers: 0) { server in
            let id = try #require(try await Self.submit(server, Self.iris).object()["id"] as? String)
            let early = try await server.get("/v2/jobs/\(id)/result")
            #expect(early.status == 409)
            #expect((try early.object()["error"] as? String)?.contains("is queued") == true)
            let cancelled = try await server.delete("/v2/jobs/\(id)")
            #expect(cancelled.status == 200)
            #expect(try cancelled.object()["status"] as? String == "cancelled")
            let result = try await server.get("/v2/jobs/\(id)/result")
            #expect(result.status == 409)
            #expect((try result.object()["error"] as? String)?.contains("cancelled") == true)
            #expect(try await server.delete("/v2/jobs/\(id)").status == 409)
            #expect(try await server.get("/v2/jobs/job_missing").status == 404)
            #expect(try await server.delete("/v2/jobs/job_missing").status == 404)
        }
    }

    @Test func aJobLargerThanTheBatchLimitRunsInPiecesAndJoinsThemInOrder() async throws {
        try await Self.with { server in
            let metadata = try await server.get("/v2/models/iris/config").object()
            let limit = try #require((metadata["config"] as? [String: Any])?["max_batch_size"] as? Int)
            let rows = limit * 2 + 7
            let refused = try await server.post("/v2/models/iris/infer", Self.irisRows(rows))
            #expect(refused.status == 400)
            #expect((try refused.object()["error"] as? String)?.contains("POST /v2/models/iris/jobs") == true)
            #expect((try refused.object()["error"] as? String)?.contains("serval batch") == true)
            let id = try #require(try await Self.submit(server, Self.irisRows(rows)).object()["id"] as? String)
            #expect(try await Self.finished(server, id)["status"] as? String == "succeeded")
            let outputs = try #require(try await server.get("/v2/jobs/\(id)/result").object()["outputs"] as? [[String: Any]])
            // The same rows answered synchronously, one piece at a time.
            var expected: [String: [Any]] = [:]
            for start in stride(from: 0, to: rows, by: limit) {
                let count = min(limit, rows - start)
                let piece = try #require(try await server.post("/v2/models/iris/infer", Self.irisRows(count, offset: start)).object()["outputs"] as? [[String: Any]])
                for output in piece { expected[output["name"] as! String, default: []] += output["data"] as! [Any] }
            }
            for output in outputs {
                let name = try #require(output["name"] as? String)
                #expect((output["shape"] as? [Int])?.first == rows)
                #expect("\(output["data"] ?? "")" == "\(expected[name] ?? [])", "output \(name)")
            }
        }
    }

    @Test func listingFiltersAndPagesAndRefusesAnOversizedPage() async throws {
        try await Self.with(workers: 0) { server in
            var ids: [String] = []
            for _ in 0..<3 { ids.append(try #require(try await Self.submit(server, Self.iris).object()["id"] as? String)) }
            let page = try await server.get("/v2/jobs?model=iris&status=queued&limit=2").object()
            #expect((page["jobs"] as? [[String: Any]])?.compactMap { $0["id"] as? String } == [ids[2], ids[1]])
            let next = try #require(page["next"] as? String)
            let rest = try await server.get("/v2/jobs?limit=2&after=\(next)").object()
            #expect((rest["jobs"] as? [[String: Any]])?.compactMap { $0["id"] as? String } == [ids[0]])
            #expect(rest["next"] is NSNull)
            for bad in ["limit=1001", "limit=zero", "status=done"] {
                let reply = try await server.get("/v2/jobs?\(bad)")
                #expect(reply.status == 400, "\(bad)")
                #expect((try reply.object()["error"] as? String)?.contains("query parameter") == true)
            }
        }
    }

    @Test func jobMetricsCountJobsAttemptsAndDurations() async throws {
        // A model name no other test uses: metrics are process-wide and suites run in parallel.
        let repository = try TestServer.makeRepository()
        try FileManager.default.moveItem(at: repository.appendingPathComponent("iris"), to: repository.appendingPathComponent("iris_jobs"))
        try await Self.with(repository: repository) { server in
            for _ in 0..<3 {
                let id = try #require(try await Self.submit(server, Self.iris, to: "/v2/models/iris_jobs/jobs").object()["id"] as? String)
                #expect(try await Self.finished(server, id)["status"] as? String == "succeeded")
            }
            // The gauges come from the workers' once-a-poll census.
            var text = ""
            let counted = await eventually {
                text = (try? await server.get("/metrics").text) ?? ""
                return MetricsTests.sample(text, #"serval_jobs{model="iris_jobs",status="succeeded"}"#) == 3
            }
            #expect(counted, "\(text.split(separator: "\n").filter { $0.contains("serval_job") })")
            #expect(MetricsTests.sample(text, #"serval_job_attempts_total{model="iris_jobs",outcome="succeeded"}"#) == 3)
            #expect(MetricsTests.sample(text, #"serval_job_duration_seconds_count{model="iris_jobs"}"#) == 3)
            #expect(text.contains(#"serval_job_queue_depth{model="iris_jobs"} 0"#))
        }
    }

    @Test func theCallbackIsSignedAndRetriedUntilTheReceiverTakesIt() async throws {
        try await WebhookReceiver.with(script: [503, 503]) { receiver, url in
            try await Self.with(secret: "s3cret") { server in
                let body = #"{"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}], "parameters": {"callback_url": "\#(url)"}}"#
                let id = try #require(try await Self.submit(server, body).object()["id"] as? String)
                #expect(try await Self.finished(server, id)["status"] as? String == "succeeded")
                for _ in 0..<3 { _ = try await server.server.webhooks.deliverDue() }
                let received = receiver.received
                #expect(received.count == 3)
                let last = try #require(received.last)
                #expect(last.headers["serval-job-id"] == id)
                let timestamp = try #require(last.headers["serval-timestamp"])
                #expect(last.headers["serval-signature"] == WebhookTests.expectedSignature(secret: "s3cret", id: id, timestamp: timestamp, body: last.body))
                let result = try await server.get("/v2/jobs/\(id)/result")
                #expect(last.body == result.text)
                let callback = try #require(try await server.get("/v2/jobs/\(id)").object()["callback"] as? [String: Any])
                #expect(callback["state"] as? String == "delivered")
                #expect(callback["attempts"] as? Int == 3)
                #expect((callback["log"] as? [[String: Any]])?.compactMap { $0["status"] as? Int } == [503, 503, 200])
            }
        }
    }
}
