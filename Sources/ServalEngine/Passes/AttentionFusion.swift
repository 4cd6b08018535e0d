import ServalTensor

/// Scaled dot-product attention as encoders export it,
///
///     p = Softmax(Add(Div(MatMul(q, k), c), mask), axis: -1)      (Mul by c instead of Div; scale and mask optional)
///     y = MatMul(p, v)
///
/// with q [..., S, D], k [..., D, T] (already transposed), v [..., T, E], becomes one `ai.serval:Attention(q, k, v
/// [, mask])` with `scale`: per (batch, head) the scores stay in a cache-sized scratch block instead of four
/// [B, H, S, T] tensors. Shapes are often unknown here (reshapes built from Shape at run time); the kernel checks
/// them and runs the unfused sequence when they do not fit its fast path.
func fuseAttention(_ graph: inout Graph) {
    let outputs = Set(graph.outputs.map(\.name))
    let readers = consumers(graph)
    let facts = ShapeInference.infer(graph)
    /// Not known to be anything but a float32 tensor.
    func mayBeFloat(_ name: String) -> Bool { facts[name]?.tensorDType.map { $0 == .float32 } ?? true }
    func only(_ value: String, _ op: String) -> (Int, Node)? {
        guard !outputs.contains(value), let list = readers[value], list.count == 1 else { return nil }
        let node = graph.nodes[list[0]]
        return node.domain.isEmpty && node.opType == op ? (list[0], node) : nil
    }
    func scalar(_ name: String) -> Float? {
        guard let tensor = graph.initializers[name], tensor.count == 1, tensor.dtype == .float32 else { return nil }
        return tensor.scalars(as: Float.self).first
    }
    var removed = Set<Int>()
    var replacements: [Int: Node] = [:]
    for (index, product) in graph.nodes.enumerated() where product.domain.isEmpty && product.opType == "MatMul" && !removed.contains(index) {
        guard product.inputs.count == 2, mayBeFloat(product.inputs[0]), mayBeFloat(product.inputs[1]) else { continue }
        var chain = [index]
        var current = product.outputs[0]
        var scale: Float = 1
        var mask = ""
        // Optional scale: Div or Mul by a constant scalar, scores first.
        if let list = readers[current], list.count == 1, !outputs.contains(current) {
            let next = graph.nodes[list[0]]
            if next.domain.isEmpty, next.inputs.count == 2, next.inputs[0] == current, let c = scalar(next.inputs[1]), c != 0,
               next.opType == "Div" || next.opType == "Mul" {
                scale = next.opType == "Div" ? 1 / c : c
                chain.append(list[0])
                current = next.outputs[0]
            }
        }
        // Optional additive mask (either operand order).
        if let list = readers[current], list.count == 1, !outputs.contains(current) {
            let next = graph.nodes[list[0]]
            if next.domain.isEmpty, next.opType == "Add", next.inputs.count == 2 {
                let other = next.inputs[0] == current ? next.inputs[1] : next.inputs[0]
                if mayBeFloat(other) {
                    mask = other
                    chain.append(list[0])
                    current = next.outputs[0]
                }
            }
        }
        guard let (softmaxIndex, softmax) = only(current, "Softmax") else { continue }
        let axis: Int
        if case .int(let value)? = softmax.attributes["axis"] { axis = value } else { axis = graph.opset(for: "") >= 13 ? -1 : 1 }
        guard axis == -1 || axis == 3 else { continue }
        guard let (outputIndex, output) = only(softmax.outputs[0], "MatMul"), output.inputs.count == 2, output.inputs[0] == softmax.outputs[0],
              mayBeFloat(output.inputs[1]) else { continue }
        chain += [softmaxIndex, outputIndex]
        replacements[outputIndex] = Node(name: output.name, opType: "Attention", domain: servalDomain,
                                         inputs: [product.inputs[0], product.inputs[1], output.inputs[1], mask],
                                         outputs: output.outputs, attributes: ["scale": .float(scale)])
        removed.formUnion(chain.dropLast())
    }
    guard !replacements.isEmpty else { return }
    // The fused node takes the place of the final MatMul: q, k, v and the mask all exist before it.
    graph.nodes = graph.nodes.enumerated().compactMap { index, node in
        replacements[index] ?? (removed.contains(index) ? nil : node)
    }
}
