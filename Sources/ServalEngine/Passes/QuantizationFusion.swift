import ServalTensor

/// Dynamically quantized MatMul, as `serval quantize` and onnxruntime's quantizer write it:
///
///     x_q, x_scale, x_zero = DynamicQuantizeLinear(x)
///     y_int = MatMulInteger(x_q, W, x_zero[, W_zero = 0])       W: constant 2-D int8
///     y = Mul(Cast(y_int, to: float), Mul(x_scale, W_scale))    W_scale: constant, per tensor or per column
///     [y = Add(y, bias)]                                         bias: constant row vector
///
/// becomes one `ai.serval:DynamicQuantizeMatMul(x, W, W_scale[, bias])`, which quantizes x, runs the int8 kernel and
/// scales back in the kernel's store. The DynamicQuantizeLinear and scale Mul die once all their readers are fused.
func fuseDynamicQuantizedMatMul(_ graph: inout Graph) {
    let outputs = Set(graph.outputs.map(\.name))
    let readers = consumers(graph)
    let producers = Dictionary(graph.nodes.enumerated().flatMap { index, node in node.outputs.map { ($0, index) } }, uniquingKeysWith: { first, _ in first })
    /// The single standard-domain reader of `value` with op `op`.
    func onlyReader(_ value: String, _ op: String) -> (Int, Node)? {
        guard !outputs.contains(value), let list = readers[value], list.count == 1 else { return nil }
        let node = graph.nodes[list[0]]
        return node.domain.isEmpty && node.opType == op ? (list[0], node) : nil
    }
    func producer(of value: String, _ op: String) -> Node? {
        guard let index = producers[value], graph.nodes[index].domain.isEmpty, graph.nodes[index].opType == op else { return nil }
        return graph.nodes[index]
    }
    func other(_ node: Node, than value: String) -> String? {
        guard node.inputs.count == 2 else { return nil }
        return node.inputs[0] == value ? node.inputs[1] : (node.inputs[1] == value ? node.inputs[0] : nil)
    }
    var removed = Set<Int>()
    var replacements: [Int: Node] = [:]
    for (index, matmul) in graph.nodes.enumerated() where matmul.domain.isEmpty && matmul.opType == "MatMulInteger" {
        guard matmul.inputs.count >= 3, let quantize = producer(of: matmul.inputs[0], "DynamicQuantizeLinear"),
              quantize.outputs.count == 3, quantize.outputs[0] == matmul.inputs[0], quantize.outputs[2] == matmul.inputs[2],
              let weights = graph.initializers[matmul.inputs[1]], weights.dtype == .int8, weights.rank == 2 else { continue }
        if matmul.inputs.count > 3, !matmul.inputs[3].isEmpty {
            guard let zero = graph.initializers[matmul.inputs[3]], (try? zero.int64s().allSatisfy { $0 == 0 }) == true else { continue }
        }
        let n = weights.shape[1]
        guard let (castIndex, cast) = onlyReader(matmul.outputs[0], "Cast"), case .int(1)? = cast.attributes["to"],
              let (mulIndex, mul) = onlyReader(cast.outputs[0], "Mul"), let scaleValue = other(mul, than: cast.outputs[0]),
              let scaleProduct = producer(of: scaleValue, "Mul"), let weightScale = other(scaleProduct, than: quantize.outputs[1]),
              let scale = graph.initializers[weightScale], scale.dtype == .float32, scale.count == 1 || (scale.rank == 1 && scale.count == n)
        else { continue }
        var inputs = [quantize.inputs[0], matmul.inputs[1], weightScale]
        var last = (mulIndex, mul)
        if let (addIndex, add) = onlyReader(mul.outputs[0], "Add"), let biasName = other(add, than: mul.outputs[0]),
           let bias = graph.initializers[biasName], bias.dtype == .float32, bias.count == n, bias.shape.dropLast().allSatisfy({ $0 == 1 }) {
            inputs.append(biasName)
            last = (addIndex, add)
        }
        // The fused node takes the place of the last node it replaces: x and the constants exist before it, and
        // every reader of its output comes after.
        replacements[last.0] = Node(name: last.1.name, opType: "DynamicQuantizeMatMul", domain: servalDomain, inputs: inputs, outputs: last.1.outputs)
        removed.formUnion([index, castIndex, mulIndex])
        removed.remove(last.0)
    }
    guard !replacements.isEmpty else { return }
    graph.nodes = graph.nodes.enumerated().compactMap { index, node in
        replacements[index] ?? (removed.contains(index) ? nil : node)
    }
}
