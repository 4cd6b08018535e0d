import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import ServalServing

/// The REST routes: KServe v2 (health, metadata, ready, infer, config, repository) and TF Serving
/// (status, metadata, :predict). Each handler decodes, asks `ModelManager`/`ServedModel`, encodes.
struct Routes: Sendable {
    let manager: ModelManager
    let configuration: HTTPConfiguration
    let state: ServerState

    func register(on router: Router<BasicRequestContext>) {
        router.get("/v2/health/live") { _, _ in Response.json("{\"live\":true}") }
        router.get("/v2/health/ready") { _, _ in
            let ready = await state.isReady(manager)
            return Response.json("{\"ready\":\(ready)}", status: ready ? .ok : .serviceUnavailable)
        }
        router.get("/v2") { _, _ in
            Response.json("{\"name\":\"serval\",\"version\":\"\(configuration.serverVersion)\",\"extensions\":[\"model_repository\",\"model_configuration\",\"statistics\",\"binary_tensor_data\"]}")
        }
        for prefix in ["/v2/models/:model", "/v2/models/:model/versions/:version"] {
            router.get(RouterPath(prefix)) { _, context in
                let model = try await resolve(context)
                return Response.json(KServeCodec.encodeMetadata(model, versions: await manager.readyVersions(of: model.name)))
            }
            router.get(RouterPath(prefix + "/ready")) { _, context in
                let name = try context.parameters.require("model")
                let ready = try await state.isReady(manager, model: name, version: context.parameters.get("version"))
                var json = JSONWriter()
                json.raw("{\"name\":")
                json.string(name)
                json.raw(",\"ready\":\(ready)}")
                return Response.json(json.text, status: ready ? .ok : .serviceUnavailable)
            }
            router.post(RouterPath(prefix + "/infer")) { request, context in
                let model = try await resolve(context)
                let body = try await collect(request)
                // Binary tensor extension: the JSON header is the first Inference-Header-Content-Length bytes.
                let headerLength = try request.headers[Self.inferenceHeaderLength].map { value -> Int in
                    guard let length = Int(value), length >= 0, length <= body.readableBytes else {
                        throw ServingError.invalidArgument("Inference-Header-Content-Length \(value) does not fit the \(body.readableBytes)-byte body")
                    }
                    return length
                }
                let (inference, binaryOutputs) = try body.withUnsafeReadableBytes { bytes in
                    guard let headerLength else { return try KServeCodec.decodeRequest(try JSONParser.parse(bytes)) }
                    let header = UnsafeRawBufferPointer(rebasing: bytes[0..<headerLength])
                    return try KServeCodec.decodeRequest(try JSONParser.parse(header), binary: UnsafeRawBufferPointer(rebasing: bytes[headerLength...]))
                }
                let response = try await model.infer(inference)
                let (json, binary) = KServeCodec.encodeResponse(response, binary: binaryOutputs)
                guard !binary.isEmpty || binaryOutputs != .none else { return Response.json(json) }
                var buffer = ByteBuffer(string: json)
                buffer.writeBytes(binary)
                return Response(status: .ok, headers: [.contentType: "application/octet-stream", Self.inferenceHeaderLength: String(json.utf8.count)],
                                body: .init(byteBuffer: buffer))
            }
            router.get(RouterPath(prefix + "/stats")) { _, context in
                let model = try await resolve(context)
                return Response.json(StatisticsJSON.encode([model]))
            }
            router.get(RouterPath(prefix + "/config")) { _, context in
                let model = try await resolve(context)
                return Response.json(try configJSON(model))
            }
        }
        router.get("/v2/models/stats") { _, _ in Response.json(StatisticsJSON.encode(await manager.readyModels(named: nil))) }
        router.post("/v2/repository/index") { request, _ in
            let body = try await collect(request)
            let readyOnly = body.readableBytes > 0 ? try body.withUnsafeReadableBytes { try JSONParser.parse($0) }["ready"].flatMap {
                if case .bool(let flag) = $0 { return flag } else { return nil }
            } ?? false : false
            var json = JSONWriter()
            json.raw("[")
            var first = true
            for entry in await manager.index() where !readyOnly || entry.state == "READY" {
                if !first { json.raw(",") }
                first = false
                json.raw("{\"name\":")
                json.string(entry.name)
                if !entry.version.isEmpty {
                    json.raw(",\"version\":")
                    json.string(entry.version)
                }
                json.raw(",\"state\":\"\(entry.state)\",\"reason\":")
                json.string(entry.reason)
                json.raw("}")
            }
            json.raw("]")
            return Response.json(json.text)
        }
        router.post("/v2/repository/models/:model/load") { _, context in
            try await manager.load(try context.parameters.require("model"))
            return Response.json("{}")
        }
        router.post("/v2/repository/models/:model/unload") { _, context in
            try await manager.unload(try context.parameters.require("model"))
            return Response.json("{}")
        }
        registerTFServing(on: router)
    }

    private func registerTFServing(on router: Router<BasicRequestContext>) {
        // TF Serving puts the method after a colon in the last segment: /v1/models/m:predict.
        for (path, selector) in [("/v1/models/:model", Selector.latest), ("/v1/models/:model/versions/:version", .version), ("/v1/models/:model/labels/:label", .label)] {
            router.get(RouterPath(path)) { _, context in try await tfStatus(context, selector) }
            router.get(RouterPath(path + "/metadata")) { _, context in
                let model = try await tfResolve(context, selector, stripMethod: false)
                return Response.json(tfMetadata(model))
            }
            router.post(RouterPath(path)) { request, context in
                let (model, method) = try await tfResolveWithMethod(context, selector)
                guard method == "predict" else {
                    throw ServingError(.unsupported, "':\(method)' is not supported; use ':predict'")
                }
                let body = try await collect(request)
                let (inference, format) = try body.withUnsafeReadableBytes { try TFServingCodec.decodeRequest(try JSONParser.parse($0), model: model) }
                let response = try await model.infer(inference)
                return Response.json(TFServingCodec.encodeResponse(response, format: format))
            }
        }
    }

    enum Selector { case latest, version, label }

    static let inferenceHeaderLength = HTTPField.Name("Inference-Header-Content-Length")!

    /// Reads the body up to --http-max-input-size; a larger body is refused while streaming.
    private func collect(_ request: Request) async throws -> ByteBuffer {
        do {
            return try await request.body.collect(upTo: configuration.maxInputSize)
        } catch is NIOTooManyBytesError {
            throw ServingError(.payloadTooLarge, "request body is larger than --http-max-input-size (\(configuration.maxInputSize) bytes)")
        }
    }

    private func resolve(_ context: BasicRequestContext) async throws -> ServedModel {
        let name = try context.parameters.require("model")
        return try await manager.resolve(name, version: context.parameters.get("version"))
    }

    private func tfResolveWithMethod(_ context: BasicRequestContext, _ selector: Selector) async throws -> (ServedModel, String) {
        let last: String
        switch selector {
        case .latest: last = try context.parameters.require("model")
        case .version: last = try context.parameters.require("version")
        case .label: last = try context.parameters.require("label")
        }
        guard let colon = last.lastIndex(of: ":") else { throw ServingError(.unsupported, "POST needs a method, e.g. /v1/models/NAME:predict") }
        let method = String(last[last.index(after: colon)...])
        return (try await tfResolve(context, selector, stripMethod: true), method)
    }

    private func tfResolve(_ context: BasicRequestContext, _ selector: Selector, stripMethod: Bool) async throws -> ServedModel {
        func strip(_ value: String) -> String {
            guard stripMethod, let colon = value.lastIndex(of: ":") else { return value }
            return String(value[..<colon])
        }
        let name = strip(try context.parameters.require("model"))
        switch selector {
        case .latest: return try await manager.resolve(name)
        case .version: return try await manager.resolve(name, version: strip(try context.parameters.require("version")))
        case .label: return try await manager.resolve(name, label: strip(try context.parameters.require("label")))
        }
    }

    /// TF Serving GetModelStatus JSON.
    private func tfStatus(_ context: BasicRequestContext, _ selector: Selector) async throws -> Response {
        let name = try context.parameters.require("model")
        let index = await manager.index()
        guard index.contains(where: { $0.name == name }) else { throw ServingError.notFound("unknown model '\(name)'") }
        let rows = index.filter { $0.name == name && !$0.version.isEmpty }
        var selected = rows
        switch selector {
        case .latest: break
        case .version:
            let version = try context.parameters.require("version")
            selected = rows.filter { $0.version == version }
            if selected.isEmpty { throw ServingError.notFound("model '\(name)' has no version '\(version)'") }
        case .label:
            let model = try await manager.resolve(name, label: try context.parameters.require("label"))
            selected = rows.filter { $0.version == String(model.version) }
        }
        var json = JSONWriter()
        json.raw("{\"model_version_status\":[")
        for (index, row) in selected.enumerated() {
            if index > 0 { json.raw(",") }
            let state = row.state == "READY" ? "AVAILABLE" : (row.state == "LOADING" ? "LOADING" : "END")
            json.raw("{\"version\":")
            json.string(row.version)
            json.raw(",\"state\":\"\(state)\",\"status\":{\"error_code\":\"\(row.reason.isEmpty ? "OK" : "UNAVAILABLE")\",\"error_message\":")
            json.string(row.reason)
            json.raw("}}")
        }
        json.raw("]}")
        return Response.json(json.text)
    }

    /// TF Serving GetModelMetadata JSON, with the serving_default signature described from the ONNX graph.
    private func tfMetadata(_ model: ServedModel) -> String {
        func tensors(_ list: [TensorMetadata], into json: inout JSONWriter) {
            json.raw("{")
            for (index, tensor) in list.enumerated() {
                if index > 0 { json.raw(",") }
                json.string(tensor.name)
                json.raw(":{\"dtype\":\"\(tensor.datatype)\",\"tensor_shape\":{\"dim\":[")
                json.raw(tensor.shape.map { "{\"size\":\"\($0)\"}" }.joined(separator: ","))
                json.raw("]},\"name\":")
                json.string(tensor.name)
                json.raw("}")
            }
            json.raw("}")
        }
        var json = JSONWriter()
        json.raw("{\"model_spec\":{\"name\":")
        json.string(model.name)
        json.raw(",\"version\":\"\(model.version)\"},\"metadata\":{\"signature_def\":{\"signature_def\":{\"serving_default\":{\"inputs\":")
        tensors(model.inputs, into: &json)
        json.raw(",\"outputs\":")
        tensors(model.outputs, into: &json)
        json.raw(",\"method_name\":\"tensorflow/serving/predict\"}}}}}")
        return json.text
    }

    /// The effective model configuration as JSON (`GET /v2/models/{m}/config`).
    private func configJSON(_ model: ServedModel) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        var config = model.config
        config.inputs = config.inputs ?? model.inputs
        config.outputs = config.outputs ?? model.outputs
        let body = String(decoding: try encoder.encode(config), as: UTF8.self)
        return "{\"name\":\"\(model.name)\",\"version\":\"\(model.version)\",\"platform\":\"\(model.platform)\",\"weight_bytes\":\(model.weightBytes),\"config\":\(body)}"
    }
}
