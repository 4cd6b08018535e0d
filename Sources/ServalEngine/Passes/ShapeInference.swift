import ServalTensor

/// Static type facts for every value: element type and shape, with named (symbolic) dimensions carried
/// through where the rules allow, e.g. a `batch` input dimension survives Gemm, Conv and Flatten.
///
/// Facts come from the declared input types, the initializers and one rule per op family. A value whose
/// rule is missing or cannot decide gets `.unknown` (or a shape of unknown dims when only the rank is known).
public enum ShapeInference {
    public static func infer(_ graph: Graph) -> [String: ValueType] {
        var facts: [String: ValueType] = [:]
        for input in graph.inputs { facts[input.name] = input.type }
        for (name, tensor) in graph.initializers { facts[name] = .tensor(dtype: tensor.dtype, shape: tensor.shape.map { .fixed($0) }) }
        let order = (try? topologicalOrder(graph)) ?? graph.nodes
        for node in order {
            let inputs = node.inputs.map { $0.isEmpty ? nil : facts[$0] }
            let constants = node.inputs.map { $0.isEmpty ? nil : graph.initializers[$0] }
            let rule = Rule(node: node, inputs: inputs, constants: constants, opset: graph.opset(for: node.domain))
            let outputs = rule.outputs()
            for (index, name) in node.outputs.enumerated() where !name.isEmpty {
                let inferred = index < outputs.count ? outputs[index] : .unknown
                facts[name] = refine(inferred, with: graph.valueInfo[name])
            }
        }
        for output in graph.outputs { facts[output.name] = refine(facts[output.name] ?? .unknown, with: output.type) }
        return facts
    }

    /// Combines an inferred type with a declared one, keeping the more specific fact per dimension.
    static func refine(_ inferred: ValueType, with declared: ValueType?) -> ValueType {
        guard let declared else { return inferred }
        guard case .tensor(let dtype, let shape) = inferred, case .tensor(let declaredDType, let declaredShape) = declared else {
            if case .unknown = inferred { return declared }
            return inferred
        }
        guard let shape else { return .tensor(dtype: dtype ?? declaredDType, shape: declaredShape) }
        guard let declaredShape, declaredShape.count == shape.count else { return .tensor(dtype: dtype ?? declaredDType, shape: shape) }
        let merged = zip(shape, declaredShape).map { mine, theirs -> Dimension in
            if case .fixed = mine { return mine }
            if case .fixed = theirs { return theirs }
            if case .symbolic = mine { return mine }
            return theirs
        }
        return .tensor(dtype: dtype ?? declaredDType, shape: merged)
    }

    /// Numpy broadcasting over dimensions that may be symbolic.
    static func broadcast(_ a: [Dimension], _ b: [Dimension]) -> [Dimension] {
        let rank = max(a.count, b.count)
        return (0..<rank).map { i in
            let x = i < rank - a.count ? Dimension.fixed(1) : a[i - (rank - a.count)]
            let y = i < rank - b.count ? Dimension.fixed(1) : b[i - (rank - b.count)]
            if x == y { return x }
            if x == .fixed(1) { return y }
            if y == .fixed(1) { return x }
            if case .fixed = x { return x }
            if case .fixed = y { return y }
            return .unknown
        }
    }

    static func product(_ dims: ArraySlice<Dimension>) -> Dimension {
        var total = 1
        for dim in dims {
            guard case .fixed(let value) = dim else { return dims.count == 1 ? dim : .unknown }
            total *= value
        }
        return .fixed(total)
    }
}

/// The inference rule for one node.
private struct Rule {
    let node: Node
    let inputs: [ValueType?]
    let constants: [Tensor?]
    let opset: Int

    func dtype(_ index: Int) -> DType? { index < inputs.count ? inputs[index]?.tensorDType : nil }
    func shape(_ index: Int) -> [Dimension]? { index < inputs.count ? inputs[index]?.tensorShape : nil }
    func constantInts(_ index: Int) -> [Int]? { index < constants.count ? (try? constants[index]?.int64s())?.map { Int($0) } : nil }
    func int(_ name: String) -> Int? { if case .int(let v)? = node.attributes[name] { return v }; return nil }
    func ints(_ name: String) -> [Int]? { if case .ints(let v)? = node.attributes[name] { return v }; return nil }
    func unknownDims(_ rank: Int?) -> [Dimension]? { rank.map { Array(repeating: .unknown, count: $0) } }

    func outputs() -> [ValueType] {
        let op = node.domain.isEmpty ? node.opType : (node.domain == servalDomain ? node.opType.replacingOccurrences(of: "Fused", with: "") : node.domain + ":" + node.opType)
        switch op {
        case "Relu", "Sigmoid", "Tanh", "Exp", "Log", "Sqrt", "Abs", "Neg", "Reciprocal", "Floor", "Ceil", "Round", "Sign", "Erf",
             "Sin", "Cos", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Asinh", "Acosh", "Atanh", "LeakyRelu", "Elu", "Selu", "Celu",
             "ThresholdedRelu", "HardSigmoid", "HardSwish", "Softplus", "Softsign", "Mish", "Gelu", "Softmax", "LogSoftmax", "Hardmax",
             "Clip", "Identity", "BatchNormalization", "InstanceNormalization", "LRN", "Not", "PRelu":
            return [.tensor(dtype: dtype(0), shape: shape(0))]
        case "Dropout":
            return [.tensor(dtype: dtype(0), shape: shape(0)), .tensor(dtype: .bool, shape: shape(0))]
        case "LayerNormalization":
            return [.tensor(dtype: dtype(0), shape: shape(0))]
        case "Cast":
            return [.tensor(dtype: int("to").flatMap { DType(onnxCode: $0) }, shape: shape(0))]
        case "CastLike":
            return [.tensor(dtype: dtype(1), shape: shape(0))]
        case "Add", "Sub", "Mul", "Div", "Pow", "Mod", "Min", "Max", "Sum", "Mean", "And", "Or", "Xor",
             "Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "Where":
            let shapes = (0..<node.inputs.count).map { shape($0) }
            guard shapes.allSatisfy({ $0 != nil }), !shapes.isEmpty else { return [.tensor(dtype: resultDType(op), shape: nil)] }
            return [.tensor(dtype: resultDType(op), shape: shapes.dropFirst().reduce(shapes[0]!) { ShapeInference.broadcast($0, $1!) })]
        case "Gemm":
            guard let a = shape(0), let b = shape(1), a.count == 2, b.count == 2 else { return [.tensor(dtype: dtype(0), shape: unknownDims(2))] }
            let m = int("transA") == 1 ? a[1] : a[0], n = int("transB") == 1 ? b[0] : b[1]
            return [.tensor(dtype: dtype(0), shape: [m, n])]
        case "Attention":
            guard let q = shape(0), let v = shape(2), q.count == 4, v.count == 4 else { return [.tensor(dtype: .float32, shape: nil)] }
            return [.tensor(dtype: .float32, shape: [q[0], q[1], q[2], v[3]])]
        case "MatMul", "MatMulInteger", "DynamicQuantizeMatMul":
            let type: DType? = op == "MatMul" ? dtype(0) : (op == "MatMulInteger" ? .int32 : .float32)
            guard var a = shape(0), var b = shape(1), !a.isEmpty, !b.isEmpty else { return [.tensor(dtype: type, shape: nil)] }
            let (aVector, bVector) = (a.count == 1, b.count == 1)
            if aVector { a = [.fixed(1)] + a }
            if bVector { b = b + [.fixed(1)] }
            var result = ShapeInference.broadcast(Array(a.dropLast(2)), Array(b.dropLast(2))) + [a[a.count - 2], b[b.count - 1]]
            if aVector { result.remove(at: result.count - 2) }
            if bVector { result.removeLast() }
            return [.tensor(dtype: type, shape: result)]
        case "Conv", "MaxPool", "AveragePool", "LpPool", "QLinearConv", "ConvInteger":
            let type = op == "QLinearConv" ? dtype(7) : (op == "ConvInteger" ? .int32 : dtype(0))
            let weights = op == "QLinearConv" ? 3 : 1
            guard let x = shape(0), x.count >= 3 else { return [.tensor(dtype: type, shape: nil)] }
            let channels: Dimension = ["Conv", "QLinearConv", "ConvInteger"].contains(op) ? (shape(weights)?.first ?? .unknown) : x[1]
            let kernel = ints("kernel_shape") ?? shape(weights)?.dropFirst(2).compactMap(\.value)
            let spatial = x.dropFirst(2).compactMap(\.value)
            var out: [Dimension] = Array(repeating: .unknown, count: x.count - 2)
            if let kernel, spatial.count == x.count - 2, kernel.count == spatial.count,
               let geometry = try? SpatialGeometry(input: spatial, kernel: kernel, strides: ints("strides"), dilations: ints("dilations"),
                                                   pads: ints("pads"), autoPad: autoPad, ceilMode: int("ceil_mode") == 1) {
                out = geometry.outputSize.map { .fixed($0) }
            }
            let result = ValueType.tensor(dtype: type, shape: [x[0], channels] + out)
            return op == "MaxPool" ? [result, .tensor(dtype: .int64, shape: [x[0], channels] + out)] : [result]
        case "GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool":
            guard let x = shape(0), x.count >= 2 else { return [.tensor(dtype: dtype(0), shape: nil)] }
            return [.tensor(dtype: dtype(0), shape: [x[0], x[1]] + Array(repeating: .fixed(1), count: x.count - 2))]
        case "Flatten":
            guard let x = shape(0) else { return [.tensor(dtype: dtype(0), shape: unknownDims(2))] }
            let axis = (int("axis") ?? 1) < 0 ? (int("axis") ?? 1) + x.count : (int("axis") ?? 1)
            guard axis >= 0 && axis <= x.count else { return [.unknown] }
            return [.tensor(dtype: dtype(0), shape: [ShapeInference.product(x[..<axis]), ShapeInference.product(x[axis...])])]
        case "Reshape":
            let target = opset >= 5 ? constantInts(1) : ints("shape")
            guard let target else { return [.tensor(dtype: dtype(0), shape: nil)] }
            let x = shape(0)
            var dims: [Dimension] = target.enumerated().map { index, value in
                if value == 0 && int("allowzero") != 1 { return x.flatMap { index < $0.count ? $0[index] : nil } ?? .unknown }
                return value == -1 ? .unknown : .fixed(value)
            }
            if let x, let inferred = target.firstIndex(of: -1) {
                // -1 is the input's size over the other target dims; matching symbolic dims cancel out.
                var symbols = x.compactMap { if case .symbolic(let name) = $0 { return name } else { return nil } }
                var total = 1, known = 1, decidable = !x.contains(.unknown)
                for dim in x { if let value = dim.value { total *= value } }
                for (index, dim) in dims.enumerated() where index != inferred {
                    switch dim {
                    case .fixed(let value): known *= value
                    case .symbolic(let name):
                        if let match = symbols.firstIndex(of: name) { symbols.remove(at: match) } else { decidable = false }
                    case .unknown: decidable = false
                    }
                }
                if decidable && known > 0 {
                    if symbols.isEmpty { dims[inferred] = .fixed(total / known) } else if symbols.count == 1 && total == known { dims[inferred] = .symbolic(symbols[0]) }
                }
            }
            return [.tensor(dtype: dtype(0), shape: dims)]
        case "Transpose":
            guard let x = shape(0) else { return [.tensor(dtype: dtype(0), shape: nil)] }
            let perm = ints("perm") ?? Array((0..<x.count).reversed())
            guard perm.count == x.count, perm.allSatisfy({ $0 >= 0 && $0 < x.count }) else { return [.unknown] }
            return [.tensor(dtype: dtype(0), shape: perm.map { x[$0] })]
        case "Concat":
            let shapes = (0..<node.inputs.count).compactMap { shape($0) }
            guard shapes.count == node.inputs.count, let first = shapes.first, let axis = Shape.normalize(axis: int("axis") ?? 0, rank: first.count) else {
                return [.tensor(dtype: dtype(0), shape: nil)]
            }
            var result = first
            let sizes = shapes.compactMap { $0[axis].value }
            result[axis] = sizes.count == shapes.count ? .fixed(sizes.reduce(0, +)) : .unknown
            return [.tensor(dtype: dtype(0), shape: result)]
        case "Squeeze", "Unsqueeze":
            let axes = opset >= 13 ? constantInts(1) : ints("axes")
            guard let x = shape(0) else { return [.tensor(dtype: dtype(0), shape: nil)] }
            if op == "Squeeze" {
                guard let axes else { return [.tensor(dtype: dtype(0), shape: x.allSatisfy({ $0.value != nil }) ? x.filter { $0 != .fixed(1) } : nil)] }
                let normalized = Set(axes.compactMap { Shape.normalize(axis: $0, rank: x.count) })
                return [.tensor(dtype: dtype(0), shape: x.enumerated().filter { !normalized.contains($0.offset) }.map(\.element))]
            }
            guard let axes else { return [.tensor(dtype: dtype(0), shape: nil)] }
            let rank = x.count + axes.count
            let normalized = Set(axes.compactMap { Shape.normalize(axis: $0, rank: rank) })
            var source = x.makeIterator()
            return [.tensor(dtype: dtype(0), shape: (0..<rank).map { normalized.contains($0) ? .fixed(1) : (source.next() ?? .unknown) })]
        case "Shape":
            guard let x = shape(0) else { return [.tensor(dtype: .int64, shape: unknownDims(1))] }
            let rank = x.count, start = int("start") ?? 0, end = int("end") ?? rank
            let lower = min(max(start < 0 ? start + rank : start, 0), rank), upper = min(max(end < 0 ? end + rank : end, 0), rank)
            return [.tensor(dtype: .int64, shape: [.fixed(max(0, upper - lower))])]
        case "Size":
            return [.tensor(dtype: .int64, shape: [])]
        case "Gather":
            guard let data = shape(0), let indices = shape(1), let axis = Shape.normalize(axis: int("axis") ?? 0, rank: data.count) else {
                return [.tensor(dtype: dtype(0), shape: nil)]
            }
            return [.tensor(dtype: dtype(0), shape: Array(data[..<axis]) + indices + Array(data[(axis + 1)...]))]
        case "ArgMax", "ArgMin", "ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
             "ReduceSumSquare", "ReduceLogSum", "ReduceLogSumExp":
            guard let x = shape(0) else { return [.tensor(dtype: op.hasPrefix("Arg") ? .int64 : dtype(0), shape: nil)] }
            let keep = (int("keepdims") ?? 1) == 1
            var axes = op.hasPrefix("Arg") ? [int("axis") ?? 0] : (ints("axes") ?? constantInts(1) ?? [])
            if axes.isEmpty && !op.hasPrefix("Arg") {
                if int("noop_with_empty_axes") == 1 { return [.tensor(dtype: dtype(0), shape: x)] }
                if node.inputs.count < 2 || node.inputs[1].isEmpty { axes = Array(0..<x.count) } else { return [.tensor(dtype: dtype(0), shape: nil)] }
            }
            let normalized = Set(axes.compactMap { Shape.normalize(axis: $0, rank: x.count) })
            let dims: [Dimension] = keep ? x.enumerated().map { normalized.contains($0.offset) ? .fixed(1) : $0.element }
                : x.enumerated().filter { !normalized.contains($0.offset) }.map(\.element)
            return [.tensor(dtype: op.hasPrefix("Arg") ? .int64 : dtype(0), shape: dims)]
        case "ConstantOfShape":
            let valueType: DType = { if case .tensor(let t)? = node.attributes["value"] { return t.dtype }; return .float32 }()
            return [.tensor(dtype: valueType, shape: constantInts(0).map { $0.map { .fixed($0) } })]
        case "Constant":
            if case .tensor(let t)? = node.attributes["value"] { return [.tensor(dtype: t.dtype, shape: t.shape.map { .fixed($0) })] }
            return [.unknown]
        case "Expand", "Tile", "Pad", "Slice", "GatherElements":
            return [.tensor(dtype: dtype(0), shape: unknownDims(op == "GatherElements" ? shape(1)?.count : shape(0)?.count))]
        case "Split":
            return node.outputs.map { _ in .tensor(dtype: dtype(0), shape: unknownDims(shape(0)?.count)) }
        case "IsNaN", "IsInf":
            return [.tensor(dtype: .bool, shape: shape(0))]
        case "Trilu", "CumSum":
            return [.tensor(dtype: dtype(0), shape: shape(0))]
        case "DequantizeLinear":
            return [.tensor(dtype: dtype(1) ?? .float32, shape: shape(0))]
        case "QuantizeLinear":
            return [.tensor(dtype: node.inputs.count > 2 && !node.inputs[2].isEmpty ? dtype(2) : .uint8, shape: shape(0))]
        case "DynamicQuantizeLinear":
            return [.tensor(dtype: .uint8, shape: shape(0)), .tensor(dtype: .float32, shape: []), .tensor(dtype: .uint8, shape: [])]
        case "QLinearMatMul":
            return [.tensor(dtype: dtype(7), shape: nil)]
        case "ai.onnx.ml:LinearClassifier", "ai.onnx.ml:TreeEnsembleClassifier":
            let rows = shape(0)?.first ?? .unknown
            let stringLabels = node.attributes["classlabels_strings"] != nil
            let classes: Int? = {
                if case .strings(let v)? = node.attributes["classlabels_strings"] { return v.count }
                if case .ints(let v)? = node.attributes["classlabels_int64s"] ?? node.attributes["classlabels_ints"] { return v.count }
                return nil
            }()
            return [.tensor(dtype: stringLabels ? .string : .int64, shape: [rows]),
                    .tensor(dtype: .float32, shape: [rows, classes.map { .fixed($0) } ?? .unknown])]
        case "ai.onnx.ml:LinearRegressor", "ai.onnx.ml:TreeEnsembleRegressor":
            let targets = int("targets") ?? int("n_targets") ?? 1
            return [.tensor(dtype: .float32, shape: [shape(0)?.first ?? .unknown, .fixed(targets)])]
        case "ai.onnx.ml:Scaler", "ai.onnx.ml:Normalizer":
            return [.tensor(dtype: .float32, shape: shape(0))]
        case "ai.onnx.ml:Imputer", "ai.onnx.ml:Binarizer":
            return [.tensor(dtype: dtype(0), shape: shape(0))]
        case "ai.onnx.ml:ZipMap":
            let key: DType = node.attributes["classlabels_strings"] != nil ? .string : .int64
            return [.sequence(.map(key: key, value: .tensor(dtype: .float32, shape: [])))]
        case "ai.onnx.ml:ArrayFeatureExtractor":
            guard let x = shape(0) else { return [.tensor(dtype: dtype(0), shape: nil)] }
            let count = (constants.count > 1 ? constants[1]?.count : nil).map { Dimension.fixed($0) } ?? .unknown
            return [.tensor(dtype: dtype(0), shape: x.count == 1 ? [.fixed(1), count] : Array(x.dropLast()) + [count])]
        case "ai.onnx.ml:OneHotEncoder":
            let categories: Int? = {
                if case .ints(let v)? = node.attributes["cats_int64s"] { return v.count }
                if case .strings(let v)? = node.attributes["cats_strings"] { return v.count }
                return nil
            }()
            return [.tensor(dtype: .float32, shape: shape(0).map { $0 + [categories.map { .fixed($0) } ?? .unknown] })]
        case "ai.onnx.ml:LabelEncoder":
            return [.tensor(dtype: nil, shape: shape(0))]
        default:
            return node.outputs.map { _ in .unknown }
        }
    }

    var autoPad: String {
        if case .string(let value)? = node.attributes["auto_pad"], !value.isEmpty { return value }
        return "NOTSET"
    }

    func resultDType(_ op: String) -> DType? {
        switch op {
        case "Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "And", "Or", "Xor": return .bool
        case "Where": return dtype(1)
        default: return dtype(0)
        }
    }
}
