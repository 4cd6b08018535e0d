import ServalTensor

/// The compiled, linear form of a graph: kernels in dependency order reading and writing numbered slots,
/// with each slot released right after its last reader so its memory returns to the pool.
struct ExecutionPlan: Sendable {
    struct Step: Sendable {
        let kernel: any Kernel
        let node: Node
        let inputs: [Int]
        let outputs: [Int]
        /// Slots whose last reader is this step.
        let releases: [Int]
    }

    let steps: [Step]
    let slotCount: Int
    /// Slot contents before the first step: constants filled in, everything else nil.
    let initialSlots: [Value?]
    let inputSlots: [String: Int]
    let outputSlots: [(name: String, slot: Int)]

    /// `reusing` offers kernels already built for the same node (same outputs, inputs and constants), so a plan
    /// specialised to one input shape shares the packed weights of the general plan.
    init(graph: Graph, registry: KernelRegistry, reusing previous: ExecutionPlan? = nil) throws {
        var reusable: [[String]: Step] = [:]
        for step in previous?.steps ?? [] { reusable[step.node.outputs] = step }
        let order = try topologicalOrder(graph)
        var slots: [String: Int] = [:]
        func slot(_ name: String) -> Int {
            if let existing = slots[name] { return existing }
            slots[name] = slots.count
            return slots.count - 1
        }
        for input in graph.inputs { _ = slot(input.name) }
        for name in graph.initializers.keys.sorted() { _ = slot(name) }
        for node in order { for output in node.outputs where !output.isEmpty { _ = slot(output) } }
        var initial = [Value?](repeating: nil, count: slots.count)
        for (name, tensor) in graph.initializers { initial[slots[name]!] = .tensor(tensor) }

        let outputNames = Set(graph.outputs.map(\.name))
        var lastUse: [Int: Int] = [:]
        for (index, node) in order.enumerated() {
            for input in node.inputs where !input.isEmpty {
                guard let s = slots[input] else { throw EngineError.invalidModel("node \(node.displayName) reads '\(input)', which nothing produces") }
                lastUse[s] = index
            }
        }
        var steps: [Step] = []
        for (index, node) in order.enumerated() {
            guard let factory = registry.factory(domain: node.domain, opType: node.opType, opset: graph.opset(for: node.domain)) else {
                throw EngineError.unsupportedOperators([UnsupportedOperator(domain: node.domain, opType: node.opType, opset: graph.opset(for: node.domain))])
            }
            let constants = node.inputs.map { $0.isEmpty ? nil : graph.initializers[$0] }
            let build = KernelBuildContext(node: node, opset: graph.opset(for: node.domain), constants: constants)
            let kernel: any Kernel
            if let earlier = reusable[node.outputs], earlier.node.inputs == node.inputs, earlier.node.opType == node.opType,
               zip(earlier.inputs, node.inputs).allSatisfy({ slot, name in
                   // The same constant-ness: a value that became a constant here was a run-time input there.
                   name.isEmpty || (slot >= 0 && previous!.initialSlots[slot] != nil) == (graph.initializers[name] != nil)
               }) {
                kernel = earlier.kernel
            } else {
                do { kernel = try factory(build) } catch let error as EngineError { throw error } catch {
                    throw EngineError.invalidModel("node \(node.displayName): \(error)")
                }
            }
            let releases = node.inputs.compactMap { input -> Int? in
                guard !input.isEmpty, let s = slots[input], lastUse[s] == index, initial[s] == nil, !outputNames.contains(input) else { return nil }
                return s
            }
            steps.append(Step(kernel: kernel, node: node, inputs: node.inputs.map { $0.isEmpty ? -1 : slots[$0]! },
                              outputs: node.outputs.map { $0.isEmpty ? -1 : slots[$0]! }, releases: Array(Set(releases))))
        }
        var outputs: [(String, Int)] = []
        for output in graph.outputs {
            guard let s = slots[output.name] else { throw EngineError.invalidModel("graph output '\(output.name)' is never produced") }
            outputs.append((output.name, s))
        }
        self.steps = steps
        self.slotCount = slots.count
        self.initialSlots = initial
        self.inputSlots = Dictionary(uniqueKeysWithValues: graph.inputs.map { ($0.name, slots[$0.name]!) })
        self.outputSlots = outputs
    }
}

/// Nodes ordered so every value is produced before it is read (ONNX asks for this order; not every exporter keeps it).
func topologicalOrder(_ graph: Graph) throws -> [Node] {
    var available = Set(graph.inputs.map(\.name)).union(graph.initializers.keys)
    available.insert("")
    var producers: [String: Int] = [:]
    for (index, node) in graph.nodes.enumerated() { for output in node.outputs where !output.isEmpty { producers[output] = index } }
    var pending = Array(graph.nodes.indices)
    var order: [Node] = []
    order.reserveCapacity(graph.nodes.count)
    while !pending.isEmpty {
        var next: [Int] = []
        var progressed = false
        for index in pending {
            let node = graph.nodes[index]
            if node.inputs.allSatisfy({ available.contains($0) }) {
                order.append(node)
                for output in node.outputs { available.insert(output) }
                progressed = true
            } else {
                next.append(index)
            }
        }
        if !progressed {
            let node = graph.nodes[next[0]]
            let missing = node.inputs.first { !available.contains($0) } ?? ""
            let reason = producers[missing] == nil ? "which is not an input, initializer or node output" : "which is part of a cycle"
            throw EngineError.invalidModel("node \(node.displayName) reads '\(missing)', \(reason)")
        }
        pending = next
    }
    return order
}
