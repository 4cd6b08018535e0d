import Foundation
import Hummingbird
import ServalRegistry
import ServalServing
import ServalWire

/// Serval's registry extension under `/v2/models/{m}`: versions (register with lineage, list), labels (move,
/// delete, roll back) and the append-only history. Every change is audited with the caller as actor.
struct RegistryRoutes {
    let shared: RouteContext
    init(_ shared: RouteContext) { self.shared = shared }

    func register(_ routes: inout RouteBuilder) {
        let shared = self.shared
        let lifecycle = shared.lifecycle
        routes.post("/v2/models/:model/versions") { request, context in
            let model = try context.parameters.require("model")
            let body = try await shared.collect(request, upTo: shared.configuration.maxModelSize, flag: "--max-model-size")
            let form = try MultipartForm(contentType: request.headers[.contentType], body: body)
            guard let file = form["model"], !file.isEmpty else {
                throw ServingError.invalidArgument("multipart part 'model' (the ONNX file) is required")
            }
            var metadata: VersionMetadata?
            if let text = form["metadata"], !text.isEmpty {
                metadata = try ControlPlane.decode(VersionMetadata.self, from: ByteBuffer(bytes: text), what: "part 'metadata'")
            }
            let registered = try await lifecycle.register(model: model, file: Data(file), metadata: metadata, actor: RouteContext.actor(request, context),
                                                          maxNodes: shared.configuration.maxModelNodes)
            var response = try ControlPlane.response(
                ControlPlane.RegisterResponse(name: registered.name, version: String(registered.version), state: registered.state.rawValue, sha256: registered.sha256),
                status: .created)
            response.headers[.location] = "/v2/models/\(model)/versions/\(registered.version)"
            return response
        }
        routes.get("/v2/models/:model/versions") { _, context in
            let model = try context.parameters.require("model")
            let versions = try await lifecycle.versions(model: model).map { info in
                ControlPlane.Version(
                    version: String(info.version), state: info.state, reason: info.reason, labels: info.labels, createdAt: info.record?.createdAt,
                    sha256: info.record?.sha256, size: info.record?.size, registeredBy: info.record?.actor, metadata: info.record?.metadata)
            }
            return try ControlPlane.response(ControlPlane.VersionsResponse(name: model, versions: versions))
        }
        // The version's ONNX file as registered (a pipeline run downloads the champion to evaluate it).
        routes.get("/v2/models/:model/versions/:version/model") { _, context in
            let model = try context.parameters.require("model"), text = try context.parameters.require("version")
            guard let version = Int(text), version > 0 else { throw ServingError.invalidArgument("version must be a positive integer, got '\(text)'") }
            guard await shared.manager.knows(model) else { throw ServingError.notFound("unknown model '\(model)'") }
            let file = await shared.manager.repository.modelFile(model, version: version)
            guard let bytes = FileManager.default.contents(atPath: file.path) else { throw ServingError.notFound("model '\(model)' has no version \(version) file") }
            return Response(status: .ok, headers: [.contentType: "application/octet-stream"], body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
        }
        routes.get("/v2/models/:model/labels") { _, context in
            let model = try context.parameters.require("model")
            let labels = try await lifecycle.labels(model: model).mapValues(String.init)
            return try ControlPlane.response(ControlPlane.LabelsResponse(name: model, labels: labels))
        }
        routes.put("/v2/models/:model/labels/:label") { request, context in
            let model = try context.parameters.require("model"), label = try context.parameters.require("label")
            let body = try ControlPlane.decode(ControlPlane.LabelMoveRequest.self, from: try await shared.collect(request))
            let move = try await lifecycle.moveLabel(model: model, label: label, version: body.version, actor: RouteContext.actor(request, context), reason: body.reason)
            return try ControlPlane.response(Self.moveBody(model, move))
        }
        routes.delete("/v2/models/:model/labels/:label") { request, context in
            let model = try context.parameters.require("model"), label = try context.parameters.require("label")
            let body = try ControlPlane.decode(ControlPlane.ReasonRequest.self, from: try await shared.collect(request))
            let move = try await lifecycle.removeLabel(model: model, label: label, actor: RouteContext.actor(request, context), reason: body.reason)
            return try ControlPlane.response(Self.moveBody(model, move))
        }
        routes.post("/v2/models/:model/labels/:label/rollback") { request, context in
            let model = try context.parameters.require("model"), label = try context.parameters.require("label")
            let body = try ControlPlane.decode(ControlPlane.ReasonRequest.self, from: try await shared.collect(request))
            let move = try await lifecycle.rollback(model: model, label: label, actor: RouteContext.actor(request, context), reason: body.reason)
            return try ControlPlane.response(Self.moveBody(model, move))
        }
        routes.get("/v2/models/:model/history") { request, context in
            let model = try context.parameters.require("model")
            let limit = try Self.limit(request)
            let entries = try await lifecycle.history(model: model, limit: limit).map { entry in
                ControlPlane.Entry(time: entry.time, actor: entry.actor, action: entry.action.rawValue, details: JSONDocument.parse(entry.details), reason: entry.reason)
            }
            return try ControlPlane.response(ControlPlane.HistoryResponse(name: model, entries: entries))
        }
    }

    static func moveBody(_ model: String, _ move: Registry.LabelMove) -> ControlPlane.LabelMoveResponse {
        ControlPlane.LabelMoveResponse(name: model, label: move.label, version: move.to.map(String.init), previous: move.from.map(String.init))
    }

    /// `?limit=N`, 1...1000, default 100.
    static func limit(_ request: Request) throws -> Int {
        guard let text = request.uri.queryParameters.get("limit") else { return 100 }
        guard let limit = Int(text), (1...1000).contains(limit) else {
            throw ServingError.invalidArgument("query parameter 'limit' must be an integer from 1 to 1000, got '\(text)'")
        }
        return limit
    }
}
