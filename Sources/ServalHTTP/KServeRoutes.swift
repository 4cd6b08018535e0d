import Foundation
import Hummingbird
import NIOCore
import ServalServing
import ServalWire

/// KServe v2 / Open Inference Protocol: health, server and model metadata, readiness, inference (JSON and
/// Triton's binary tensor extension), statistics and the effective model configuration.
struct KServeRoutes {
    let shared: RouteContext
    init(_ shared: RouteContext) { self.shared = shared }

    func register(_ routes: inout RouteBuilder) {
        let shared = self.shared
        routes.get("/v2/health/live") { _, _ in Response.json("{\"live\":true}") }
        routes.get("/v2/health/ready") { _, _ in
            let ready = await shared.state.isReady(shared.manager)
            return Response.json("{\"ready\":\(ready)}", status: ready ? .ok : .serviceUnavailable)
        }
        routes.get("/v2") { _, _ in
            Response.json("{\"name\":\"serval\",\"version\":\"\(shared.configuration.serverVersion)\",\"extensions\":[\"model_repository\",\"model_configuration\",\"statistics\",\"binary_tensor_data\"]}")
        }
        for prefix in ["/v2/models/:model", "/v2/models/:model/versions/:version"] {
            routes.get(prefix) { _, context in
                let route = try await Self.route(shared, context)
                return Response.json(Self.encodeMetadata(route.primary, versions: await shared.manager.readyVersions(of: route.model)))
            }
            routes.get(prefix + "/ready") { _, context in
                let name = try context.parameters.require("model")
                let selector = try ModelSelector.parse(version: context.parameters.get("version"), model: name)
                let ready = try await shared.state.isReady(shared.router, model: name, selector)
                var json = JSONWriter()
                json.raw("{\"name\":")
                json.string(name)
                json.raw(",\"ready\":\(ready)}")
                return Response.json(json.text, status: ready ? .ok : .serviceUnavailable)
            }
            routes.post(prefix + "/infer") { request, context in
                let started = ContinuousClock.now
                let name = try context.parameters.require("model")
                let selector = try ModelSelector.parse(version: context.parameters.get("version"), model: name)
                let body = try await shared.collect(request)
                // RFC 7240 `Prefer: respond-async`: the same call as POST .../jobs.
                if let jobs = shared.jobs, JobRoutes.prefersAsync(request) {
                    var response = try await JobRoutes.submit(jobs, model: name, selector: selector, request: request, context: context, body: body)
                    response.headers[HTTPHeaders.preferenceApplied] = "respond-async"
                    return response
                }
                let trace = HTTPTracing.start(shared.router.tracer, "POST /v2/models/{model}/infer", request: request, started: started)
                let response = try await RequestTrace.around(trace) {
                    try await ConnectionWatch.cancellingOnDisconnect(context) {
                        try await Self.infer(shared, model: name, selector: selector, request: request, body: body, trace: trace, started: started)
                    }
                }
                if shared.configuration.accessLog { AccessLog.inference(context.logger, response, started: started) }
                return response
            }
            routes.get(prefix + "/stats") { _, context in
                let route = try await Self.route(shared, context)
                return Response.json(StatisticsJSON.encode([route.primary]))
            }
            routes.get(prefix + "/config") { _, context in
                let route = try await Self.route(shared, context)
                return Response.json(try Self.configJSON(route.primary, labels: shared.router.table.labels(route.model)))
            }
        }
        routes.get("/v2/models/stats") { _, _ in Response.json(StatisticsJSON.encode(await shared.manager.readyModels(named: nil))) }
    }

    static func route(_ shared: RouteContext, _ context: ServalRequestContext) async throws -> Route {
        let name = try context.parameters.require("model")
        return try await shared.router.route(name, try ModelSelector.parse(version: context.parameters.get("version"), model: name))
    }

    /// Decodes (JSON, or a JSON header followed by binary tensors), routes (sticky by `parameters.routing_key` or
    /// the `Serval-Routing-Key` header), runs through the router, encodes in kind.
    static func infer(
        _ shared: RouteContext, model: String, selector: ModelSelector, request: Request, body: ByteBuffer, trace: RequestTrace? = nil,
        started: ContinuousClock.Instant = .now
    ) async throws -> Response {
        let headerLength = try Self.headerLength(request)
        let (inference, binaryOutputs) = try body.withUnsafeReadableBytes { try KServeCodec.decodeRequest(body: $0, headerLength: headerLength, limits: shared.configuration.limits) }
        trace?.child("decode", from: started, to: .now)
        let route = try await shared.router.route(model, selector, routingKey: inference.routingKey ?? request.headers[HTTPHeaders.routingKey])
        let response = try await shared.router.infer(inference, on: route, trace: trace)
        let encoding = ContinuousClock.now
        defer { trace?.child("encode", from: encoding, to: .now) }
        let (json, binary) = KServeCodec.encodeResponse(response, binary: binaryOutputs)
        guard !binary.isEmpty || binaryOutputs != .none else {
            var answer = Response.json(json)
            answer.headers[HTTPHeaders.modelVersion] = response.modelVersion
            if let id = response.id { answer.headers[HTTPHeaders.requestID] = id }
            return answer
        }
        var buffer = ByteBuffer(string: json)
        buffer.writeBytes(binary)
        var answer = Response(
            status: .ok,
            headers: [.contentType: "application/octet-stream", HTTPHeaders.inferenceHeaderLength: String(json.utf8.count), HTTPHeaders.modelVersion: response.modelVersion],
            body: .init(byteBuffer: buffer))
        if let id = response.id { answer.headers[HTTPHeaders.requestID] = id }
        return answer
    }

    /// Binary tensor extension: the JSON header is the first Inference-Header-Content-Length bytes (nil: all JSON).
    /// Whether it fits the body is the codec's check.
    static func headerLength(_ request: Request) throws -> Int? {
        try request.headers[HTTPHeaders.inferenceHeaderLength].map { value in
            guard let length = Int(value) else { throw ServingError.invalidArgument("Inference-Header-Content-Length must be an integer, got '\(value)'") }
            return length
        }
    }

    /// The effective model configuration as JSON (`GET /v2/models/{m}/config`), with the labels in force
    /// (the store's, not config.yaml's once the store has seen the model).
    static func configJSON(_ model: ServedModel, labels: [String: Int]) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        var config = model.config
        config.inputs = config.inputs ?? model.inputs
        config.outputs = config.outputs ?? model.outputs
        config.versionLabels = labels.isEmpty ? nil : labels
        let body = String(decoding: try encoder.encode(config), as: UTF8.self)
        return "{\"name\":\"\(model.name)\",\"version\":\"\(model.version)\",\"platform\":\"\(model.platform)\",\"weight_bytes\":\(model.weightBytes),\"config\":\(body)}"
    }

    /// KServe v2 model metadata JSON.
    static func encodeMetadata(_ model: ServedModel, versions: [Int]) -> String {
        var json = JSONWriter()
        json.raw("{\"name\":")
        json.string(model.name)
        json.raw(",\"versions\":[" + versions.map { "\"\($0)\"" }.joined(separator: ",") + "],\"platform\":\"\(model.platform)\"")
        json.raw(",\"inputs\":")
        KServeCodec.tensorMetadata(model.inputs, into: &json)
        json.raw(",\"outputs\":")
        KServeCodec.tensorMetadata(model.outputs, into: &json)
        json.raw("}")
        return json.text
    }

}
