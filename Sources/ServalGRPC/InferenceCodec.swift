import Foundation
import ServalServing
import ServalTensor
import ServalWire

/// Open Inference Protocol gRPC messages ↔ the protocol-neutral `InferenceRequest` / `InferenceResponse`.
/// Inputs arrive as typed `contents` or as `raw_input_contents`; outputs go back in the form the request used
/// (raw when the request was raw, or when an output has no typed field, such as FP16).
public enum InferenceCodec {
    /// A request message into an `InferenceRequest`; errors name the input and the field.
    public static func decodeRequest(_ message: Inference_ModelInferRequest, limits: WireLimits = .standard) throws -> InferenceRequest {
        let raw = message.rawInputContents
        if !raw.isEmpty, raw.count != message.inputs.count {
            throw ServingError.invalidArgument("raw_input_contents has \(raw.count) entries for \(message.inputs.count) inputs; send one per input, in order")
        }
        var tensors: [String: Tensor] = [:]
        tensors.reserveCapacity(message.inputs.count)
        var elements = 0
        for (index, input) in message.inputs.enumerated() {
            let name = input.name
            guard !name.isEmpty else { throw ServingError.invalidArgument("inputs[\(index)] has no name") }
            guard let dtype = DType(kserveName: input.datatype) else {
                throw ServingError.invalidArgument("input '\(name)' has unsupported datatype '\(input.datatype)'")
            }
            guard input.shape.allSatisfy({ $0 >= 0 && $0 <= Int32.max }) else {
                throw ServingError.invalidArgument("input '\(name)' shape \(input.shape) must hold non-negative sizes")
            }
            let shape = input.shape.map { Int($0) }
            guard tensors[name] == nil else { throw ServingError.invalidArgument("input '\(name)' appears twice") }
            let count = try limits.elements(of: shape, what: "input '\(name)'", total: &elements)
            if raw.isEmpty {
                tensors[name] = try typedTensor(input.contents, dtype: dtype, shape: shape, count: count, name: name, limits: limits)
            } else {
                guard !input.hasContents else {
                    throw ServingError.invalidArgument("input '\(name)' has typed contents but the request uses raw_input_contents; use one form for all inputs")
                }
                tensors[name] = try raw[index].withUnsafeBytes {
                    try RawTensorCodec.decode($0, dtype: dtype, shape: shape, name: name, source: "raw_input_contents[\(index)]", limits: limits)
                }
            }
        }
        var requested: [String]?
        if !message.outputs.isEmpty {
            requested = try message.outputs.enumerated().map { index, output in
                guard !output.name.isEmpty else { throw ServingError.invalidArgument("outputs[\(index)] has no name") }
                return output.name
            }
        }
        return InferenceRequest(
            id: message.id.isEmpty ? nil : message.id, inputs: tensors, requestedOutputs: requested,
            parameters: parameters(message.parameters))
    }

    /// Builds a tensor from the typed field that matches `dtype`; an error names the input and the field.
    private static func typedTensor(
        _ contents: Inference_InferTensorContents, dtype: DType, shape: [Int], count: Int, name: String, limits: WireLimits
    ) throws -> Tensor {
        func checked<T>(_ values: [T], _ field: String) throws -> [T] {
            guard values.count == count else {
                throw ServingError.invalidArgument("input '\(name)' (\(dtype.kserveName) \(shape)) needs \(count) values in contents.\(field), got \(values.count)")
            }
            return values
        }
        func narrowed<Wide: BinaryInteger, Narrow: TensorScalar & FixedWidthInteger>(_ values: [Wide], _ field: String, as: Narrow.Type) throws -> Tensor {
            let values = try checked(values, field)
            var result = [Narrow]()
            result.reserveCapacity(count)
            for value in values {
                guard let element = Narrow(exactly: value) else {
                    throw ServingError.invalidArgument("input '\(name)': value \(value) in contents.\(field) does not fit \(dtype.kserveName)")
                }
                result.append(element)
            }
            return Tensor(shape: shape, scalars: result)
        }
        switch dtype {
        case .float32: return Tensor(shape: shape, scalars: try checked(contents.fp32Contents, "fp32_contents"))
        case .float64: return Tensor(shape: shape, scalars: try checked(contents.fp64Contents, "fp64_contents"))
        case .int64: return Tensor(shape: shape, scalars: try checked(contents.int64Contents, "int64_contents"))
        case .int32: return Tensor(shape: shape, scalars: try checked(contents.intContents, "int_contents"))
        case .int16: return try narrowed(contents.intContents, "int_contents", as: Int16.self)
        case .int8: return try narrowed(contents.intContents, "int_contents", as: Int8.self)
        case .uint64: return Tensor(shape: shape, scalars: try checked(contents.uint64Contents, "uint64_contents"))
        case .uint32: return Tensor(shape: shape, scalars: try checked(contents.uintContents, "uint_contents"))
        case .uint16: return try narrowed(contents.uintContents, "uint_contents", as: UInt16.self)
        case .uint8: return try narrowed(contents.uintContents, "uint_contents", as: UInt8.self)
        case .bool: return Tensor(shape: shape, scalars: try checked(contents.boolContents, "bool_contents"))
        case .string:
            let strings = try checked(contents.bytesContents, "bytes_contents").map { bytes in
                try limits.checkBytesElement(bytes.count, what: "input '\(name)'")
                return String(decoding: bytes, as: UTF8.self)
            }
            return Tensor(shape: shape, strings: strings)
        case .float16:
            throw ServingError.invalidArgument("input '\(name)' is FP16, which has no typed contents field; send it in raw_input_contents")
        }
    }

    static func parameters(_ map: [String: Inference_InferParameter]) -> [String: InferenceParameter] {
        var result: [String: InferenceParameter] = [:]
        for (key, value) in map {
            switch value.parameterChoice {
            case .boolParam(let flag): result[key] = .bool(flag)
            case .int64Param(let number): result[key] = .int(number)
            case .uint64Param(let number): result[key] = number <= UInt64(Int64.max) ? .int(Int64(number)) : .double(Double(number))
            case .doubleParam(let number): result[key] = .double(number)
            case .stringParam(let text): result[key] = .string(text)
            case nil: continue
            }
        }
        return result
    }

    static func parameter(_ value: InferenceParameter) -> Inference_InferParameter {
        var result = Inference_InferParameter()
        switch value {
        case .bool(let flag): result.boolParam = flag
        case .int(let number): result.int64Param = number
        case .double(let number): result.doubleParam = number
        case .string(let text): result.stringParam = text
        }
        return result
    }

    /// Whether the answer to `message` should carry raw output contents: when its inputs did.
    static func wantsRawOutputs(_ message: Inference_ModelInferRequest) -> Bool {
        !message.rawInputContents.isEmpty
    }

    static func encodeResponse(_ response: InferenceResponse, raw requestedRaw: Bool) -> Inference_ModelInferResponse {
        var message = Inference_ModelInferResponse()
        message.modelName = response.modelName
        message.modelVersion = response.modelVersion
        if let id = response.id { message.id = id }
        for (key, value) in response.parameters { message.parameters[key] = parameter(value) }
        // Raw and typed contents cannot be mixed in one response, and FP16 has no typed field.
        let raw = requestedRaw || response.outputs.contains { $0.value.tensor?.dtype == .float16 }
        message.outputs.reserveCapacity(response.outputs.count)
        for (name, value) in response.outputs {
            let tensor = tensorForWire(value)
            var output = Inference_ModelInferResponse.InferOutputTensor()
            output.name = name
            output.datatype = tensor.dtype.kserveName
            output.shape = tensor.shape.map { Int64($0) }
            if raw {
                message.rawOutputContents.append(RawTensorCodec.encode(tensor))
            } else {
                output.contents = typedContents(tensor)
            }
            message.outputs.append(output)
        }
        return message
    }

    /// Map outputs (ZipMap) have no protocol type: one JSON object per row, as BYTES (as on REST).
    private static func tensorForWire(_ value: Value) -> Tensor {
        switch value {
        case .tensor(let tensor): return tensor
        case .mapSequence(let maps):
            let rows = (0..<maps.count).map { row -> String in
                var json = JSONWriter(capacity: 64)
                json.maps(maps, rows: row..<(row + 1))
                return json.text
            }
            return Tensor(shape: [maps.count], strings: rows)
        }
    }

    private static func typedContents(_ tensor: Tensor) -> Inference_InferTensorContents {
        var contents = Inference_InferTensorContents()
        switch tensor.dtype {
        case .float32: contents.fp32Contents = tensor.scalars(as: Float.self)
        case .float64: contents.fp64Contents = tensor.scalars(as: Double.self)
        case .int64: contents.int64Contents = tensor.scalars(as: Int64.self)
        case .int32: contents.intContents = tensor.scalars(as: Int32.self)
        case .int16: contents.intContents = tensor.scalars(as: Int16.self).map { Int32($0) }
        case .int8: contents.intContents = tensor.scalars(as: Int8.self).map { Int32($0) }
        case .uint64: contents.uint64Contents = tensor.scalars(as: UInt64.self)
        case .uint32: contents.uintContents = tensor.scalars(as: UInt32.self)
        case .uint16: contents.uintContents = tensor.scalars(as: UInt16.self).map { UInt32($0) }
        case .uint8: contents.uintContents = tensor.scalars(as: UInt8.self).map { UInt32($0) }
        case .bool: contents.boolContents = tensor.scalars(as: Bool.self)
        case .string: contents.bytesContents = tensor.strings.map { Data($0.utf8) }
        case .float16: break  // never typed: encodeResponse switches the whole response to raw
        }
        return contents
    }
}
