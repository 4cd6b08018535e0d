import ServalTensor

/// KServe v2 / Open Inference Protocol JSON: request decoding and response encoding.
public enum KServeCodec {
    /// Which outputs go back as raw bytes (Triton binary tensor extension).
    public enum BinaryOutputs: Sendable, Equatable {
        case none
        case all
        case named(Set<String>)

        public func contains(_ name: String) -> Bool {
            switch self {
            case .none: return false
            case .all: return true
            case .named(let names): return names.contains(name)
            }
        }
    }

    /// Decodes a JSON request whose binary inputs (`binary_data_size`) follow the JSON in `binary`, in input order.
    /// A whole request body: JSON, or (with `headerLength`, Triton's Inference-Header-Content-Length) a JSON header
    /// followed by binary tensors.
    public static func decodeRequest(body bytes: UnsafeRawBufferPointer, headerLength: Int?, limits: WireLimits = .standard) throws -> (InferenceRequest, BinaryOutputs) {
        guard let headerLength else { return try decodeRequest(try JSONParser.parse(bytes, limits: limits), limits: limits) }
        guard headerLength >= 0, headerLength <= bytes.count else {
            throw ServingError.invalidArgument("Inference-Header-Content-Length \(headerLength) does not fit the \(bytes.count)-byte body")
        }
        return try decodeRequest(
            try JSONParser.parse(UnsafeRawBufferPointer(rebasing: bytes[0..<headerLength]), limits: limits),
            binary: UnsafeRawBufferPointer(rebasing: bytes[headerLength...]), limits: limits)
    }

    public static func decodeRequest(_ body: JSONValue, binary: UnsafeRawBufferPointer? = nil, limits: WireLimits = .standard) throws -> (InferenceRequest, BinaryOutputs) {
        var cursor = 0
        let request = try decodeRequest(body, limits: limits) { name, dtype, shape, size in
            guard let binary else { throw ServingError.invalidArgument("input '\(name)' has binary_data_size but the request has no Inference-Header-Content-Length") }
            guard size >= 0, cursor + size <= binary.count else {
                throw ServingError.invalidArgument("input '\(name)': binary_data_size \(size) runs past the end of the body")
            }
            let bytes = UnsafeRawBufferPointer(rebasing: binary[cursor..<(cursor + size)])
            cursor += size
            return try RawTensorCodec.decode(bytes, dtype: dtype, shape: shape, name: name, source: "binary_data_size", limits: limits)
        }
        if let binary, cursor != binary.count {
            throw ServingError.invalidArgument("request has \(binary.count - cursor) bytes of binary data that no input claims")
        }
        var outputs = BinaryOutputs.none
        if case .bool(true)? = body["parameters"]?["binary_data_output"] { outputs = .all }
        if let requested = body["outputs"]?.array {
            var named = Set<String>()
            for output in requested {
                guard let name = output["name"]?.string else { continue }
                switch output["parameters"]?["binary_data"] {
                case .bool(true)?: named.insert(name)
                case .bool(false)?: continue
                default: if outputs == .all { named.insert(name) }
                }
            }
            outputs = named.isEmpty ? .none : .named(named)
        }
        return (request, outputs)
    }

    private static func decodeRequest(
        _ body: JSONValue, limits: WireLimits, binaryInput: (String, DType, [Int], Int) throws -> Tensor
    ) throws -> InferenceRequest {
        guard body.object != nil else { throw ServingError.invalidArgument("request body must be a JSON object with 'inputs'") }
        guard let inputs = body["inputs"]?.array else { throw ServingError.invalidArgument("request has no 'inputs' array") }
        var tensors: [String: Tensor] = [:]
        var elements = 0
        for (index, input) in inputs.enumerated() {
            guard let name = input["name"]?.string else { throw ServingError.invalidArgument("inputs[\(index)] has no 'name'") }
            guard let datatypeName = input["datatype"]?.string else { throw ServingError.invalidArgument("input '\(name)' has no 'datatype'") }
            guard let dtype = DType(kserveName: datatypeName) else {
                throw ServingError.invalidArgument("input '\(name)' has unsupported datatype '\(datatypeName)'")
            }
            guard let shapeValues = input["shape"]?.array else { throw ServingError.invalidArgument("input '\(name)' has no 'shape'") }
            let shape = try shapeValues.map { try limits.dimension($0, what: "input '\(name)'") }
            guard tensors[name] == nil else { throw ServingError.invalidArgument("input '\(name)' appears twice") }
            _ = try limits.elements(of: shape, what: "input '\(name)'", total: &elements)
            if let size = input["parameters"]?["binary_data_size"] {
                guard let bytes = size.int else { throw ServingError.invalidArgument("input '\(name)': binary_data_size must be an integer") }
                tensors[name] = try binaryInput(name, dtype, shape, bytes)
                continue
            }
            guard let data = input["data"] else { throw ServingError.invalidArgument("input '\(name)' has no 'data'") }
            tensors[name] = try TensorJSON.tensor(data, shape: shape, dtype: dtype, what: "input '\(name)'", limits: limits)
        }
        var requested: [String]?
        if let outputs = body["outputs"]?.array {
            requested = try outputs.enumerated().map { index, output in
                guard let name = output["name"]?.string else { throw ServingError.invalidArgument("outputs[\(index)] has no 'name'") }
                return name
            }
        }
        var id: String?
        if let value = body["id"] {
            guard let text = value.string else { throw ServingError.invalidArgument("'id' must be a string") }
            id = text
        }
        return InferenceRequest(id: id, inputs: tensors, requestedOutputs: requested, parameters: parameters(body["parameters"]))
    }

    public static func parameters(_ value: JSONValue?) -> [String: InferenceParameter] {
        guard let members = value?.object else { return [:] }
        var result: [String: InferenceParameter] = [:]
        for (key, value) in members {
            switch value {
            case .bool(let flag): result[key] = .bool(flag)
            case .string(let text): result[key] = .string(text)
            case .number(let number): result[key] = number == number.rounded() && abs(number) < 9e15 ? .int(Int64(number)) : .double(number)
            default: continue
            }
        }
        return result
    }

    /// The JSON header and the raw bytes of the binary outputs that follow it (empty when all are JSON).
    public static func encodeResponse(_ response: InferenceResponse, binary: BinaryOutputs) -> (json: String, binary: [UInt8]) {
        var payload: [UInt8] = []
        let json = encodeResponse(response) { name, tensor in
            guard binary.contains(name) else { return nil }
            let bytes = RawTensorCodec.encode(tensor)
            payload += bytes
            return bytes.count
        }
        return (json, payload)
    }

    public static func encodeResponse(_ response: InferenceResponse, binarySize: (String, Tensor) -> Int? = { _, _ in nil }) -> String {
        var json = JSONWriter(capacity: 256)
        json.raw("{\"model_name\":")
        json.string(response.modelName)
        json.raw(",\"model_version\":")
        json.string(response.modelVersion)
        if let id = response.id {
            json.raw(",\"id\":")
            json.string(id)
        }
        if !response.parameters.isEmpty {
            json.raw(",\"parameters\":")
            json.parameters(response.parameters)
        }
        json.raw(",\"outputs\":[")
        for (index, output) in response.outputs.enumerated() {
            if index > 0 { json.raw(",") }
            encodeOutput(name: output.name, value: output.value, into: &json, binarySize: binarySize)
        }
        json.raw("]}")
        return json.text
    }

    /// One output tensor object (`{"name","datatype","shape","data"}`). A sequence of maps (a ZipMap output) has no
    /// protocol type: it is BYTES, one JSON object per row, on every frontend and in `serval run`.
    public static func encodeOutput(
        name: String, value: Value, into json: inout JSONWriter, binarySize: (String, Tensor) -> Int? = { _, _ in nil }
    ) {
        json.raw("{\"name\":")
        json.string(name)
        switch value {
        case .tensor(let tensor):
            json.raw(",\"datatype\":\"\(tensor.dtype.kserveName)\",\"shape\":[")
            json.raw(tensor.shape.map(String.init).joined(separator: ","))
            if let size = binarySize(name, tensor) {
                json.raw("],\"parameters\":{\"binary_data_size\":\(size)}}")
            } else {
                json.raw("],\"data\":[")
                json.elements(tensor, 0..<tensor.count)
                json.raw("]}")
            }
        case .mapSequence(let maps):
            json.raw(",\"datatype\":\"BYTES\",\"shape\":[\(maps.count)],\"data\":[")
            json.maps(maps, rows: 0..<maps.count)
            json.raw("]}")
        }
    }

    /// Request tensors as a v2 `inputs` array (names in sorted order), for logs and forwarded copies of a request.
    public static func encodeInputs(_ inputs: [String: Tensor], into json: inout JSONWriter) {
        json.raw("[")
        for (index, name) in inputs.keys.sorted().enumerated() {
            if index > 0 { json.raw(",") }
            encodeOutput(name: name, value: .tensor(inputs[name]!), into: &json)
        }
        json.raw("]")
    }

    public static func tensorMetadata(_ tensors: [TensorMetadata], into json: inout JSONWriter) {
        json.raw("[")
        for (index, tensor) in tensors.enumerated() {
            if index > 0 { json.raw(",") }
            json.raw("{\"name\":")
            json.string(tensor.name)
            json.raw(",\"datatype\":\"\(tensor.datatype)\",\"shape\":[" + tensor.shape.map(String.init).joined(separator: ",") + "]}")
        }
        json.raw("]")
    }
}
