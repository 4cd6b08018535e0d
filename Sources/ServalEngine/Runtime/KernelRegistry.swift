import ServalTensor

/// What a kernel factory sees of its node at load time: attributes, opset and constant inputs.
public struct KernelBuildContext {
    public let node: Node
    /// Opset version in force for the node's domain.
    public let opset: Int
    /// The value of each input that is constant at load time (initializers, folded values), else nil.
    public let constants: [Tensor?]

    public init(node: Node, opset: Int, constants: [Tensor?]) {
        self.node = node
        self.opset = opset
        self.constants = constants
    }

    public func has(_ name: String) -> Bool { node.attributes[name] != nil }

    public func int(_ name: String, default value: Int) throws -> Int { try int(name) ?? value }

    public func int(_ name: String) throws -> Int? {
        switch node.attributes[name] {
        case nil: return nil
        case .int(let value)?: return value
        default: throw attributeError(name, "an int")
        }
    }

    public func float(_ name: String, default value: Float) throws -> Float { try float(name) ?? value }

    public func float(_ name: String) throws -> Float? {
        switch node.attributes[name] {
        case nil: return nil
        case .float(let value)?: return value
        case .int(let value)?: return Float(value)
        default: throw attributeError(name, "a float")
        }
    }

    public func string(_ name: String, default value: String) throws -> String { try string(name) ?? value }

    public func string(_ name: String) throws -> String? {
        switch node.attributes[name] {
        case nil: return nil
        case .string(let value)?: return value
        default: throw attributeError(name, "a string")
        }
    }

    public func ints(_ name: String) throws -> [Int]? {
        switch node.attributes[name] {
        case nil: return nil
        case .ints(let values)?: return values
        case .int(let value)?: return [value]
        default: throw attributeError(name, "a list of ints")
        }
    }

    public func floats(_ name: String) throws -> [Float]? {
        switch node.attributes[name] {
        case nil: return nil
        case .floats(let values)?: return values
        case .float(let value)?: return [value]
        default: throw attributeError(name, "a list of floats")
        }
    }

    public func strings(_ name: String) throws -> [String]? {
        switch node.attributes[name] {
        case nil: return nil
        case .strings(let values)?: return values
        case .string(let value)?: return [value]
        default: throw attributeError(name, "a list of strings")
        }
    }

    public func tensor(_ name: String) throws -> Tensor? {
        switch node.attributes[name] {
        case nil: return nil
        case .tensor(let value)?: return value
        default: throw attributeError(name, "a tensor")
        }
    }

    /// The constant value of input `index`, if it is given and known at load time.
    public func constant(_ index: Int) -> Tensor? { index < constants.count ? constants[index] : nil }

    /// True when input `index` is present (not omitted with an empty name).
    public func hasInput(_ index: Int) -> Bool { index < node.inputs.count && !node.inputs[index].isEmpty }

    func attributeError(_ name: String, _ expected: String) -> EngineError {
        .invalidModel("node \(node.displayName): attribute '\(name)' must be \(expected)")
    }

    public func invalid(_ message: String) -> EngineError {
        .invalidModel("node \(node.displayName): \(message)")
    }
}

/// Builds a kernel for one node.
public typealias KernelFactory = @Sendable (KernelBuildContext) throws -> any Kernel

/// Kernels by (domain, op type, first opset version they implement).
///
/// A node gets the registration with the highest `since` that is not above the model's opset, so
/// semantics that changed between opsets (Softmax-13, Clip-11, ReduceSum-13...) are separate entries.
public struct KernelRegistry: Sendable {
    struct Entry: Sendable {
        let since: Int
        let factory: KernelFactory
    }

    private var table: [String: [Entry]] = [:]

    public init() {}

    private static func key(_ domain: String, _ opType: String) -> String {
        Graph.canonicalDomain(domain) + "|" + opType
    }

    public mutating func register(_ opType: String, domain: String = "", since: Int = 1, _ factory: @escaping KernelFactory) {
        table[Self.key(domain, opType), default: []].append(Entry(since: since, factory: factory))
        table[Self.key(domain, opType)]?.sort { $0.since < $1.since }
    }

    /// The factory for `opType` at `opset`, or nil when the op (or that version of it) has no kernel.
    public func factory(domain: String, opType: String, opset: Int) -> KernelFactory? {
        guard let entries = table[Self.key(domain, opType)] else { return nil }
        return entries.last(where: { $0.since <= opset })?.factory
    }

    /// Every registered op as "domain:op".
    public var operators: [String] {
        table.keys.map { key in
            let parts = key.split(separator: "|", omittingEmptySubsequences: false)
            return parts[0].isEmpty ? String(parts[1]) : "\(parts[0]):\(parts[1])"
        }.sorted()
    }

    /// All kernels that ship with Serval.
    public static let standard: KernelRegistry = {
        var registry = KernelRegistry()
        registerElementwise(into: &registry)
        registerActivations(into: &registry)
        registerMatMul(into: &registry)
        registerConv(into: &registry)
        registerPooling(into: &registry)
        registerNormalization(into: &registry)
        registerReduce(into: &registry)
        registerShapeOps(into: &registry)
        registerTensorOps(into: &registry)
        registerSelection(into: &registry)
        registerQuantization(into: &registry)
        registerAttention(into: &registry)
        registerEinsum(into: &registry)
        registerMLOps(into: &registry)
        return registry
    }()
}
