import ServalTensor

/// Runs the graph simplification passes in order. Each pass is small, named and keeps the graph's
/// inputs, outputs and results unchanged.
public struct Optimizer: Sendable {
    let registry: KernelRegistry

    public init(registry: KernelRegistry = .standard) { self.registry = registry }

    public func optimize(_ input: Graph) throws -> Graph {
        var graph = input
        graph.nodes = try topologicalOrder(graph)
        removeIdentities(&graph)
        try foldConstants(&graph, registry: registry)
        // Shape subgraphs: once shapes are inferred, Shape (and Gather of it) over fixed dimensions become constants.
        for _ in 0..<3 where foldStaticShapes(&graph, facts: ShapeInference.infer(graph)) {
            try foldConstants(&graph, registry: registry)
        }
        try foldBatchNormIntoConv(&graph)
        fuseLayerNormalization(&graph)
        fuseGelu(&graph)
        fuseAttention(&graph)
        fuseDynamicQuantizedMatMul(&graph)
        fuseMatMulBias(&graph)
        fuseActivations(&graph)
        removeDeadNodes(&graph)
        return graph
    }
}

/// Consumers of each value name, by node index.
func consumers(_ graph: Graph) -> [String: [Int]] {
    var result: [String: [Int]] = [:]
    for (index, node) in graph.nodes.enumerated() {
        for input in node.inputs where !input.isEmpty { result[input, default: []].append(index) }
    }
    return result
}

/// Replaces every read of `old` with `new`.
func rename(_ graph: inout Graph, _ old: String, to new: String) {
    for index in graph.nodes.indices {
        for (slot, input) in graph.nodes[index].inputs.enumerated() where input == old {
            graph.nodes[index].inputs[slot] = new
        }
    }
}

/// Identity, and Dropout whose mask is unused, are no-ops at inference: readers use the input directly.
/// A node whose output is a graph output stays, so the output keeps its name.
func removeIdentities(_ graph: inout Graph) {
    let outputs = Set(graph.outputs.map(\.name))
    var kept: [Node] = []
    var renames: [(String, String)] = []
    for node in graph.nodes {
        let isNoOp = node.domain.isEmpty && (node.opType == "Identity"
            || (node.opType == "Dropout" && (node.outputs.count < 2 || node.outputs[1].isEmpty)))
        if isNoOp, let source = node.inputs.first, !source.isEmpty, !outputs.contains(node.outputs[0]) {
            renames.append((node.outputs[0], source))
        } else {
            kept.append(node)
        }
    }
    graph.nodes = kept
    for (old, new) in renames {
        let target = renames.first(where: { $0.0 == new })?.1 ?? new
        rename(&graph, old, to: target)
        for index in renames.indices where renames[index].1 == old { renames[index].1 = target }
    }
}

/// Ops whose result must not be computed at load time.
private let nondeterministicOps: Set<String> = ["RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli"]

/// Evaluates nodes whose inputs are all constant and stores their results as initializers.
/// `Shape` of a value with a fully static declared shape folds too.
func foldConstants(_ graph: inout Graph, registry: KernelRegistry) throws {
    let context = RunContext()
    var staticShapes: [String: [Int]] = [:]
    for input in graph.inputs {
        if let dims = input.type.tensorShape, dims.allSatisfy({ $0.value != nil }) { staticShapes[input.name] = dims.map { $0.value! } }
    }
    var kept: [Node] = []
    for node in graph.nodes {
        if node.domain.isEmpty && node.opType == "Shape", let source = node.inputs.first, let shape = staticShapes[source] ?? graph.initializers[source]?.shape,
           node.attributes.isEmpty {
            graph.initializers[node.outputs[0]] = Tensor(shape: [shape.count], scalars: shape.map { Int64($0) })
            continue
        }
        let inputs = node.inputs.filter { !$0.isEmpty }
        let foldable = !nondeterministicOps.contains(node.opType) && inputs.allSatisfy { graph.initializers[$0] != nil }
            && node.outputs.allSatisfy { !$0.isEmpty }
        guard foldable, let factory = registry.factory(domain: node.domain, opType: node.opType, opset: graph.opset(for: node.domain)) else {
            kept.append(node)
            continue
        }
        let constants = node.inputs.map { $0.isEmpty ? nil : graph.initializers[$0] }
        do {
            let kernel = try factory(KernelBuildContext(node: node, opset: graph.opset(for: node.domain), constants: constants))
            let results = try kernel.run(constants.map { $0.map { Value.tensor($0) } }, context)
            var tensors: [Tensor] = []
            for result in results.prefix(node.outputs.count) {
                guard case .tensor(let tensor) = result else { throw KernelError("non-tensor result") }
                tensors.append(tensor)
            }
            guard tensors.count == node.outputs.count else { throw KernelError("missing outputs") }
            for (name, tensor) in zip(node.outputs, tensors) { graph.initializers[name] = tensor }
        } catch {
            // Leave the node to fail (or succeed) at run time with the real inputs' context.
            kept.append(node)
        }
    }
    graph.nodes = kept
}

/// Replaces `Shape(x)` by a constant when x's inferred dimensions are all fixed, and `Gather(Shape(x), i)`
/// when the gathered dimensions are (a symbolic batch dimension elsewhere does not block it). Returns true if
/// anything changed.
func foldStaticShapes(_ graph: inout Graph, facts: [String: ValueType]) -> Bool {
    var changed = false
    var shapeOf: [String: [Dimension]] = [:]
    var kept: [Node] = []
    for node in graph.nodes {
        if node.domain.isEmpty, node.opType == "Shape", let dims = facts[node.inputs[0]]?.tensorShape {
            let rank = dims.count
            var start = 0, end = rank
            if case .int(let value)? = node.attributes["start"] { start = value }
            if case .int(let value)? = node.attributes["end"] { end = value }
            let lower = min(max(start < 0 ? start + rank : start, 0), rank), upper = min(max(end < 0 ? end + rank : end, 0), rank)
            let selected = lower < upper ? Array(dims[lower..<upper]) : []
            if selected.allSatisfy({ $0.value != nil }) {
                graph.initializers[node.outputs[0]] = Tensor(shape: [selected.count], scalars: selected.map { Int64($0.value!) })
                changed = true
                continue
            }
            shapeOf[node.outputs[0]] = selected
        } else if node.domain.isEmpty, node.opType == "Gather", let dims = shapeOf[node.inputs[0]],
                  let indexTensor = graph.initializers[node.inputs[1]], let indices = try? indexTensor.int64s() {
            let picked = indices.map { Int($0) < 0 ? Int($0) + dims.count : Int($0) }
            if picked.allSatisfy({ $0 >= 0 && $0 < dims.count && dims[$0].value != nil }) {
                graph.initializers[node.outputs[0]] = Tensor(shape: indexTensor.shape, scalars: picked.map { Int64(dims[$0].value!) })
                changed = true
                continue
            }
        }
        kept.append(node)
    }
    graph.nodes = kept
    return changed
}

/// Conv followed by inference BatchNormalization becomes one Conv with rescaled weights and a bias.
func foldBatchNormIntoConv(_ graph: inout Graph) throws {
    let outputs = Set(graph.outputs.map(\.name))
    var readers = consumers(graph)
    var removed = Set<Int>()
    for (index, node) in graph.nodes.enumerated() where node.domain.isEmpty && node.opType == "BatchNormalization" {
        guard node.outputs.count == 1 || node.outputs.dropFirst().allSatisfy({ $0.isEmpty }),
              let source = node.inputs.first, readers[source]?.count == 1, !outputs.contains(source),
              let convIndex = graph.nodes.firstIndex(where: { $0.outputs.first == source && $0.opType == "Conv" && $0.domain.isEmpty }),
              node.inputs.count == 5,
              let scale = graph.initializers[node.inputs[1]], let shift = graph.initializers[node.inputs[2]],
              let mean = graph.initializers[node.inputs[3]], let variance = graph.initializers[node.inputs[4]],
              let weights = graph.initializers[graph.nodes[convIndex].inputs[1]], weights.dtype == .float32 else { continue }
        let conv = graph.nodes[convIndex]
        let epsilon: Float
        if case .float(let value)? = node.attributes["epsilon"] { epsilon = value } else { epsilon = 1e-5 }
        let folded = try BatchNormKernel.fold(scale: scale, bias: shift, mean: mean, variance: variance, epsilon: epsilon)
        let filters = weights.shape[0]
        guard folded.scale.count == filters else { continue }
        var bias = [Float](repeating: 0, count: filters)
        if conv.inputs.count > 2, !conv.inputs[2].isEmpty {
            guard let existing = graph.initializers[conv.inputs[2]] else { continue }
            bias = try existing.converted(to: .float32).scalars(as: Float.self)
        }
        var newWeights = weights.scalars(as: Float.self)
        let perFilter = weights.count / max(filters, 1)
        for m in 0..<filters {
            for i in 0..<perFilter { newWeights[m * perFilter + i] *= folded.scale[m] }
            bias[m] = bias[m] * folded.scale[m] + folded.shift[m]
        }
        let weightName = conv.outputs[0] + "/folded_weights", biasName = conv.outputs[0] + "/folded_bias"
        graph.initializers[weightName] = Tensor(shape: weights.shape, scalars: newWeights)
        graph.initializers[biasName] = Tensor(shape: [filters], scalars: bias)
        graph.nodes[convIndex].inputs = [conv.inputs[0], weightName, biasName]
        graph.nodes[convIndex].outputs = [node.outputs[0]]
        removed.insert(index)
        readers = consumers(graph)
    }
    graph.nodes = graph.nodes.enumerated().filter { !removed.contains($0.offset) }.map(\.element)
}

/// MatMul by a constant 2-D weight followed by Add of a constant row vector becomes `ai.serval:FusedMatMul`.
func fuseMatMulBias(_ graph: inout Graph) {
    let outputs = Set(graph.outputs.map(\.name))
    let readers = consumers(graph)
    var removed = Set<Int>()
    for (index, node) in graph.nodes.enumerated() where node.domain.isEmpty && node.opType == "MatMul" {
        guard node.inputs.count == 2, let weights = graph.initializers[node.inputs[1]], weights.rank == 2, weights.dtype == .float32,
              let output = node.outputs.first, !outputs.contains(output), let reader = readers[output], reader.count == 1 else { continue }
        let add = graph.nodes[reader[0]]
        guard add.domain.isEmpty, add.opType == "Add", add.inputs.count == 2 else { continue }
        let biasName = add.inputs[0] == output ? add.inputs[1] : add.inputs[0]
        guard let bias = graph.initializers[biasName], bias.dtype == .float32, bias.count == weights.shape[1],
              bias.shape.dropLast().allSatisfy({ $0 == 1 }), bias.rank <= 2 else { continue }
        graph.nodes[index] = Node(name: node.name, opType: "FusedMatMul", domain: servalDomain,
                                  inputs: [node.inputs[0], node.inputs[1], biasName], outputs: add.outputs)
        removed.insert(reader[0])
    }
    graph.nodes = graph.nodes.enumerated().filter { !removed.contains($0.offset) }.map(\.element)
}

/// LayerNormalization written out as older exporters do (before opset 17) becomes one LayerNormalization node:
/// m = ReduceMean(x, [-1]); d = x - m; v = ReduceMean(d ^ 2, [-1]); y = d / Sqrt(v + eps) * gamma + beta.
func fuseLayerNormalization(_ graph: inout Graph) {
    let outputs = Set(graph.outputs.map(\.name))
    let readers = consumers(graph)
    /// The single standard-domain reader of `value` with op `op` (the value must not be a graph output).
    func onlyReader(_ value: String, _ op: String, readers count: Int = 1) -> (Int, Node)? {
        guard !outputs.contains(value), let list = readers[value], list.count == count else { return nil }
        for index in list where graph.nodes[index].domain.isEmpty && graph.nodes[index].opType == op { return (index, graph.nodes[index]) }
        return nil
    }
    func scalar(_ name: String) -> Float? {
        guard let tensor = graph.initializers[name], tensor.count == 1 else { return nil }
        return (try? tensor.doubles()).flatMap { $0.first.map { Float($0) } }
    }
    func lastAxisMean(_ node: Node) -> Bool {
        guard node.domain.isEmpty, node.opType == "ReduceMean" else { return false }
        if case .int(let keep)? = node.attributes["keepdims"], keep != 1 { return false }
        if case .ints(let axes)? = node.attributes["axes"] { return axes == [-1] }
        return node.inputs.count == 2 && graph.initializers[node.inputs[1]].flatMap { try? $0.int64s() } == [-1]
    }
    func other(_ node: Node, than value: String) -> String? {
        guard node.inputs.count == 2 else { return nil }
        return node.inputs[0] == value ? node.inputs[1] : (node.inputs[1] == value ? node.inputs[0] : nil)
    }
    var removed = Set<Int>()
    var replacements: [Int: Node] = [:]
    for (meanIndex, mean) in graph.nodes.enumerated() where lastAxisMean(mean) && !removed.contains(meanIndex) {
        let x = mean.inputs[0]
        guard let (subIndex, sub) = onlyReader(mean.outputs[0], "Sub"), sub.inputs == [x, mean.outputs[0]] else { continue }
        let centered = sub.outputs[0]
        guard let list = readers[centered], list.count == 2, !outputs.contains(centered) else { continue }
        let pair = list.map { graph.nodes[$0] }
        guard let powIndex = list.first(where: { graph.nodes[$0].opType == "Pow" }), let divIndex = list.first(where: { graph.nodes[$0].opType == "Div" }),
              pair.allSatisfy({ $0.domain.isEmpty }) else { continue }
        let pow = graph.nodes[powIndex], div = graph.nodes[divIndex]
        guard pow.inputs.first == centered, pow.inputs.count == 2, scalar(pow.inputs[1]) == 2, div.inputs.first == centered else { continue }
        guard let (varianceIndex, variance) = onlyReader(pow.outputs[0], "ReduceMean"), lastAxisMean(variance),
              let (epsIndex, addEps) = onlyReader(variance.outputs[0], "Add"), let epsName = other(addEps, than: variance.outputs[0]),
              let epsilon = scalar(epsName),
              let (sqrtIndex, sqrt) = onlyReader(addEps.outputs[0], "Sqrt"), div.inputs.count == 2, div.inputs[1] == sqrt.outputs[0],
              onlyReader(sqrt.outputs[0], "Div") != nil,
              let (mulIndex, mul) = onlyReader(div.outputs[0], "Mul"), let gamma = other(mul, than: div.outputs[0]),
              let gammaTensor = graph.initializers[gamma], gammaTensor.dtype == .float32,
              let (addIndex, add) = onlyReader(mul.outputs[0], "Add"), let beta = other(add, than: mul.outputs[0]),
              let betaTensor = graph.initializers[beta], betaTensor.dtype == .float32 else { continue }
        replacements[meanIndex] = Node(name: add.name, opType: "LayerNormalization", inputs: [x, gamma, beta], outputs: add.outputs,
                                       attributes: ["axis": .int(-1), "epsilon": .float(epsilon)])
        removed.formUnion([subIndex, powIndex, varianceIndex, epsIndex, sqrtIndex, divIndex, mulIndex, addIndex])
    }
    guard !replacements.isEmpty else { return }
    // The fused node takes the first ReduceMean's place: it reads only x (computed before it) and initializers,
    // and everything that reads its output came after the last node it replaces.
    graph.nodes = graph.nodes.enumerated().compactMap { index, node in
        replacements[index] ?? (removed.contains(index) ? nil : node)
    }
}

/// An activation right after Conv, Gemm or (fused) MatMul runs inside that kernel's output pass.
func fuseActivations(_ graph: inout Graph) {
    let outputs = Set(graph.outputs.map(\.name))
    let readers = consumers(graph)
    var removed = Set<Int>()
    for (index, node) in graph.nodes.enumerated() {
        let fusedName: String
        switch (node.domain, node.opType) {
        case ("", "Conv"), (servalDomain, "FusedConv"): fusedName = "FusedConv"
        case ("", "Gemm"), (servalDomain, "FusedGemm"): fusedName = "FusedGemm"
        case ("", "MatMul"), (servalDomain, "FusedMatMul"): fusedName = "FusedMatMul"
        default: continue
        }
        guard node.attributes["activation"] == nil, node.outputs.count == 1, let output = node.outputs.first,
              !outputs.contains(output), let reader = readers[output], reader.count == 1 else { continue }
        let next = graph.nodes[reader[0]]
        guard next.domain.isEmpty || (next.domain == servalDomain && next.opType == "Gelu"), next.inputs.first == output else { continue }
        var attributes = node.attributes
        switch next.opType {
        case "Gelu":
            if case .string(let approximate)? = next.attributes["approximate"], approximate != "none" { continue }
            attributes["activation"] = .string("Gelu")
        case "Relu", "Sigmoid", "Tanh", "HardSwish":
            attributes["activation"] = .string(next.opType)
        case "LeakyRelu":
            attributes["activation"] = .string("LeakyRelu")
            if case .float(let alpha)? = next.attributes["alpha"] { attributes["activation_alpha"] = .float(alpha) }
        case "Clip":
            var low: Float = -.infinity, high: Float = .infinity
            if graph.opset(for: "") < 11 {
                if case .float(let value)? = next.attributes["min"] { low = value }
                if case .float(let value)? = next.attributes["max"] { high = value }
            } else {
                if next.inputs.count > 1, !next.inputs[1].isEmpty {
                    guard let value = try? graph.initializers[next.inputs[1]]?.doubles().first else { continue }
                    low = Float(value)
                }
                if next.inputs.count > 2, !next.inputs[2].isEmpty {
                    guard let value = try? graph.initializers[next.inputs[2]]?.doubles().first else { continue }
                    high = Float(value)
                }
            }
            attributes["activation"] = .string("Clip")
            attributes["activation_min"] = .float(low)
            attributes["activation_max"] = .float(high)
        default: continue
        }
        graph.nodes[index] = Node(name: node.name, opType: fusedName, domain: servalDomain, inputs: node.inputs,
                                  outputs: next.outputs, attributes: attributes)
        removed.insert(reader[0])
    }
    graph.nodes = graph.nodes.enumerated().filter { !removed.contains($0.offset) }.map(\.element)
}

/// Drops nodes whose outputs no graph output depends on, and initializers nothing reads.
func removeDeadNodes(_ graph: inout Graph) {
    var needed = Set(graph.outputs.map(\.name))
    var kept: [Node] = []
    for node in graph.nodes.reversed() where node.outputs.contains(where: { needed.contains($0) }) {
        kept.append(node)
        for input in node.inputs where !input.isEmpty { needed.insert(input) }
    }
    graph.nodes = kept.reversed()
    graph.initializers = graph.initializers.filter { needed.contains($0.key) }
}
