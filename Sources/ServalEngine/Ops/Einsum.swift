import ServalTensor

/// ONNX Einsum: a parsed equation (explicit or implicit output, `...` broadcasting, repeated labels for
/// diagonals) evaluated as a sum of products over the labels that do not reach the output.
struct EinsumPlan {
    /// Size of every label, output labels first, then the summed ones.
    let sizes: [Int]
    let outputRank: Int
    /// Per input: the element stride each label contributes (0 when the label is absent or broadcast).
    let strides: [[Int]]

    init(equation: String, shapes: [[Int]]) throws {
        let text = equation.filter { !$0.isWhitespace }
        let sides = text.components(separatedBy: "->")
        guard sides.count <= 2 else { throw KernelError("Einsum equation '\(equation)' has more than one '->'") }
        let terms = sides[0].components(separatedBy: ",")
        guard terms.count == shapes.count else { throw KernelError("Einsum equation '\(equation)' names \(terms.count) inputs, got \(shapes.count)") }

        // Labels: letters keep their character; ellipsis dimensions get labels after them, right-aligned.
        func letters(_ term: String) throws -> (before: [Character], after: [Character], ellipsis: Bool) {
            let parts = term.components(separatedBy: "...")
            guard parts.count <= 2 else { throw KernelError("Einsum term '\(term)' has more than one '...'") }
            for character in parts.joined() where !character.isLetter { throw KernelError("Einsum term '\(term)' has an invalid label '\(character)'") }
            return (Array(parts[0]), parts.count == 2 ? Array(parts[1]) : [], parts.count == 2)
        }
        let parsed = try terms.map(letters)
        var ellipsisRank = 0
        for (term, shape) in zip(parsed, shapes) {
            let named = term.before.count + term.after.count
            if term.ellipsis {
                guard shape.count >= named else { throw KernelError("Einsum input of shape \(shape) has fewer dimensions than its labels") }
                ellipsisRank = max(ellipsisRank, shape.count - named)
            } else if shape.count != named {
                throw KernelError("Einsum input of shape \(shape) does not have one dimension per label")
            }
        }
        let ellipsisLabels = (0..<ellipsisRank).map { "#\($0)" }
        let inputLabels: [[String]] = zip(parsed, shapes).map { term, shape in
            let count = term.ellipsis ? shape.count - term.before.count - term.after.count : 0
            return term.before.map(String.init) + ellipsisLabels.suffix(count) + term.after.map(String.init)
        }
        var sizeOf: [String: Int] = [:]
        for (labels, shape) in zip(inputLabels, shapes) {
            for (label, size) in zip(labels, shape) {
                if let known = sizeOf[label], known != size {
                    guard known == 1 || size == 1 else { throw KernelError("Einsum label '\(label)' has sizes \(known) and \(size)") }
                    sizeOf[label] = max(known, size)
                } else if sizeOf[label] == nil {
                    sizeOf[label] = size
                }
            }
        }
        var output: [String]
        if sides.count == 2 {
            let term = try letters(sides[1])
            output = term.before.map(String.init) + (term.ellipsis ? ellipsisLabels : []) + term.after.map(String.init)
            for label in output where sizeOf[label] == nil { throw KernelError("Einsum output label '\(label)' is not in any input") }
            guard Set(output).count == output.count else { throw KernelError("Einsum output repeats a label") }
        } else {
            var counts: [String: Int] = [:]
            for labels in inputLabels { for label in labels where !label.hasPrefix("#") { counts[label, default: 0] += 1 } }
            output = ellipsisLabels + counts.filter { $0.value == 1 }.keys.sorted()
        }
        let summed = Set(inputLabels.joined()).subtracting(output).sorted()
        let all = output + summed
        sizes = all.map { sizeOf[$0]! }
        outputRank = output.count
        strides = zip(inputLabels, shapes).map { labels, shape in
            let elementStrides = Shape.strides(shape)
            var byLabel = [Int](repeating: 0, count: all.count)
            for (d, label) in labels.enumerated() where shape[d] != 1 {
                byLabel[all.firstIndex(of: label)!] += elementStrides[d]  // repeated labels add up: a diagonal
            }
            return byLabel
        }
    }

    var outputShape: [Int] { Array(sizes[..<outputRank]) }
}

struct EinsumVisitor: NumericVisitor {
    let plan: EinsumPlan
    let inputs: [Tensor]
    let context: RunContext

    func visit<T: NumericScalar>(_ type: T.Type) throws -> Tensor {
        let values = inputs.map { $0.scalars(as: T.self) }
        let outputCount = plan.outputShape.reduce(1, *)
        let summedSizes = Array(plan.sizes[plan.outputRank...])
        let summedCount = summedSizes.reduce(1, *)
        var out = context.allocate(inputs[0].dtype, plan.outputShape)
        let outputStrides = Shape.strides(plan.outputShape), summedStrides = Shape.strides(summedSizes)
        out.withUnsafeMutableBufferPointer(as: T.self) { target in
            var index = [Int](repeating: 0, count: plan.sizes.count)
            for position in 0..<outputCount {
                for d in 0..<plan.outputRank { index[d] = (position / outputStrides[d]) % plan.sizes[d] }
                var total = T.zero
                for inner in 0..<summedCount {
                    for d in 0..<summedSizes.count { index[plan.outputRank + d] = (inner / summedStrides[d]) % summedSizes[d] }
                    var product = T(fromDouble: 1)
                    for (input, strides) in plan.strides.enumerated() {
                        var offset = 0
                        for d in 0..<index.count { offset += index[d] * strides[d] }
                        product = T.multiply(product, values[input][offset])
                    }
                    total = T.add(total, product)
                }
                target[position] = total
            }
        }
        return out
    }
}

extension KernelRegistry {
    static func registerEinsum(into registry: inout KernelRegistry) {
        registry.register("Einsum", since: 12) { build in
            guard let equation = try build.string("equation") else { throw build.invalid("equation is required") }
            return ClosureKernel { inputs, context in
                let tensors = try (0..<inputs.count).map { try inputs.tensor($0) }
                guard let first = tensors.first, tensors.allSatisfy({ $0.dtype == first.dtype }) else {
                    throw KernelError("Einsum inputs must share one element type")
                }
                let plan = try EinsumPlan(equation: equation, shapes: tensors.map(\.shape))
                return [.tensor(try first.dtype.dispatch(EinsumVisitor(plan: plan, inputs: tensors, context: context), context: "Einsum"))]
            }
        }
    }
}
