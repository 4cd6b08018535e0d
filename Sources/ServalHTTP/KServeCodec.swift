import ServalServing
import ServalTensor

/// KServe v2 / Open Inference Protocol JSON: request decoding and response encoding.
enum KServeCodec {
    static func decodeRequest(_ body: JSONValue) throws -> InferenceRequest {
        guard body.object != nil else { throw ServingError.invalidArgument("request body must be a JSON object with 'inputs'") }
        guard let inputs = body["inputs"]?.array else { throw ServingError.invalidArgument("request has no 'inputs' array") }
        var tensors: [String: Tensor] = [:]
        for (index, input) in inputs.enumerated() {
            guard let name = input["name"]?.string else { throw ServingError.invalidArgument("inputs[\(index)] has no 'name'") }
            guard let datatypeName = input["datatype"]?.string else { throw ServingError.invalidArgument("input '\(name)' has no 'datatype'") }
            guard let dtype = DType(kserveName: datatypeName) else {
                throw ServingError.invalidArgument("input '\(name)' has unsupported datatype '\(datatypeName)'")
            }
            guard let shapeValues = input["shape"]?.array else { throw ServingError.invalidArgument("input '\(name)' has no 'shape'") }
            let shape = shapeValues.compactMap(\.int)
            guard shape.count == shapeValues.count, shape.allSatisfy({ $0 >= 0 }) else {
                throw ServingError.invalidArgument("input '\(name)' shape must be a list of non-negative integers")
            }
            if input["parameters"]?["binary_data_size"] != nil {
                throw ServingError.invalidArgument("input '\(name)': binary tensor data is not supported yet; send JSON 'data'")
            }
            guard let data = input["data"] else { throw ServingError.invalidArgument("input '\(name)' has no 'data'") }
            guard tensors[name] == nil else { throw ServingError.invalidArgument("input '\(name)' appears twice") }
            tensors[name] = try TensorJSON.tensor(data, shape: shape, dtype: dtype, what: "input '\(name)'")
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

    static func parameters(_ value: JSONValue?) -> [String: InferenceParameter] {
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

    static func encodeResponse(_ response: InferenceResponse) -> String {
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
            json.raw("{\"name\":")
            json.string(output.name)
            switch output.value {
            case .tensor(let tensor):
                json.raw(",\"datatype\":\"\(tensor.dtype.kserveName)\",\"shape\":[")
                json.raw(tensor.shape.map(String.init).joined(separator: ","))
                json.raw("],\"data\":[")
                json.elements(tensor, 0..<tensor.count)
                json.raw("]}")
            case .mapSequence(let maps):
                // No map type in the protocol: one JSON object per row (convert with zipmap=False for a tensor).
                json.raw(",\"datatype\":\"BYTES\",\"shape\":[\(maps.count)],\"data\":[")
                json.maps(maps, rows: 0..<maps.count)
                json.raw("]}")
            }
        }
        json.raw("]}")
        return json.text
    }

    static func encodeMetadata(_ model: ServedModel, versions: [Int]) -> String {
        var json = JSONWriter()
        json.raw("{\"name\":")
        json.string(model.name)
        json.raw(",\"versions\":[" + versions.map { "\"\($0)\"" }.joined(separator: ",") + "],\"platform\":\"\(model.platform)\"")
        json.raw(",\"inputs\":")
        tensorMetadata(model.inputs, into: &json)
        json.raw(",\"outputs\":")
        tensorMetadata(model.outputs, into: &json)
        json.raw("}")
        return json.text
    }

    static func tensorMetadata(_ tensors: [TensorMetadata], into json: inout JSONWriter) {
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
