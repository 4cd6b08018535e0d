import ServalTensor

/// TensorFlow Serving REST `:predict`: row (`instances`) and columnar (`inputs`) forms.
public enum TFServingCodec {
    public enum Format: Sendable { case row, columnar }

    /// Decodes `instances` or `inputs` against the model's `inputs` (names, datatypes).
    public static func decodeRequest(_ body: JSONValue, inputs signature: [TensorMetadata], limits: WireLimits = .standard) throws -> (InferenceRequest, Format) {
        guard body.object != nil else { throw ServingError.invalidArgument("request body must be a JSON object") }
        let instances = body["instances"], inputs = body["inputs"]
        if instances != nil && inputs != nil { throw ServingError.invalidArgument("use either 'instances' or 'inputs', not both") }
        if let instances {
            guard let rows = instances.array else { throw ServingError.invalidArgument("'instances' must be a list") }
            return (InferenceRequest(inputs: try decodeRows(rows, inputs: signature, limits: limits)), .row)
        }
        guard let inputs else { throw ServingError.invalidArgument("request needs 'instances' (row format) or 'inputs' (columnar format)") }
        if let named = inputs.object, signature.count > 1 || named[signature.first?.name ?? ""] != nil, named["b64"] == nil {
            var tensors: [String: Tensor] = [:]
            for (name, value) in named { tensors[name] = try tensor(value, input: name, inputs: signature, limits: limits) }
            return (InferenceRequest(inputs: tensors), .columnar)
        }
        guard signature.count == 1 else { throw ServingError.invalidArgument("model has \(signature.count) inputs: 'inputs' must map each name to a tensor") }
        return (InferenceRequest(inputs: [signature[0].name: try tensor(inputs, input: signature[0].name, inputs: signature, limits: limits)]), .columnar)
    }

    private static func decodeRows(_ rows: [JSONValue], inputs signature: [TensorMetadata], limits: WireLimits) throws -> [String: Tensor] {
        if let first = rows.first, first.object != nil, first["b64"] == nil {
            var columns: [String: [JSONValue]] = [:]
            for (index, row) in rows.enumerated() {
                guard let members = row.object else { throw ServingError.invalidArgument("instances[\(index)] must be an object like the first one") }
                for (name, value) in members { columns[name, default: []].append(value) }
            }
            var tensors: [String: Tensor] = [:]
            for (name, values) in columns {
                guard values.count == rows.count else { throw ServingError.invalidArgument("input '\(name)' is missing from some instances") }
                tensors[name] = try tensor(.array(values), input: name, inputs: signature, limits: limits)
            }
            return tensors
        }
        guard signature.count == 1 else {
            throw ServingError.invalidArgument("model has \(signature.count) inputs: each instance must be an object naming them")
        }
        return [signature[0].name: try tensor(.array(rows), input: signature[0].name, inputs: signature, limits: limits)]
    }

    private static func tensor(_ value: JSONValue, input: String, inputs signature: [TensorMetadata], limits: WireLimits) throws -> Tensor {
        guard let spec = signature.first(where: { $0.name == input }) else {
            throw ServingError.invalidArgument("unexpected input '\(input)'; inputs are \(signature.map { "'\($0.name)'" }.joined(separator: ", "))")
        }
        guard let dtype = DType(kserveName: spec.datatype) else { throw ServingError.invalidArgument("input '\(input)' has an unsupported type") }
        guard let shape = TensorJSON.shape(of: value) else { throw ServingError.invalidArgument("input '\(input)': rows have different lengths") }
        return try TensorJSON.tensor(value, shape: shape, dtype: dtype, what: "input '\(input)'", limits: limits)
    }

    public static func encodeResponse(_ response: InferenceResponse, format: Format) -> String {
        var json = JSONWriter(capacity: 256)
        switch format {
        case .columnar:
            json.raw("{\"outputs\":")
            named(response.outputs, into: &json) { value($0, into: &$1) }
        case .row:
            json.raw("{\"predictions\":[")
            let rows = response.outputs.map(rowCount).min() ?? 0
            for row in 0..<rows {
                if row > 0 { json.raw(",") }
                named(response.outputs, into: &json) { rowValue($0, row: row, into: &$1) }
            }
            json.raw("]")
        }
        json.raw("}")
        return json.text
    }

    /// One output as its bare value; several as an object keyed by output name (TF Serving's convention).
    private static func named(
        _ outputs: [(name: String, value: Value)], into json: inout JSONWriter, _ write: (Value, inout JSONWriter) -> Void
    ) {
        if outputs.count == 1 {
            write(outputs[0].value, &json)
            return
        }
        json.raw("{")
        for (index, output) in outputs.enumerated() {
            if index > 0 { json.raw(",") }
            json.string(output.name)
            json.raw(":")
            write(output.value, &json)
        }
        json.raw("}")
    }

    private static func rowCount(_ output: (name: String, value: Value)) -> Int {
        switch output.value {
        case .tensor(let tensor): return tensor.shape.first ?? 1
        case .mapSequence(let maps): return maps.count
        }
    }

    private static func value(_ value: Value, into json: inout JSONWriter) {
        switch value {
        case .tensor(let tensor): json.nested(tensor, dims: tensor.shape[...], offset: 0)
        case .mapSequence(let maps):
            json.raw("[")
            json.maps(maps, rows: 0..<maps.count)
            json.raw("]")
        }
    }

    private static func rowValue(_ value: Value, row: Int, into json: inout JSONWriter) {
        switch value {
        case .tensor(let tensor):
            let inner = tensor.shape.dropFirst()
            json.nested(tensor, dims: inner, offset: row * inner.reduce(1, *))
        case .mapSequence(let maps): json.maps(maps, rows: row..<(row + 1))
        }
    }
}
