import ServalTensor

/// Everything that can go wrong loading or running a model, with what the user needs to fix it.
public enum EngineError: Error, Sendable, CustomStringConvertible, Equatable {
    /// The graph uses ops with no kernel; every one is listed (domain, op, opset).
    case unsupportedOperators([UnsupportedOperator])
    /// The model is malformed (dangling value, bad attribute, ...).
    case invalidModel(String)
    case missingInput(name: String)
    case unexpectedInput(name: String, known: [String])
    case inputTypeMismatch(name: String, expected: String, actual: String)
    case inputShapeMismatch(name: String, expected: String, actual: String)
    /// A kernel rejected its inputs at run time.
    case kernelFailure(node: String, message: String)

    public var description: String {
        switch self {
        case .unsupportedOperators(let ops):
            return "unsupported operators: " + ops.map(\.description).joined(separator: ", ")
        case .invalidModel(let message):
            return "invalid model: \(message)"
        case .missingInput(let name):
            return "missing input '\(name)'"
        case .unexpectedInput(let name, let known):
            return "unknown input '\(name)'; the model's inputs are \(known.map { "'\($0)'" }.joined(separator: ", "))"
        case .inputTypeMismatch(let name, let expected, let actual):
            return "input '\(name)' has datatype \(actual), expected \(expected)"
        case .inputShapeMismatch(let name, let expected, let actual):
            return "input '\(name)' has shape \(actual), expected \(expected)"
        case .kernelFailure(let node, let message):
            return "node \(node): \(message)"
        }
    }
}

/// An op the engine has no kernel for, as reported at load time.
public struct UnsupportedOperator: Sendable, Hashable, CustomStringConvertible {
    public let domain: String
    public let opType: String
    public let opset: Int

    public init(domain: String, opType: String, opset: Int) {
        self.domain = domain
        self.opType = opType
        self.opset = opset
    }

    public var description: String { "\(domain.isEmpty ? "ai.onnx" : domain):\(opType) (opset \(opset))" }
}

/// Thrown by kernels for bad inputs; the session wraps it with the node's name.
public struct KernelError: Error, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
