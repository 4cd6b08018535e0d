import Hummingbird
import ServalJobs
import ServalMonitor
import ServalServing
import ServalWire

/// The one place where errors become HTTP answers: always `{"error": "..."}`, status by error kind
/// (the KServe/Triton and TF Serving conventions agree on these).
enum ErrorResponses {
    static func response(_ error: Error) -> Response {
        if let serving = error as? ServingError {
            var response = json(HTTPResponse.Status(code: serving.httpStatus), message: serving.message)
            if let seconds = serving.retryAfterSeconds { response.headers[.retryAfter] = String(seconds) }
            if serving.kind == .unauthenticated { response.headers[.wwwAuthenticate] = "Bearer realm=\"serval\"" }
            return response
        }
        if let job = error as? JobError { return json(HTTPResponse.Status(code: job.status), message: job.message) }
        if let monitor = error as? MonitorError {
            let status: HTTPResponse.Status = switch monitor.kind {
            case .notFound: .notFound
            case .conflict: .conflict
            case .invalid: .badRequest
            }
            return json(status, message: monitor.message)
        }
        if let config = error as? MonitoringConfigError { return json(.badRequest, message: config.message) }
        if let syntax = error as? JSONSyntaxError { return json(.badRequest, message: syntax.description) }
        if let http = error as? HTTPError { return json(http.status, message: http.body ?? http.status.reasonPhrase) }
        if let http = error as? any HTTPResponseError { return json(http.status, message: "\(error)") }
        return json(.internalServerError, message: "internal error: \(error)")
    }

    static func json(_ status: HTTPResponse.Status, message: String) -> Response {
        var writer = JSONWriter()
        writer.raw("{\"error\":")
        writer.string(message)
        writer.raw("}")
        return Response.json(writer.text, status: status)
    }
}

extension Response {
    static func json(_ text: String, status: HTTPResponse.Status = .ok) -> Response {
        Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: text)))
    }
}

/// Turns every error a route (or the router itself) throws into the JSON error body. A path that exists with
/// other methods answers 405 with `Allow` (RFC 9110 §15.5.6), not 404.
struct ErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    let routes: RouteTable

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async -> Response {
        do {
            return try await next(request, context)
        } catch let error as HTTPError where error.status == .notFound {
            if let allowed = routes.allowedMethods(request.uri.path), !allowed.contains(request.method) {
                var response = ErrorResponses.json(.methodNotAllowed, message: "method \(request.method) is not allowed on \(request.uri.path); allowed: \(allowed.map(\.rawValue).joined(separator: ", "))")
                response.headers[.allow] = allowed.map(\.rawValue).joined(separator: ", ")
                return response
            }
            return ErrorResponses.json(.notFound, message: "no route for \(request.method) \(request.uri.path)")
        } catch {
            return ErrorResponses.response(error)
        }
    }
}
