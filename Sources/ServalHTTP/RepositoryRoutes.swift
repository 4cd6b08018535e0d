import Hummingbird
import ServalServing
import ServalWire

/// Triton's repository extension: the index of every model version with its state, and explicit load/unload.
struct RepositoryRoutes {
    let shared: RouteContext
    init(_ shared: RouteContext) { self.shared = shared }

    func register(_ routes: inout RouteBuilder) {
        let shared = self.shared
        routes.post("/v2/repository/index") { request, _ in
            let body = try await shared.collect(request)
            let readyOnly = body.readableBytes > 0 ? try body.withUnsafeReadableBytes { try JSONParser.parse($0, limits: shared.configuration.limits) }["ready"].flatMap {
                if case .bool(let flag) = $0 { return flag } else { return nil }
            } ?? false : false
            var json = JSONWriter()
            json.raw("[")
            var first = true
            for entry in await shared.manager.index() where !readyOnly || entry.state == .ready {
                if !first { json.raw(",") }
                first = false
                json.raw("{\"name\":")
                json.string(entry.name)
                if !entry.version.isEmpty {
                    json.raw(",\"version\":")
                    json.string(entry.version)
                }
                json.raw(",\"state\":\"\(entry.state.rawValue)\",\"reason\":")
                json.string(entry.reason)
                if let bytes = entry.memoryBytes { json.raw(",\"memory_bytes\":\(bytes)") }
                json.raw("}")
            }
            json.raw("]")
            return Response.json(json.text)
        }
        routes.post("/v2/repository/models/:model/load") { request, context in
            try await shared.lifecycle.load(model: try context.parameters.require("model"), actor: RouteContext.actor(request, context))
            return Response.json("{}")
        }
        routes.post("/v2/repository/models/:model/unload") { request, context in
            try await shared.lifecycle.unload(model: try context.parameters.require("model"), actor: RouteContext.actor(request, context))
            return Response.json("{}")
        }
    }
}
