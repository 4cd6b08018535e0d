import HTTPTypes
import Hummingbird
import NIOCore
import ServalJobs
import ServalServing
import ServalWire

/// Async inference: `POST /v2/models/{m}[/versions/{v}]/jobs` (also a v2 infer call with `Prefer: respond-async`),
/// and `/v2/jobs` to read, fetch the result of, cancel and list jobs.
struct JobRoutes {
    let shared: RouteContext
    let jobs: JobService

    func register(_ routes: inout RouteBuilder) {
        let shared = self.shared, jobs = self.jobs
        for prefix in ["/v2/models/:model", "/v2/models/:model/versions/:version"] {
            routes.post(prefix + "/jobs") { request, context in
                let name = try context.parameters.require("model")
                let selector = try ModelSelector.parse(version: context.parameters.get("version"), model: name)
                return try await Self.submit(jobs, model: name, selector: selector, request: request, context: context, body: try await shared.collect(request))
            }
        }
        routes.get("/v2/jobs") { request, _ in
            let query = request.uri.queryParameters
            var limit: Int?
            if let text = query["limit"].map(String.init) {
                guard let number = Int(text) else { throw ServingError.invalidArgument("query parameter 'limit' must be an integer, got '\(text)'") }
                limit = number
            }
            let page = try await jobs.list(
                model: query["model"].map(String.init), status: query["status"].map(String.init), limit: limit, after: query["after"].map(String.init))
            return Response.json(JobJSON.list(page.jobs, next: page.next))
        }
        routes.get("/v2/jobs/:id") { _, context in
            let (job, callbacks) = try await jobs.job(try context.parameters.require("id"))
            return Response.json(JobJSON.job(job, callbacks: callbacks))
        }
        routes.delete("/v2/jobs/:id") { _, context in
            Response.json(JobJSON.job(try await jobs.cancel(try context.parameters.require("id"))))
        }
        routes.get("/v2/jobs/:id/result") { _, context in
            let result = try await jobs.result(try context.parameters.require("id"))
            guard let headerLength = result.headerLength else {
                return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: result.body)))
            }
            return Response(
                status: .ok, headers: [.contentType: "application/octet-stream", HTTPHeaders.inferenceHeaderLength: String(headerLength)],
                body: .init(byteBuffer: ByteBuffer(bytes: result.body)))
        }
    }

    /// Commits the job and answers 202 with `Location` (200 with the original job for a repeated idempotency key).
    static func submit(
        _ jobs: JobService, model: String, selector: ModelSelector, request: Request, context: ServalRequestContext, body: ByteBuffer
    ) async throws -> Response {
        let (job, created) = try await jobs.submit(
            model: model, selector: selector, body: Array(body.readableBytesView), headerLength: try KServeRoutes.headerLength(request),
            idempotencyKey: request.headers[HTTPHeaders.idempotencyKey], submittedBy: RouteContext.actor(request, context))
        var response = Response.json(created ? JobJSON.accepted(job) : JobJSON.job(job), status: created ? .accepted : .ok)
        response.headers[.location] = "/v2/jobs/\(job.id)"
        return response
    }

    /// RFC 7240: does the request prefer an asynchronous answer?
    static func prefersAsync(_ request: Request) -> Bool {
        request.headers[values: HTTPHeaders.prefer].contains { value in
            value.split(separator: ",").contains { $0.split(separator: ";").first?.trimmingCharacters(in: .whitespaces).lowercased() == "respond-async" }
        }
    }
}
