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
///
/// Static quantization of every Conv with constant float weights, when calibration inputs are given: the float model
/// runs on them once to record each Conv's input and output range (min/max, widened to include 0), then
///
///     y = DequantizeLinear(QLinearConv(QuantizeLinear(x, x_scale, x_zero), x_scale, x_zero, W_q, W_scale, 0,
///                                      y_scale, y_zero, B_q), y_scale, y_zero)
///
/// with uint8 activations, int8 symmetric weights (per tensor or per output channel) and an int32 bias
/// B_q = round(B / (x_scale · W_scale)). A BatchNormalization after a Conv is first folded into its weights, and a
/// Relu or Clip that is a Conv's only reader is folded in (the calibrated output range lies inside the activation's,
/// so saturation does its work). A Conv whose input another quantized Conv produced reads that uint8 tensor
/// directly, with no Dequantize/Quantize pair between them.
public struct ModelQuantizer: Sendable {
    /// How weights are quantized.
    public struct Options: Sendable {
        /// One scale per output column instead of one per matrix.
        public var perChannel: Bool
        /// Weights with fewer elements stay float (tiny products gain nothing and lose accuracy).
        public var minimumWeightElements: Int
        /// Representative inputs by name (samples along the first dimension); with them, Convs are quantized statically.
        public var calibration: [String: Tensor]?

        public init(perChannel: Bool = false, minimumWeightElements: Int = 256, calibration: [String: Tensor]? = nil) {
            self.perChannel = perChannel
            self.minimumWeightElements = minimumWeightElements
            self.calibration = calibration
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
        if let calibration = options.calibration {
            // BatchNormalization after a Conv is folded into its weights first, so the Conv's output range is the
            // normalised one and the activation after it can fold into the QLinearConv.
            if try rewriter.foldBatchNormalization() {
                model.graph = rewriter.graph
                rewriter = GraphRewriter(graph: model.graph, baseDirectory: baseDirectory, options: options)
            }
            let folded = try ONNXModel(serialized: try model.serializedData(), baseDirectory: baseDirectory)
            rewriter.ranges = try Self.ranges(of: rewriter.calibrationTensors(), in: folded.graph, calibration: calibration)
        }
        try rewriter.rewrite(report: &report)
        model.graph = rewriter.graph
        return try model.serializedData()
    }
}

extension ModelQuantizer {
    /// The range (min, max, both widened to include 0) of each named float tensor over the calibration inputs, from
    /// one run of the float model with those tensors added as outputs.
    static func ranges(of names: Set<String>, in graph: Graph, calibration: [String: Tensor]) throws -> [String: (low: Float, high: Float)] {
        var probe = graph
        let inputs = Set(graph.inputs.map(\.name)), outputs = Set(graph.outputs.map(\.name))
        for name in names.sorted() where !inputs.contains(name) && !outputs.contains(name) {
            probe.outputs.append(ValueInfo(name: name, type: .tensor(dtype: .float32, shape: nil)))
        }
        for input in graph.inputs where calibration[input.name] == nil {
            throw QuantizationError("calibration data has no tensor for input '\(input.name)'")
        }
        let results = try Session(graph: probe).run(calibration.mapValues { .tensor($0) })
        var ranges: [String: (low: Float, high: Float)] = [:]
        for name in names {
            guard let tensor = inputs.contains(name) ? calibration[name] : results[name]?.tensor, tensor.dtype.isFloatingPoint else { continue }
            let values = try tensor.converted(to: .float32).scalars(as: Float.self).filter(\.isFinite)
            ranges[name] = (min(0, values.min() ?? 0), max(0, values.max() ?? 0))
        }
        return ranges
    }
}

extension ModelQuantizer {
    /// 1 − cos(a, b) over all elements: how far a quantized model's outputs are from the float model's (0: same
    /// direction). What `serval quantize` reports and the pipeline's `max_cosine_distance` bounds.
    public static func cosineDistance(_ a: [Double], _ b: [Double]) -> Double {
        let dot = zip(a, b).reduce(0) { $0 + $1.0 * $1.1 }
        let norms = (a.reduce(0) { $0 + $1 * $1 }).squareRoot() * (b.reduce(0) { $0 + $1 * $1 }).squareRoot()
        return 1 - dot / max(norms, .leastNormalMagnitude)
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
    /// Calibrated ranges of Conv inputs and outputs (static quantization); empty without calibration data.
    var ranges: [String: (low: Float, high: Float)] = [:]
    /// uint8 forms of float tensors already made: by a QuantizeLinear, or as a quantized Conv's own output.
    private var staticTensors: [String: (values: String, scale: String, zeroPoint: String)] = [:]
    /// Relu and Clip nodes folded into the Conv before them, by output name.
    private var foldedActivations: Set<String> = []
    /// Names of the DequantizeLinear nodes added after quantized Convs.
    private var dequantizers: Set<String> = []

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
            if node.opType == "Relu" || node.opType == "Clip", let output = node.output.first, foldedActivations.contains(output) { continue }
            if Graph.canonicalDomain(node.domain).isEmpty, node.opType == "Conv", !ranges.isEmpty {
                if let replacement = try convolution(node, added: &added, report: &report) {
                    nodes += replacement
                    report.quantized.append(label + " (static)")
                } else {
                    nodes.append(node)
                }
                continue
            }
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
        // A Dequantize whose float output nothing reads any more (the next Conv took the uint8 tensor) goes.
        let graphOutputs = Set(graph.output.map(\.name))
        var reads: [String: Int] = [:]
        for node in nodes { for input in node.input { reads[input, default: 0] += 1 } }
        graph.node = nodes.filter { node in
            !(dequantizers.contains(node.name) && reads[node.output[0]] == nil && !graphOutputs.contains(node.output[0]))
        }
        // Initializers nothing reads any more (weights now stored as int8, folded Clip bounds) go.
        var read = graphOutputs
        for node in graph.node { read.formUnion(node.input) }
        let kept = (graph.initializer + added).filter { read.contains($0.name) && !removedInitializers.contains($0.name) }
        dropInputs(namingDroppedInitializers: Set(graph.initializer.map(\.name)).subtracting(kept.map(\.name)))
        graph.initializer = kept
    }

    /// Older exporters (IR < 4) also list every initializer as a graph input; a dropped initializer's input entry
    /// must go with it, or the rewritten model would ask callers for the old float weight.
    private mutating func dropInputs(namingDroppedInitializers dropped: Set<String>) {
        graph.input = graph.input.filter { !dropped.contains($0.name) }
    }

    /// Tensors whose ranges static quantization needs: each Conv's input, and its output (or its Relu's).
    func calibrationTensors() -> Set<String> {
        var names: Set<String> = []
        for node in graph.node where Graph.canonicalDomain(node.domain).isEmpty && node.opType == "Conv" && node.input.count >= 2 {
            guard initializerIndex[node.input[1]] != nil else { continue }
            names.insert(node.input[0])
            names.insert(node.output[0])
            if let activation = foldableActivation(after: node) { names.insert(activation.output[0]) }
        }
        return names
    }

    /// The Relu or Clip that is the only reader of a Conv's output (which is not a graph output), if there is one:
    /// its output range, measured on the calibration data, makes saturation do its work.
    private func foldableActivation(after node: Onnx_NodeProto) -> Onnx_NodeProto? {
        guard let output = node.output.first, readers[output] == 1, !graph.output.contains(where: { $0.name == output }) else { return nil }
        return graph.node.first {
            $0.input.first == output && ($0.opType == "Relu" || $0.opType == "Clip") && Graph.canonicalDomain($0.domain).isEmpty
        }
    }

    /// Folds each BatchNormalization whose input is a Conv's only output into that Conv's weights and bias:
    /// W'[m] = W[m] · γ[m] / √(σ²[m] + ε), B'[m] = (B[m] − μ[m]) · γ[m] / √(σ²[m] + ε) + β[m]. True if anything changed.
    mutating func foldBatchNormalization() throws -> Bool {
        let producers = Dictionary(graph.node.enumerated().flatMap { index, node in node.output.map { ($0, index) } }, uniquingKeysWith: { first, _ in first })
        let outputs = Set(graph.output.map(\.name))
        var removed = Set<Int>()
        var added: [Onnx_TensorProto] = []
        for (index, norm) in graph.node.enumerated() where norm.opType == "BatchNormalization" && Graph.canonicalDomain(norm.domain).isEmpty {
            guard norm.input.count == 5, norm.output.count == 1 || norm.output.dropFirst().allSatisfy(\.isEmpty),
                  let convIndex = producers[norm.input[0]], graph.node[convIndex].opType == "Conv",
                  readers[norm.input[0]] == 1, !outputs.contains(norm.input[0]) else { continue }
            var conv = graph.node[convIndex]
            let parameters = try norm.input[1...4].map { try constant($0) }
            guard let weights = try constant(conv.input[1]), weights.dtype == .float32,
                  parameters.allSatisfy({ $0?.dtype == .float32 && $0?.count == weights.shape[0] }) else { continue }
            let gamma = parameters[0]!.scalars(as: Float.self), beta = parameters[1]!.scalars(as: Float.self)
            let mean = parameters[2]!.scalars(as: Float.self), variance = parameters[3]!.scalars(as: Float.self)
            let epsilon = norm.attribute.first { $0.name == "epsilon" }?.f ?? 1e-5
            let filters = weights.shape[0], depth = weights.count / max(filters, 1)
            let factors = (0..<filters).map { gamma[$0] / (variance[$0] + epsilon).squareRoot() }
            var bias = [Float](repeating: 0, count: filters)
            if conv.input.count > 2, !conv.input[2].isEmpty {
                guard let given = try constant(conv.input[2]), given.dtype == .float32, given.count == filters else { continue }
                bias = given.scalars(as: Float.self)
            }
            let values = weights.scalars(as: Float.self)
            let scaledWeights = values.indices.map { values[$0] * factors[$0 / depth] }
            let foldedBias = (0..<filters).map { (bias[$0] - mean[$0]) * factors[$0] + beta[$0] }
            let names = (unique(conv.input[1] + "_folded"), unique(norm.output[0] + "_bias"))
            added.append(TensorEncoding.proto(Tensor(shape: weights.shape, scalars: scaledWeights), name: names.0))
            added.append(TensorEncoding.proto(Tensor(shape: [filters], scalars: foldedBias), name: names.1))
            conv.input = [conv.input[0], names.0, names.1]
            conv.output = [norm.output[0]]
            graph.node[convIndex] = conv
            removed.insert(index)
        }
        guard !removed.isEmpty else { return false }
        graph.node = graph.node.enumerated().filter { !removed.contains($0.offset) }.map(\.element)
        graph.initializer += added
        // Initializers nothing reads any more (the float weights and normalisation parameters) go.
        var read = Set<String>()
        for node in graph.node { read.formUnion(node.input) }
        let kept = graph.initializer.filter { read.contains($0.name) }
        dropInputs(namingDroppedInitializers: Set(graph.initializer.map(\.name)).subtracting(kept.map(\.name)))
        graph.initializer = kept
        return true
    }

    /// Scale and zero point of a uint8 tensor covering `range` (asymmetric, 0 exactly representable).
    private static func activationParameters(_ range: (low: Float, high: Float)) -> (scale: Float, zeroPoint: UInt8) {
        let scale = range.high > range.low ? (range.high - range.low) / 255 : 1
        let zero = min(max((-range.low / scale).rounded(.toNearestOrEven), 0), 255)
        return (scale, UInt8(zero))
    }

    /// Initializers for a uint8 tensor's scale and zero point.
    private mutating func activationInitializers(for name: String, _ range: (low: Float, high: Float), added: inout [Onnx_TensorProto]) -> (scale: String, zeroPoint: String) {
        let (scale, zero) = Self.activationParameters(range)
        let names = (unique(name + "_scale"), unique(name + "_zero_point"))
        added.append(TensorEncoding.proto(.scalar(scale), name: names.0))
        added.append(TensorEncoding.proto(.scalar(zero), name: names.1))
        return names
    }

    /// QLinearConv in place of Conv (and the Relu folded into it), or nil when the Conv stays float.
    private mutating func convolution(_ node: Onnx_NodeProto, added: inout [Onnx_TensorProto], report: inout ModelQuantizer.Report) throws -> [Onnx_NodeProto]? {
        let label = "Conv \(node.name.isEmpty ? node.output.first ?? "" : node.name)"
        guard node.input.count >= 2, let weights = try constant(node.input[1]), weights.dtype == .float32, weights.rank >= 3 else {
            report.skipped.append((label, "its weight is not a constant float tensor"))
            return nil
        }
        let activation = foldableActivation(after: node)
        let input = node.input[0], output = activation?.output[0] ?? node.output[0]
        guard let inputRange = ranges[input], let outputRange = ranges[output] else {
            report.skipped.append((label, "no calibration range for its input or output"))
            return nil
        }
        var nodes: [Onnx_NodeProto] = []
        // x as uint8: reuse what an earlier Conv produced, else quantize it here.
        let x: (values: String, scale: String, zeroPoint: String)
        if let existing = staticTensors[input] {
            x = existing
        } else {
            let (scale, zeroPoint) = activationInitializers(for: input, inputRange, added: &added)
            x = (unique(input + "_quantized"), scale, zeroPoint)
            nodes.append(makeNode("QuantizeLinear", name: unique(input + "_quantize"), inputs: [input, scale, zeroPoint], outputs: [x.values]))
            staticTensors[input] = x
        }
        // Weights: int8 symmetric, per output channel or per tensor; bias as int32 at scale x_scale · w_scale.
        let filters = weights.shape[0], depth = weights.count / max(filters, 1)
        let (quantized, scales) = symmetricInt8(weights.scalars(as: Float.self), groups: options.perChannel ? filters : 1) { $0 / depth }
        let weightName = node.input[1]
        let w = (unique(weightName + "_quantized"), unique(weightName + "_scale"), unique(weightName + "_zero_point"))
        let scaleShape = options.perChannel ? [filters] : []
        added.append(TensorEncoding.proto(Tensor(shape: weights.shape, scalars: quantized), name: w.0))
        added.append(TensorEncoding.proto(Tensor(shape: scaleShape, scalars: scales), name: w.1))
        added.append(TensorEncoding.proto(Tensor(zeros: .int8, shape: scaleShape), name: w.2))
        report.floatWeightBytes += weights.count * 4
        report.int8WeightBytes += weights.count
        if readers[weightName] == 1 { removedInitializers.insert(weightName) }
        let xScale = Self.activationParameters(inputRange).scale
        var inputs = [x.values, x.scale, x.zeroPoint, w.0, w.1, w.2]
        let yParameters = activationInitializers(for: output, outputRange, added: &added)
        inputs += [yParameters.scale, yParameters.zeroPoint]
        if node.input.count > 2, !node.input[2].isEmpty {
            guard let bias = try constant(node.input[2]), bias.dtype == .float32, bias.count == filters else {
                report.skipped.append((label, "its bias is not a constant float vector"))
                return nil
            }
            let biasValues = bias.scalars(as: Float.self)
            let quantizedBias = (0..<filters).map { m -> Int32 in
                let q = (Double(biasValues[m]) / (Double(xScale) * Double(scales[options.perChannel ? m : 0]))).rounded(.toNearestOrEven)
                return Int32(min(max(q, Double(Int32.min)), Double(Int32.max)))
            }
            let biasName = unique(node.input[2] + "_quantized")
            added.append(TensorEncoding.proto(Tensor(shape: [filters], scalars: quantizedBias), name: biasName))
            inputs.append(biasName)
            if readers[node.input[2]] == 1 { removedInitializers.insert(node.input[2]) }
        }
        let yValues = unique(output + "_quantized")
        var conv = makeNode("QLinearConv", name: unique((node.name.isEmpty ? output : node.name) + "_quantized"), inputs: inputs, outputs: [yValues])
        conv.attribute = node.attribute
        nodes.append(conv)
        let dequantizer = unique(output + "_dequantize")
        dequantizers.insert(dequantizer)
        nodes.append(makeNode("DequantizeLinear", name: dequantizer, inputs: [yValues, yParameters.scale, yParameters.zeroPoint], outputs: [output]))
        staticTensors[output] = (yValues, yParameters.scale, yParameters.zeroPoint)
        if let activation { foldedActivations.insert(activation.output[0]) }
        return nodes
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
        let (quantized, scales) = symmetricInt8(weights.scalars(as: Float.self), groups: options.perChannel ? n : 1) { $0 % n }
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

/// Symmetric int8 quantization (zero point 0, range ±127) with one scale per group: `group(i)` names element i's
/// group when there are several (an output column of a MatMul weight, a filter of a Conv weight).
private func symmetricInt8(_ values: [Float], groups: Int, group: (Int) -> Int) -> (values: [Int8], scales: [Float]) {
    let groupOf = values.indices.map { groups == 1 ? 0 : group($0) }
    var largest = [Float](repeating: 0, count: groups)
    for index in values.indices { largest[groupOf[index]] = max(largest[groupOf[index]], abs(values[index])) }
    let scales = largest.map { $0 > 0 && $0.isFinite ? $0 / 127 : 1 }
    let quantized = values.indices.map { index -> Int8 in
        let q = (values[index] / scales[groupOf[index]]).rounded(.toNearestOrEven)
        return q.isNaN ? 0 : Int8(min(max(q, -127), 127))
    }
    return (quantized, scales)
}

private func transposed(_ matrix: Tensor) -> Tensor {
    let (rows, columns) = (matrix.shape[0], matrix.shape[1])
    let values = matrix.scalars(as: Float.self)
    return Tensor(shape: [columns, rows], scalars: (0..<rows * columns).map { index in values[(index % rows) * columns + index / rows] })
}
