import ServalTensor

/// Exact GELU spelled out with Erf, as exporters write it before opset 20, becomes one `ai.serval:Gelu` node
/// (which `fuseActivations` then folds into the MatMul before it):
///
///     t = Add(Erf(Div(x, √2)), 1)            (or Mul(x, 1/√2); Add operands in either order)
///     y = Mul(Mul(x, t), 0.5)                 (form A)   or   y = Mul(Mul(x, 0.5), t)   (form B)
func fuseGelu(_ graph: inout Graph) {
    let outputs = Set(graph.outputs.map(\.name))
    let readers = consumers(graph)
    func scalar(_ name: String) -> Double? {
        guard let tensor = graph.initializers[name], tensor.count == 1, tensor.dtype.isFloatingPoint else { return nil }
        return (try? tensor.doubles())?.first
    }
    func close(_ value: Double?, _ expected: Double) -> Bool { value.map { abs($0 - expected) <= 1e-4 * abs(expected) } ?? false }
    func other(_ node: Node, than value: String) -> String? {
        guard node.inputs.count == 2 else { return nil }
        return node.inputs[0] == value ? node.inputs[1] : (node.inputs[1] == value ? node.inputs[0] : nil)
    }
    /// Standard-domain readers of `value` (which must not be a graph output).
    func readerNodes(_ value: String) -> [(Int, Node)]? {
        guard !outputs.contains(value), let list = readers[value] else { return nil }
        return list.map { ($0, graph.nodes[$0]) }.filter { $0.1.domain.isEmpty }
    }
    func only(_ value: String, _ op: String) -> (Int, Node)? {
        guard let list = readerNodes(value), list.count == 1, readers[value]?.count == 1, list[0].1.opType == op else { return nil }
        return list[0]
    }
    var removed = Set<Int>()
    var replacements: [Int: Node] = [:]
    for (scaleIndex, scaleNode) in graph.nodes.enumerated() where scaleNode.domain.isEmpty && !removed.contains(scaleIndex) {
        // x / √2 or x · (1/√2)
        guard scaleNode.inputs.count == 2 else { continue }
        let x = scaleNode.inputs[0]
        let isScale = (scaleNode.opType == "Div" && close(scalar(scaleNode.inputs[1]), 2.0.squareRoot()))
            || (scaleNode.opType == "Mul" && close(scalar(scaleNode.inputs[1]), 1 / 2.0.squareRoot()))
        guard isScale, let (erfIndex, erf) = only(scaleNode.outputs[0], "Erf"),
              let (addIndex, add) = only(erf.outputs[0], "Add"), let one = other(add, than: erf.outputs[0]), close(scalar(one), 1),
              let (mulIndex, mul) = only(add.outputs[0], "Mul"), let partner = other(mul, than: add.outputs[0]) else { continue }
        var last: (Int, Node)
        var extra: Int?
        if partner == x, let (halfIndex, half) = only(mul.outputs[0], "Mul"), close(scalar(other(half, than: mul.outputs[0]) ?? ""), 0.5) {
            last = (halfIndex, half)  // form A: (x · t) · 0.5
        } else if let halfIndex = graph.nodes.firstIndex(where: { $0.outputs.first == partner }), graph.nodes[halfIndex].domain.isEmpty,
                  graph.nodes[halfIndex].opType == "Mul", readers[partner]?.count == 1, !outputs.contains(partner),
                  other(graph.nodes[halfIndex], than: x).map({ close(scalar($0), 0.5) }) == true {
            last = (mulIndex, mul)  // form B: (x · 0.5) · t
            extra = halfIndex
        } else {
            continue
        }
        replacements[last.0] = Node(name: last.1.name, opType: "Gelu", domain: servalDomain, inputs: [x], outputs: last.1.outputs)
        removed.formUnion([scaleIndex, erfIndex, addIndex, mulIndex])
        if let extra { removed.insert(extra) }
        removed.remove(last.0)
    }
    guard !replacements.isEmpty else { return }
    // The fused node takes the place of the pattern's last node: x exists before it, its readers come after.
    graph.nodes = graph.nodes.enumerated().compactMap { index, node in
        replacements[index] ?? (removed.contains(index) ? nil : node)
    }
}
