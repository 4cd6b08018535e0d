import Foundation
import ServalEngine
import ServalTensor

/// Rewrites an ONNX model with int8 weights, in the standard operators onnxruntime and Serval both run.
///
/// Dynamic quantization (weights quantized now, activations at run time) of every MatMul and Gemm whose weight is
/// a constant float matrix:
///
///     x_q, x_scale, x_zero = DynamicQuantizeLinear(x)                  uint8, range of this run's x
///     y = Cast(MatMulInteger(x_q, W_q, x_zero, W_zero), float) · Mul(x_scale, W_scale) [+ bias]
///
/// W_q is int8, symmetric (zero point 0, range ±127), with one scale for the matrix or one per output column
/// (`perChannel`). One DynamicQuantizeLinear serves every product that reads the same x. Serval's optimizer
/// turns each such chain back into a single int8 kernel call (`DynamicQuantizeMatMul`).
public struct ModelQuantizer: Sendable {
    /// How weights are quantized.
    public struct Options: Sendable {
        /// One scale per output column instead of one per matrix.
        public var perChannel: Bool
        /// Weights with fewer elements stay float (tiny products gain nothing and lose accuracy).
        public var minimumWeightElements: Int

        public init(perChannel: Bool = false, minimumWeightElements: Int = 256) {
            self.perChannel = perChannel
            self.minimumWeightElements = minimumWeightElements
        }
    }

    /// What was quantized and what it saved.
    public struct Report: Sendable {
        /// Nodes rewritten, as "op name".
        public var quantized: [String] = []
        /// Nodes left float, with the reason.
        public var skipped: [(node: String, reason: String)] = []
        public var floatWeightBytes = 0
        public var int8WeightBytes = 0
        public var inputBytes = 0
        public var outputBytes = 0

        public init() {}
    }

    public let options: Options

    public init(options: Options = Options()) { self.options = options }

    /// Reads `input`, writes the quantized model to `output`, and reports what changed.
    public func quantize(contentsOf input: URL, writingTo output: URL) throws -> Report {
        let data: Data
        do { data = try Data(contentsOf: input) } catch {
            throw ONNXImportError.unreadableFile(path: input.path, reason: (error as NSError).localizedDescription)
        }
        var report = Report()
        let quantized = try quantize(serialized: data, baseDirectory: input.deletingLastPathComponent(), report: &report)
        do { try quantized.write(to: output) } catch {
            throw QuantizationError("cannot write \(output.path): \((error as NSError).localizedDescription)")
        }
        report.inputBytes = data.count
        report.outputBytes = quantized.count
        return report
    }

    /// The quantized model, serialized.
    public func quantize(serialized data: Data, baseDirectory: URL?, report: inout Report) throws -> Data {
        // Validates the model the same way loading does, so a broken file fails here with the same message.
        _ = try ONNXModel(serialized: data, baseDirectory: baseDirectory)
        var model = try Onnx_ModelProto(serializedBytes: data)
        let opset = model.opsetImport.filter { Graph.canonicalDomain($0.domain).isEmpty }.map(\.version).max() ?? 1
        guard opset >= 11 else {
            throw QuantizationError("quantization needs ai.onnx opset 11 or later (DynamicQuantizeLinear); the model imports opset \(opset)")
        }
        var rewriter = GraphRewriter(graph: model.graph, baseDirectory: baseDirectory, options: options)
        try rewriter.rewrite(report: &report)
        model.graph = rewriter.graph
        return try model.serializedData()
    }
}

/// Why a model could not be quantized.
public struct QuantizationError: Error, CustomStringConvertible, Sendable {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// Rewrites one graph's MatMul and Gemm nodes, keeping every other node and value name as it was.
private struct GraphRewriter {
    var graph: Onnx_GraphProto
    let baseDirectory: URL?
    let options: ModelQuantizer.Options
    private var initializerIndex: [String: Int] = [:]
    private var readers: [String: Int] = [:]
    private var usedNames: Set<String> = []
    private var quantizedInputs: [String: (values: String, scale: String, zeroPoint: String)] = [:]
    private var removedInitializers: Set<String> = []

    init(graph: Onnx_GraphProto, baseDirectory: URL?, options: ModelQuantizer.Options) {
        self.graph = graph
        self.baseDirectory = baseDirectory
        self.options = options
        for (index, tensor) in graph.initializer.enumerated() { initializerIndex[tensor.name] = index }
        for node in graph.node {
            for input in node.input where !input.isEmpty { readers[input, default: 0] += 1 }
            usedNames.formUnion(node.output)
            usedNames.insert(node.name)
        }
        usedNames.formUnion(graph.initializer.map(\.name))
        usedNames.formUnion(graph.input.map(\.name))
    }

    mutating func rewrite(report: inout ModelQuantizer.Report) throws {
        var nodes: [Onnx_NodeProto] = []
        var added: [Onnx_TensorProto] = []
        for node in graph.node {
            let label = "\(node.opType) \(node.name.isEmpty ? node.output.first ?? "" : node.name)"
            guard Graph.canonicalDomain(node.domain).isEmpty, node.opType == "MatMul" || node.opType == "Gemm" else {
                nodes.append(node)
                continue
            }
            switch try plan(node) {
            case .skip(let reason):
                report.skipped.append((label, reason))
                nodes.append(node)
            case .quantize(let input, let weights, let weightName, let bias, let alpha):
                let (q, tensors) = try quantizedWeights(weights, name: weightName, alpha: alpha)
                added += tensors
                report.floatWeightBytes += weights.count * 4
                report.int8WeightBytes += weights.count
                nodes += product(node, input: input, weights: q, bias: bias, added: &added)
                report.quantized.append(label)
                // The float weight goes when nothing else reads it.
                if readers[weightName] == 1 { removedInitializers.insert(weightName) }
            }
        }
        graph.node = nodes
        graph.initializer = graph.initializer.filter { !removedInitializers.contains($0.name) } + added
    }

    private enum Plan {
        case skip(String)
        /// x, the weight as a K×N float matrix, its initializer name, an optional bias value, and Gemm's alpha.
        case quantize(input: String, weights: Tensor, weightName: String, bias: String?, alpha: Float)
    }

    private func constant(_ name: String) throws -> Tensor? {
        guard let index = initializerIndex[name] else { return nil }
        return try TensorDecoding.tensor(from: graph.initializer[index], baseDirectory: baseDirectory)
    }

    private func plan(_ node: Onnx_NodeProto) throws -> Plan {
        guard node.input.count >= 2, node.output.count == 1 else { return .skip("unexpected inputs or outputs") }
        guard let weights = try constant(node.input[1]) else { return .skip("its weight is not a constant") }
        guard weights.dtype == .float32, weights.rank == 2 else { return .skip("its weight is not a 2-D float matrix") }
        guard weights.count >= options.minimumWeightElements else {
            return .skip("its weight has \(weights.count) elements (< \(options.minimumWeightElements))")
        }
        if node.opType == "MatMul" { return .quantize(input: node.input[0], weights: weights, weightName: node.input[1], bias: nil, alpha: 1) }
        func attribute(_ name: String) -> Onnx_AttributeProto? { node.attribute.first { $0.name == name } }
        guard (attribute("transA")?.i ?? 0) == 0 else { return .skip("Gemm with transA") }
        let beta = attribute("beta")?.f ?? 1, alpha = attribute("alpha")?.f ?? 1
        var matrix = weights
        if (attribute("transB")?.i ?? 0) != 0 { matrix = transposed(weights) }
        var bias: String?
        if node.input.count > 2, !node.input[2].isEmpty {
            guard beta == 1 else { return .skip("Gemm with beta ≠ 1 and a bias") }
            bias = node.input[2]
        }
        return .quantize(input: node.input[0], weights: matrix, weightName: node.input[1], bias: bias, alpha: alpha)
    }

    /// The int8 weight, its scale (× alpha) and zero point as initializers.
    private mutating func quantizedWeights(_ weights: Tensor, name: String, alpha: Float) throws -> (names: (String, String, String), [Onnx_TensorProto]) {
        let (k, n) = (weights.shape[0], weights.shape[1])
        let values = weights.scalars(as: Float.self)
        let groups = options.perChannel ? n : 1
        var largest = [Float](repeating: 0, count: groups)
        for index in values.indices {
            let group = options.perChannel ? index % n : 0
            largest[group] = max(largest[group], abs(values[index]))
        }
        let scales = largest.map { $0 > 0 && $0.isFinite ? $0 / 127 : 1 }
        let quantized = values.indices.map { index -> Int8 in
            let q = (values[index] / scales[options.perChannel ? index % n : 0]).rounded(.toNearestOrEven)
            return q.isNaN ? 0 : Int8(min(max(q, -127), 127))
        }
        let names = (unique(name + "_quantized"), unique(name + "_scale"), unique(name + "_zero_point"))
        let scaleShape = options.perChannel ? [n] : []
        return (names, [
            TensorEncoding.proto(Tensor(shape: [k, n], scalars: quantized), name: names.0),
            TensorEncoding.proto(Tensor(shape: scaleShape, scalars: scales.map { $0 * alpha }), name: names.1),
            TensorEncoding.proto(Tensor(zeros: .int8, shape: scaleShape), name: names.2),
        ])
    }

    /// The nodes replacing one product: DynamicQuantizeLinear (once per x), MatMulInteger, Cast, two Muls and Gemm's Add.
    private mutating func product(_ node: Onnx_NodeProto, input: String, weights: (String, String, String), bias: String?,
                                  added: inout [Onnx_TensorProto]) -> [Onnx_NodeProto] {
        var nodes: [Onnx_NodeProto] = []
        let output = node.output[0]
        let base = node.name.isEmpty ? output : node.name
        let quantizedInput: (values: String, scale: String, zeroPoint: String)
        if let existing = quantizedInputs[input] {
            quantizedInput = existing
        } else {
            quantizedInput = (unique(input + "_quantized"), unique(input + "_scale"), unique(input + "_zero_point"))
            quantizedInputs[input] = quantizedInput
            nodes.append(makeNode("DynamicQuantizeLinear", name: unique(input + "_DynamicQuantizeLinear"), inputs: [input],
                                  outputs: [quantizedInput.values, quantizedInput.scale, quantizedInput.zeroPoint]))
        }
        let integer = unique(output + "_int32"), cast = unique(output + "_float"), scale = unique(output + "_scale")
        nodes.append(makeNode("MatMulInteger", name: unique(base + "_MatMulInteger"),
                              inputs: [quantizedInput.values, weights.0, quantizedInput.zeroPoint, weights.2], outputs: [integer]))
        var castNode = makeNode("Cast", name: unique(base + "_Cast"), inputs: [integer], outputs: [cast])
        var to = Onnx_AttributeProto()
        to.name = "to"
        to.type = .int
        to.i = Int64(DType.float32.onnxCode)
        castNode.attribute = [to]
        nodes.append(castNode)
        nodes.append(makeNode("Mul", name: unique(base + "_scale_Mul"), inputs: [quantizedInput.scale, weights.1], outputs: [scale]))
        let scaled = bias == nil ? output : unique(output + "_without_bias")
        nodes.append(makeNode("Mul", name: unique(base + "_Mul"), inputs: [cast, scale], outputs: [scaled]))
        if let bias {
            nodes.append(makeNode("Add", name: unique(base + "_bias_Add"), inputs: [scaled, bias], outputs: [output]))
        }
        return nodes
    }

    private func makeNode(_ op: String, name: String, inputs: [String], outputs: [String]) -> Onnx_NodeProto {
        var node = Onnx_NodeProto()
        node.opType = op
        node.name = name
        node.input = inputs
        node.output = outputs
        return node
    }

    /// `base`, or `base_2`, `base_3`… if the graph already uses the name.
    private mutating func unique(_ base: String) -> String {
        var name = base
        var suffix = 2
        while usedNames.contains(name) {
            name = "\(base)_\(suffix)"
            suffix += 1
        }
        usedNames.insert(name)
        return name
    }
}

private func transposed(_ matrix: Tensor) -> Tensor {
    let (rows, columns) = (matrix.shape[0], matrix.shape[1])
    let values = matrix.scalars(as: Float.self)
    return Tensor(shape: [columns, rows], scalars: (0..<rows * columns).map { index in values[(index % rows) * columns + index / rows] })
}
