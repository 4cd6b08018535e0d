import CServalKernels
import ServalTensor
import Synchronization

/// ONNX QLinearConv: y = saturate(round((Σ (x − x₀)(w − w₀[m]) + B[m]) · x_scale · w_scale[m] / y_scale) + y₀),
/// and ConvInteger: y = Σ (x − x₀)(w − w₀[m]) as int32.
///
/// Each image and group is one integer product on the packed int8 kernel: the input patches as rows
/// (positions × channels·taps, uint8, padding filled with x₀) times the filters as columns (packed once at load
/// when the weights are constant), then zero points removed, and for QLinearConv bias added and requantized per
/// output channel.
struct QLinearConvKernel: Kernel {
    /// Where the operands sit among the node's inputs.
    struct Layout: Sendable {
        let x: Int, xZero: Int, w: Int, wZero: Int
        /// QLinearConv's scales, output zero point and bias; nil for ConvInteger.
        let requantize: (xScale: Int, wScale: Int, yScale: Int, yZero: Int, bias: Int)?

        static let qlinear = Layout(x: 0, xZero: 2, w: 3, wZero: 5, requantize: (1, 4, 6, 7, 8))
        static let integer = Layout(x: 0, xZero: 2, w: 1, wZero: 3, requantize: nil)
    }

    let layout: Layout
    let attributes: ConvAttributes
    var group: Int { attributes.group }
    /// Filters of each group as a K×N matrix (K = channels per group × taps, N = filters per group), when constant.
    let packedFilters: [PackedInt8Matrix]?
    /// Patch offsets per input spatial shape, computed on first use (a model sees few shapes).
    let patchOffsets = PatchOffsetCache()

    init(_ build: KernelBuildContext, layout: Layout) throws {
        self.layout = layout
        attributes = try ConvAttributes(build)
        let group = attributes.group
        if let w = build.constant(layout.w), build.hasInput(layout.wZero) ? build.constant(layout.wZero) != nil : true {
            packedFilters = try Self.pack(w, zeroPoint: build.constant(layout.wZero), group: group)
        } else {
            packedFilters = nil
        }
    }

    /// W [M, C/group, taps...] → per group the [C/group·taps, M/group] matrix the kernel multiplies by.
    static func pack(_ w: Tensor, zeroPoint: Tensor?, group: Int) throws -> [PackedInt8Matrix] {
        guard w.rank >= 3, w.dtype == .int8 || w.dtype == .uint8 else { throw KernelError("QLinearConv weights must be int8 or uint8 of rank ≥ 3, got \(w.dtype) \(w.shape)") }
        let filters = w.shape[0], depth = w.count / max(filters, 1)
        guard group > 0, filters % group == 0 else { throw KernelError("QLinearConv has \(filters) filters for \(group) groups") }
        let perGroup = filters / group
        let zeros = try zeroPoint?.int64s() ?? [0]
        guard zeros.count == 1 || zeros.count == filters else {
            throw KernelError("QLinearConv w_zero_point has \(zeros.count) values for \(filters) filters")
        }
        return try (0..<group).map { g in
            let transposed: Tensor
            if w.dtype == .int8 {
                let values = w.scalars(as: Int8.self)
                transposed = Tensor(shape: [depth, perGroup], scalars: (0..<depth * perGroup).map { values[(g * perGroup + $0 % perGroup) * depth + $0 / perGroup] })
            } else {
                let values = w.scalars(as: UInt8.self)
                transposed = Tensor(shape: [depth, perGroup], scalars: (0..<depth * perGroup).map { values[(g * perGroup + $0 % perGroup) * depth + $0 / perGroup] })
            }
            let groupZeros = zeros.count == 1 ? [zeros[0]] : Array(zeros[(g * perGroup)..<((g + 1) * perGroup)])
            let zeroTensor = try Tensor(shape: [groupZeros.count], scalars: groupZeros).converted(to: w.dtype)
            return try PackedInt8Matrix(transposed, zeroPoint: zeroTensor)
        }
    }

    func run(_ inputs: [Value?], _ context: RunContext) throws -> [Value] {
        let xIn = try inputs.tensor(layout.x), w = try inputs.tensor(layout.w)
        guard xIn.rank >= 3, w.rank == xIn.rank else { throw KernelError("input \(xIn.shape) and weights \(w.shape) must have the same rank ≥ 3") }
        let batch = xIn.shape[0], channels = xIn.shape[1], filters = w.shape[0]
        guard channels % group == 0, filters % group == 0, w.shape[1] == channels / group else {
            throw KernelError("weights \(w.shape) do not match \(channels) input channels in \(group) groups")
        }
        let matrices = try packedFilters ?? Self.pack(w, zeroPoint: try inputs.optionalTensor(layout.wZero), group: group)

        // x as uint8 with one int32 zero point (int8 input shifted by 128).
        let x = try UnsignedOperand(xIn, zeroPoint: try inputs.optionalTensor(layout.xZero), rows: 1, context)
        let xZero = x.zeroPoints[0]

        let spatial = Array(xIn.shape.dropFirst(2))
        let geometry = try attributes.geometry(input: spatial, weights: w.shape)
        let positions = geometry.outputCount, taps = geometry.kernelCount, plane = geometry.inputCount
        let groupChannels = channels / group, groupFilters = filters / group, depth = groupChannels * taps
        let offsets = patchOffsets.offsets(for: geometry)
        // Per output channel: what turns a raw sum into the exact Σ(x − x₀)(w − w₀) (+ bias), and the requantizing factor.
        var bias = [Int64](repeating: 0, count: filters)
        var multipliers = [Double](repeating: 1, count: filters)
        var outputType = DType.int32, yZeroValue: Int64 = 0, saturation: (low: Double, high: Double) = (0, 0)
        if let requantize = layout.requantize {
            if let given = try inputs.optionalTensor(requantize.bias)?.int64s() {
                guard given.count == filters else { throw KernelError("QLinearConv bias has \(given.count) values for \(filters) filters") }
                bias = given
            }
            let xScale = try inputs.tensor(requantize.xScale).doubles(), wScales = try inputs.tensor(requantize.wScale).doubles()
            let yScale = try inputs.tensor(requantize.yScale).doubles(), yZero = try inputs.tensor(requantize.yZero)
            guard xScale.count == 1, yScale.count == 1 else { throw KernelError("QLinearConv x_scale and y_scale must be scalars") }
            guard wScales.count == 1 || wScales.count == filters else { throw KernelError("QLinearConv w_scale has \(wScales.count) values for \(filters) filters") }
            guard yZero.dtype == .uint8 || yZero.dtype == .int8 else { throw KernelError("QLinearConv y_zero_point must be uint8 or int8, got \(yZero.dtype)") }
            multipliers = (0..<filters).map { xScale[0] * wScales[wScales.count == 1 ? 0 : $0] / yScale[0] }
            outputType = yZero.dtype
            yZeroValue = try yZero.int64s().first ?? 0
            saturation = try quantizedRange(yZero.dtype)
        }

        var output = context.allocate(outputType, [batch, filters] + geometry.outputSize)
        var patches = context.allocate(.uint8, [positions, depth])
        var sums = context.allocate(.int32, [positions, groupFilters])
        var rowSums = [Int32](repeating: 0, count: positions)
        try output.withUnsafeMutableRawBytes { outputBytes in
            try patches.withUnsafeMutableBufferPointer(as: UInt8.self) { patchBuffer in
                try sums.withUnsafeMutableBufferPointer(as: Int32.self) { sumBuffer in
                    try x.values.withUnsafeBufferPointer(as: UInt8.self) { xBuffer in
                        try offsets.withUnsafeBufferPointer { offsetBuffer in
                            try rowSums.withUnsafeMutableBufferPointer { rowSumBuffer in
                                let a = patchBuffer.baseAddress!, c = sumBuffer.baseAddress!, source = xBuffer.baseAddress!
                                let tapOffsets = offsetBuffer.baseAddress!, rowSum = rowSumBuffer.baseAddress!
                                let padding = UInt8(clamping: xZero)
                                for image in 0..<batch {
                                    for g in 0..<group {
                                        let matrix = matrices[g]
                                        guard matrix.k == depth, matrix.n == groupFilters else { throw KernelError("weights do not match the input") }
                                        // Patches: row p holds channel-major taps of output position p; padding reads as x₀.
                                        let channelBase = (image * channels + g * groupChannels) * plane
                                        context.parallelRanges(positions, grain: max(1, 16_384 / max(depth, 1))) { range in
                                            for p in range {
                                                let row = a + p * depth
                                                for channel in 0..<groupChannels {
                                                    let input = source + channelBase + channel * plane, target = row + channel * taps
                                                    for tap in 0..<taps {
                                                        let offset = Int(tapOffsets[p * taps + tap])
                                                        target[tap] = offset < 0 ? padding : input[offset]
                                                    }
                                                }
                                            }
                                        }
                                        let slices = columnSlices(groupFilters, threads: context.threads)
                                        matrix.packed.withUnsafeBufferPointer { packed in
                                            context.parallelFor(slices.count) { slice in
                                                let (start, end) = slices[slice]
                                                serval_qgemm_u8s8(positions, end - start, depth, a, depth,
                                                                  serval_qgemm_panel(packed.baseAddress!, depth, start), c + start, groupFilters)
                                            }
                                        }
                                        if matrix.hasZeroPoints {
                                            for p in 0..<positions {
                                                var sum: Int32 = 0
                                                for i in 0..<depth { sum &+= Int32(a[p * depth + i]) }
                                                rowSum[p] = sum
                                            }
                                        }
                                        // Per filter: zero points out, bias in, then requantize (or keep int32) into NCHW.
                                        let x0 = Int64(xZero)
                                        let constants = (0..<groupFilters).map { m -> Int64 in
                                            let w0 = Int64(matrix.zeroPoints[m]), columnSum = Int64(matrix.columnSums[m])
                                            return Int64(depth) * x0 * w0 - x0 * columnSum + bias[g * groupFilters + m]
                                        }
                                        let hasZeros = matrix.hasZeroPoints
                                        context.parallelRanges(groupFilters, grain: max(1, 16_384 / max(positions, 1))) { range in
                                            for m in range {
                                                let filter = g * groupFilters + m, w0 = Int64(matrix.zeroPoints[m]), constant = constants[m]
                                                let base = (image * filters + filter) * positions
                                                func total(_ p: Int) -> Int64 {
                                                    let sum = Int64(c[p * groupFilters + m]) + constant
                                                    return hasZeros ? sum - w0 * Int64(rowSum[p]) : sum
                                                }
                                                if outputType == .int32 {
                                                    let target = outputBytes.baseAddress!.assumingMemoryBound(to: Int32.self) + base
                                                    for p in 0..<positions { target[p] = Int32(truncatingIfNeeded: total(p)) }
                                                } else {
                                                    let target = outputBytes.baseAddress!.assumingMemoryBound(to: UInt8.self) + base
                                                    let multiplier = multipliers[filter], zero = Double(yZeroValue)
                                                    let (low, high) = saturation
                                                    for p in 0..<positions {
                                                        let q = min(max((Double(total(p)) * multiplier).rounded(.toNearestOrEven) + zero, low), high)
                                                        target[p] = UInt8(truncatingIfNeeded: Int32(q))
                                                    }
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        return [.tensor(output)]
    }
}

/// Input offsets of every (output position, tap) pair, laid out position-major so building one patch row reads one
/// contiguous run; -1 marks padding. Cached per input spatial shape and kernel size.
final class PatchOffsetCache: Sendable {
    private let cache = Mutex<[[Int]: [Int32]]>([:])

    func offsets(for geometry: SpatialGeometry) -> [Int32] {
        let key = geometry.inputSize + geometry.kernel  // strides, dilations and pads are fixed per node
        if let known = cache.withLock({ $0[key] }) { return known }
        let byTap = geometry.gatherOffsets()
        let positions = geometry.outputCount, taps = geometry.kernelCount
        var byPosition = [Int32](repeating: -1, count: byTap.count)
        for tap in 0..<taps { for p in 0..<positions { byPosition[p * taps + tap] = byTap[tap * positions + p] } }
        cache.withLock { $0[key] = byPosition }
        return byPosition
    }
}
