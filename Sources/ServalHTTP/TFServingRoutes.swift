import Hummingbird
import ServalServing
import ServalWire

/// TensorFlow Serving REST: model status, metadata and `:predict`, by latest, version or label.
struct TFServingRoutes {
    let shared: RouteContext
    init(_ shared: RouteContext) { self.shared = shared }

    enum Addressing { case latest, version, label }

    func register(_ routes: inout RouteBuilder) {
        let shared = self.shared
        // TF Serving puts the method after a colon in the last segment: /v1/models/m:predict.
        for (path, addressing) in [("/v1/models/:model", Addressing.latest), ("/v1/models/:model/versions/:version", .version), ("/v1/models/:model/labels/:label", .label)] {
            routes.get(path) { _, context in try await Self.status(shared, context, addressing) }
            routes.get(path + "/metadata") { _, context in
                let (name, selector, _) = try Self.selector(context, addressing, method: false)
                let route = try await shared.router.route(name, selector)
                return Response.json(Self.metadata(route.primary))
            }
            routes.post(path) { request, context in
                let started = ContinuousClock.now
                let (name, selector, method) = try Self.selector(context, addressing, method: true)
                guard let method else { throw ServingError(.unsupported, "POST needs a method, e.g. /v1/models/NAME:predict") }
                guard method == "predict" else { throw ServingError(.unsupported, "':\(method)' is not supported; use ':predict'") }
                let route = try await shared.router.route(name, selector, routingKey: request.headers[HTTPHeaders.routingKey])
                let body = try await shared.collect(request)
                let trace = HTTPTracing.start(shared.router.tracer, "POST /v1/models/{model}:predict", request: request, started: started)
                return try await RequestTrace.around(trace) { try await ConnectionWatch.cancellingOnDisconnect(context) {
                    let (inference, format) = try body.withUnsafeReadableBytes { 
                        try TFServingCodec.decodeRequest(try JSONParser.parse($0, limits: shared.configuration.limits), inputs: route.primary.inputs, limits: shared.configuration.limits)
                    }
                    trace?.child("decode", from: started, to: .now)
                    let response = try await shared.router.infer(inference, on: route, trace: trace)
                    let encoding = ContinuousClock.now
                    var answer = Response.json(TFServingCodec.encodeResponse(response, format: format))
                    trace?.child("encode", from: encoding, to: .now)
                    answer.headers[HTTPHeaders.modelVersion] = response.modelVersion
                    if let id = response.id { answer.headers[HTTPHeaders.requestID] = id }
                    if shared.configuration.accessLog { AccessLog.inference(context.logger, answer, started: started) }
                    return answer
                } }
            }
        }
    }

    /// The model name, the selector, and the `:method` suffix of the last segment (when `method` is asked for).
    static func selector(_ context: ServalRequestContext, _ addressing: Addressing, method: Bool) throws -> (String, ModelSelector, String?) {
        func split(_ value: String, last: Bool) -> (String, String?) {
            guard method, last, let colon = value.lastIndex(of: ":") else { return (value, nil) }
            return (String(value[..<colon]), String(value[value.index(after: colon)...]))
        }
        let (name, nameMethod) = split(try context.parameters.require("model"), last: addressing == .latest)
        switch addressing {
        case .latest: return (name, .latest, nameMethod)
        case .version:
            let (version, suffix) = split(try context.parameters.require("version"), last: true)
            return (name, try ModelSelector.parse(version: version, model: name), suffix)
        case .label:
            let (label, suffix) = split(try context.parameters.require("label"), last: true)
            return (name, .label(label), suffix)
        }
    }

    /// TF Serving GetModelStatus JSON.
    static func status(_ shared: RouteContext, _ context: ServalRequestContext, _ addressing: Addressing) async throws -> Response {
        let (name, selector, _) = try selector(context, addressing, method: false)
        let index = await shared.manager.index()
        guard index.contains(where: { $0.name == name }) else { throw ServingError.notFound("unknown model '\(name)'") }
        let rows = index.filter { $0.name == name && !$0.version.isEmpty }
        var selected = rows
        if selector != .latest, let version = try await shared.router.version(name, selector) {
            selected = rows.filter { $0.version == String(version) }
            if selected.isEmpty { throw ServingError.notFound("model '\(name)' has no version '\(version)'") }
        }
        var json = JSONWriter()
        json.raw("{\"model_version_status\":[")
        for (index, row) in selected.enumerated() {
            if index > 0 { json.raw(",") }
            let state: String
            switch row.state {
            // A version unloaded to free memory is AVAILABLE: its next request loads it again.
            case .ready, .unloaded: state = "AVAILABLE"
            case .loading: state = "LOADING"
            case .unavailable: state = "END"
            }
            let failed = row.state == .unavailable
            json.raw("{\"version\":")
            json.string(row.version)
            json.raw(",\"state\":\"\(state)\",\"status\":{\"error_code\":\"\(failed ? "UNAVAILABLE" : "OK")\",\"error_message\":")
            json.string(failed ? row.reason : "")
            json.raw("}}")
        }
        json.raw("]}")
        return Response.json(json.text)
    }

    /// TF Serving GetModelMetadata JSON, with the serving_default signature described from the ONNX graph and
    /// TensorFlow's dtype names (`DT_FLOAT`, ...), which TF clients parse.
    static func metadata(_ model: ServedModel) -> String {
        func tensors(_ list: [TensorMetadata], into json: inout JSONWriter) {
            json.raw("{")
            for (index, tensor) in list.enumerated() {
                if index > 0 { json.raw(",") }
                json.string(tensor.name)
                json.raw(":{\"dtype\":\"\(tensorFlowDType(tensor.datatype))\",\"tensor_shape\":{\"dim\":[")
                json.raw(tensor.shape.map { "{\"size\":\"\($0)\",\"name\":\"\"}" }.joined(separator: ","))
                json.raw("],\"unknown_rank\":false},\"name\":")
                json.string(tensor.name)
                json.raw("}")
            }
            json.raw("}")
        }
        var json = JSONWriter()
        json.raw("{\"model_spec\":{\"name\":")
        json.string(model.name)
        json.raw(",\"signature_name\":\"\",\"version\":\"\(model.version)\"},\"metadata\":{\"signature_def\":{\"signature_def\":{\"serving_default\":{\"inputs\":")
        tensors(model.inputs, into: &json)
        json.raw(",\"outputs\":")
        tensors(model.outputs, into: &json)
        json.raw(",\"method_name\":\"tensorflow/serving/predict\"}}}}}")
        return json.text
    }

    /// KServe datatype → TensorFlow `DataType` enum name (tensorflow/core/framework/types.proto).
    static func tensorFlowDType(_ datatype: String) -> String {
        switch datatype {
        case "FP32": return "DT_FLOAT"
        case "FP64": return "DT_DOUBLE"
        case "FP16": return "DT_HALF"
        case "BF16": return "DT_BFLOAT16"
        case "INT8": return "DT_INT8"
        case "INT16": return "DT_INT16"
        case "INT32": return "DT_INT32"
        case "INT64": return "DT_INT64"
        case "UINT8": return "DT_UINT8"
        case "UINT16": return "DT_UINT16"
        case "UINT32": return "DT_UINT32"
        case "UINT64": return "DT_UINT64"
        case "BOOL": return "DT_BOOL"
        default: return "DT_STRING"
        }
    }
}
