import ServalTensor

/// A computation graph in Serval's own IR: what the importer produces and the passes rewrite.
///
/// Values are named by strings (as in ONNX); an empty input name means "optional input not given".
public struct Graph: Sendable {
    public var nodes: [Node]
    /// Graph inputs the caller feeds (initializers excluded).
    public var inputs: [ValueInfo]
    public var outputs: [ValueInfo]
    /// Constant tensors by value name (ONNX initializers and folded constants).
    public var initializers: [String: Tensor]
    /// Opset version per domain ("" is ai.onnx).
    public var opsets: [String: Int]
    /// Declared types of intermediate values, when the model carries them.
    public var valueInfo: [String: ValueType]

    public init(
        nodes: [Node], inputs: [ValueInfo], outputs: [ValueInfo], initializers: [String: Tensor],
        opsets: [String: Int], valueInfo: [String: ValueType] = [:]
    ) {
        self.nodes = nodes
        self.inputs = inputs
        self.outputs = outputs
        self.initializers = initializers
        self.opsets = opsets
        self.valueInfo = valueInfo
    }

    /// Opset version that applies to a node's domain ("ai.onnx" and "" are the same domain); 1 when not imported.
    public func opset(for domain: String) -> Int {
        opsets[Graph.canonicalDomain(domain)] ?? 1
    }

    public static func canonicalDomain(_ domain: String) -> String { domain == "ai.onnx" ? "" : domain }

    /// Number of scalar parameters held in initializers.
    public var parameterCount: Int { initializers.values.reduce(0) { $0 + $1.count } }

    /// The class labels of the graph's classifier, in the order of its probability columns: a classifier node's
    /// `classlabels_int64s` or `classlabels_strings` (scikit-learn's linear and tree exports), or the constant class
    /// list a neural export indexes by the argmax. Nil for a graph without one.
    public var classifierLabels: [String]? {
        for node in nodes where node.opType.hasSuffix("Classifier") {
            if case .ints(let labels)? = node.attributes["classlabels_int64s"] ?? node.attributes["classlabels_ints"] { return labels.map(String.init) }
            if case .strings(let labels)? = node.attributes["classlabels_strings"] { return labels }
        }
        // Exporters of neural classifiers (skl2onnx's MLPClassifier) pick the label from a constant class list by
        // the probabilities' argmax: ArrayFeatureExtractor(classes, ArgMax(probabilities)).
        let argmaxOutputs = Set(nodes.filter { $0.opType == "ArgMax" }.flatMap(\.outputs))
        for node in nodes where node.opType == "ArrayFeatureExtractor" && node.inputs.count == 2 && argmaxOutputs.contains(node.inputs[1]) {
            if let classes = initializers[node.inputs[0]], classes.shape.count == 1, let labels = try? classes.elementStrings() { return labels }
        }
        return nil
    }

    /// Bytes of the model's parameters: initializers, plus the arrays that ai.onnx.ml operators keep in attributes
    /// (tree nodes, linear coefficients, class labels), which hold all of a scikit-learn model's weights.
    public var weightBytes: Int {
        let attributeBytes = nodes.reduce(0) { total, node in
            node.attributes.values.reduce(total) { sum, attribute in
                switch attribute {
                case .floats(let values): return sum + values.count * MemoryLayout<Float>.size
                case .ints(let values): return sum + values.count * MemoryLayout<Int64>.size
                case .strings(let values): return sum + values.reduce(0) { $0 + $1.utf8.count }
                case .tensor(let tensor): return sum + tensor.byteCount
                case .tensors(let tensors): return sum + tensors.reduce(0) { $0 + $1.byteCount }
                default: return sum
                }
            }
        }
        return initializers.values.reduce(attributeBytes) { $0 + $1.byteCount }
    }
}

/// One operator application.
public struct Node: Sendable {
    public var name: String
    public var opType: String
    public var domain: String
    public var inputs: [String]
    public var outputs: [String]
    public var attributes: [String: Attribute]

    public init(
        name: String = "", opType: String, domain: String = "", inputs: [String], outputs: [String],
        attributes: [String: Attribute] = [:]
    ) {
        self.name = name
        self.opType = opType
        self.domain = Graph.canonicalDomain(domain)
        self.inputs = inputs
        self.outputs = outputs
        self.attributes = attributes
    }

    /// `domain:opType` for messages, or just opType for the default domain.
    public var qualifiedOpType: String { domain.isEmpty ? opType : "\(domain):\(opType)" }
    /// The name used in error messages: the node's name, or its op and first output.
    public var displayName: String { name.isEmpty ? "\(qualifiedOpType)(\(outputs.first ?? ""))" : name }
}

/// A node attribute, one case per ONNX `AttributeProto.AttributeType`.
public enum Attribute: Sendable {
    case float(Float)
    case int(Int)
    case string(String)
    case tensor(Tensor)
    case floats([Float])
    case ints([Int])
    case strings([String])
    case tensors([Tensor])
    /// A subgraph (If/Loop/Scan bodies); kept by name only, as subgraph ops are not executed yet.
    case graph(name: String)
    case graphs(names: [String])
    case sparseTensor
    case typeProto
}

/// A graph input or output: name plus declared type.
public struct ValueInfo: Sendable {
    public var name: String
    public var type: ValueType

    public init(name: String, type: ValueType) {
        self.name = name
        self.type = type
    }
}

/// The declared type of a value.
public indirect enum ValueType: Sendable, CustomStringConvertible {
    case tensor(dtype: DType?, shape: [Dimension]?)
    case sequence(ValueType)
    case map(key: DType?, value: ValueType)
    case unknown

    public var description: String {
        switch self {
        case .tensor(let dtype, let shape):
            let dims = shape.map { "[" + $0.map(\.description).joined(separator: ", ") + "]" } ?? "[?]"
            return "tensor(\(dtype.map(\.description) ?? "?"))\(dims)"
        case .sequence(let element): return "seq(\(element))"
        case .map(let key, let value): return "map(\(key.map(\.description) ?? "?"), \(value))"
        case .unknown: return "unknown"
        }
    }

    public var tensorDType: DType? {
        if case .tensor(let dtype, _) = self { return dtype }
        return nil
    }

    public var tensorShape: [Dimension]? {
        if case .tensor(_, let shape) = self { return shape }
        return nil
    }
}

/// One dimension of a declared shape: a number, a named symbol such as "batch", or unknown.
public enum Dimension: Hashable, Sendable, CustomStringConvertible {
    case fixed(Int)
    case symbolic(String)
    case unknown

    public var description: String {
        switch self {
        case .fixed(let value): return String(value)
        case .symbolic(let name): return name
        case .unknown: return "?"
        }
    }

    public var value: Int? {
        if case .fixed(let value) = self { return value }
        return nil
    }
}
