import Foundation
import Hummingbird
import ServalMonitor
import ServalServing
import ServalWire

/// Model monitoring over HTTP: settings (`GET/PUT/DELETE /v2/models/{m}/monitoring`, changes audited), the drift
/// and performance status of a version's window, and the payload log as JSON lines.
struct MonitoringRoutes {
    let shared: RouteContext
    let monitor: Monitor

    func register(_ routes: inout RouteBuilder) {
        let shared = self.shared, monitor = self.monitor
        routes.get("/v2/models/:model/monitoring") { _, context in
            let model = try context.parameters.require("model")
            return try await Self.settings(monitor, shared, model)
        }
        routes.put("/v2/models/:model/monitoring") { request, context in
            let model = try context.parameters.require("model")
            guard await shared.manager.knows(model) else { throw ServingError.notFound("unknown model '\(model)'") }
            let body = try await shared.collect(request)
            let config = try MonitoringConfig.fromJSON(Array(buffer: body))
            try await monitor.setSettings(model, config, actor: RouteContext.actor(request, context), reason: request.uri.queryParameters.get("reason"))
            return try await Self.settings(monitor, shared, model)
        }
        routes.delete("/v2/models/:model/monitoring") { request, context in
            let model = try context.parameters.require("model")
            guard await shared.manager.knows(model) else { throw ServingError.notFound("unknown model '\(model)'") }
            try await monitor.setSettings(model, nil, actor: RouteContext.actor(request, context), reason: request.uri.queryParameters.get("reason"))
            return try await Self.settings(monitor, shared, model)
        }
        for path in ["/v2/models/:model/monitoring/status", "/v2/models/:model/versions/:version/monitoring/status"] {
            routes.get(path) { _, context in
                let model = try context.parameters.require("model")
                let version = try Self.version(context.parameters.get("version"))
                let status = try await monitor.status(model, version: version, now: Date().timeIntervalSince1970)
                return Response.json(status.json())
            }
        }
        routes.post("/v2/models/:model/feedback") { request, context in
            let model = try context.parameters.require("model")
            let body = try await shared.collect(request)
            let items = try FeedbackItem.parse(try body.withUnsafeReadableBytes { try JSONParser.parse($0, limits: shared.configuration.limits) })
            let rows = try await monitor.feedback(model, items, now: Date().timeIntervalSince1970)
            var json = JSONWriter()
            json.raw("{\"model\":")
            json.string(model)
            json.raw(",\"items\":\(items.count),\"rows\":\(rows)}")
            return Response.json(json.text)
        }
        routes.get("/monitoring") { _, _ in
            Self.html(ReportPage.index(await monitor.overview(now: Date().timeIntervalSince1970)))
        }
        routes.get("/monitoring/:model") { request, context in
            let model = try context.parameters.require("model")
            let version = try Self.version(request.uri.queryParameters.get("version").map { String($0) })
            let (status, page) = try await monitor.page(model, version: version, now: Date().timeIntervalSince1970)
            return Self.html(ReportPage.model(status, page))
        }
        routes.get("/v2/models/:model/logs") { request, context in
            let model = try context.parameters.require("model")
            guard await shared.manager.knows(model) else { throw ServingError.notFound("unknown model '\(model)'") }
            let query = request.uri.queryParameters
            var limit = 100
            if let text = query.get("limit") {
                guard let value = Int(text), (1...1000).contains(value) else { throw ServingError.invalidArgument("limit: expected an integer in 1…1000, got '\(text)'") }
                limit = value
            }
            let since = try query.get("since").map { text -> Double in
                if let seconds = Double(text) { return seconds }
                if let date = try? Date(text, strategy: .iso8601) { return date.timeIntervalSince1970 }
                throw ServingError.invalidArgument("since: expected an RFC 3339 time or epoch seconds, got '\(text)'")
            }
            let lines = try await monitor.logs(model, limit: limit, since: since)
            let text = lines.isEmpty ? "" : lines.joined(separator: "\n") + "\n"
            return Response(status: .ok, headers: [.contentType: "application/x-ndjson"], body: .init(byteBuffer: ByteBuffer(string: text)))
        }
    }

    /// A version number from the path or the query; nil when absent.
    static func version(_ text: String?) throws -> Int? {
        try text.map { text in
            guard let number = Int(text), number > 0 else { throw ServingError.invalidArgument("version: expected a positive integer, got '\(text)'") }
            return number
        }
    }

    static func html(_ text: String) -> Response {
        Response(status: .ok, headers: [.contentType: "text/html; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    static func settings(_ monitor: Monitor, _ shared: RouteContext, _ model: String) async throws -> Response {
        guard await shared.manager.knows(model) else { throw ServingError.notFound("unknown model '\(model)'") }
        let (config, source, problem) = try await monitor.settings(model)
        var json = JSONWriter()
        json.raw("{\"model\":")
        json.string(model)
        json.raw(",\"source\":")
        json.string(source.rawValue)
        json.raw(",\"monitoring\":")
        json.raw(config.map { String(decoding: $0.json(), as: UTF8.self) } ?? "null")
        json.raw(",\"problem\":")
        if let problem { json.string(problem) } else { json.raw("null") }
        json.raw("}")
        return Response.json(json.text)
    }
}
