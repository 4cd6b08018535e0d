import ServalTensor

/// A protocol-neutral inference request: what every frontend decodes its wire format into.
public struct InferenceRequest: Sendable {
    public var id: String?
    public var inputs: [String: Tensor]
    /// Outputs the caller asked for, in order; nil means all of the model's outputs.
    public var requestedOutputs: [String]?
    public var parameters: [String: InferenceParameter]

    public init(id: String? = nil, inputs: [String: Tensor], requestedOutputs: [String]? = nil, parameters: [String: InferenceParameter] = [:]) {
        self.id = id
        self.inputs = inputs
        self.requestedOutputs = requestedOutputs
        self.parameters = parameters
    }
}

/// A request or response parameter value (KServe v2 `parameters`).
public enum InferenceParameter: Sendable, Equatable {
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case string(String)
}

/// The answer to an `InferenceRequest`: outputs in the order requested (or the model's order).
public struct InferenceResponse: Sendable {
    public var modelName: String
    public var modelVersion: String
    public var id: String?
    public var outputs: [(name: String, value: Value)]
    public var parameters: [String: InferenceParameter]

    public init(modelName: String, modelVersion: String, id: String?, outputs: [(name: String, value: Value)], parameters: [String: InferenceParameter] = [:]) {
        self.modelName = modelName
        self.modelVersion = modelVersion
        self.id = id
        self.outputs = outputs
        self.parameters = parameters
    }
}

/// Name, datatype and shape of a model input or output as the protocols report them (-1 = variable).
public struct TensorMetadata: Sendable, Equatable, Codable {
    public var name: String
    public var datatype: String
    public var shape: [Int]

    public init(name: String, datatype: String, shape: [Int]) {
        self.name = name
        self.datatype = datatype
        self.shape = shape
    }
}
