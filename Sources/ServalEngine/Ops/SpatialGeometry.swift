import ServalTensor

/// Output sizes and padding of a sliding window over the spatial axes (Conv, pooling), per the ONNX
/// definitions of `pads`, `strides`, `dilations`, `auto_pad` and pooling's `ceil_mode`.
struct SpatialGeometry {
    let inputSize: [Int]
    let kernel: [Int]
    let strides: [Int]
    let dilations: [Int]
    let padBegin: [Int]
    let padEnd: [Int]
    let outputSize: [Int]

    init(
        input: [Int], kernel: [Int], strides: [Int]?, dilations: [Int]?, pads: [Int]?, autoPad: String,
        ceilMode: Bool = false
    ) throws {
        let rank = input.count
        guard kernel.count == rank else { throw KernelError("kernel has \(kernel.count) dims, input has \(rank) spatial dims") }
        let strides = strides ?? Array(repeating: 1, count: rank)
        let dilations = dilations ?? Array(repeating: 1, count: rank)
        guard strides.count == rank, dilations.count == rank else { throw KernelError("strides/dilations must have \(rank) values") }
        var begin = Array(pads?.prefix(rank) ?? [])
        var end = Array(pads?.dropFirst(rank) ?? [])
        if begin.count != rank || end.count != rank { begin = Array(repeating: 0, count: rank); end = begin }
        var output = Array(repeating: 0, count: rank)
        for axis in 0..<rank {
            let extent = dilations[axis] * (kernel[axis] - 1) + 1
            switch autoPad {
            case "SAME_UPPER", "SAME_LOWER":
                let out = (input[axis] + strides[axis] - 1) / strides[axis]
                let total = max(0, (out - 1) * strides[axis] + extent - input[axis])
                let small = total / 2
                begin[axis] = autoPad == "SAME_UPPER" ? small : total - small
                end[axis] = total - begin[axis]
                output[axis] = out
            case "VALID":
                begin[axis] = 0
                end[axis] = 0
                output[axis] = input[axis] >= extent ? (input[axis] - extent) / strides[axis] + 1 : 0
            default:
                let span = input[axis] + begin[axis] + end[axis] - extent
                if ceilMode {
                    var out = span >= 0 ? (span + strides[axis] - 1) / strides[axis] + 1 : 0
                    // The last window must start inside the input or the left padding.
                    if out > 0 && (out - 1) * strides[axis] >= input[axis] + begin[axis] { out -= 1 }
                    output[axis] = out
                } else {
                    output[axis] = span >= 0 ? span / strides[axis] + 1 : 0
                }
            }
        }
        self.inputSize = input
        self.kernel = kernel
        self.strides = strides
        self.dilations = dilations
        self.padBegin = begin
        self.padEnd = end
        self.outputSize = output
    }

    var rank: Int { inputSize.count }
    var kernelCount: Int { kernel.reduce(1, *) }
    var outputCount: Int { outputSize.reduce(1, *) }
    var inputCount: Int { inputSize.reduce(1, *) }

    /// For every (kernel tap, output position) pair, the flat input offset or -1 (padding); row-major over both.
    func gatherOffsets() -> [Int32] {
        Self.tapOffsets(positions: outputSize, kernel: kernel, strides: strides, dilations: dilations, padBegin: padBegin, target: inputSize)
    }

    /// For every (kernel tap, position) pair, the flat offset into `target` of coordinate
    /// `position·stride − padBegin + tap·dilation` per axis, or -1 when it falls outside `target`.
    /// Conv reads the input this way (positions = output); ConvTranspose scatters into its output (positions = input).
    static func tapOffsets(positions: [Int], kernel: [Int], strides: [Int], dilations: [Int], padBegin: [Int], target: [Int]) -> [Int32] {
        let rank = positions.count
        let taps = kernel.reduce(1, *), count = positions.reduce(1, *)
        let targetStrides = Shape.strides(target), kernelStrides = Shape.strides(kernel), positionStrides = Shape.strides(positions)
        var offsets = [Int32](repeating: -1, count: taps * count)
        for tap in 0..<taps {
            for position in 0..<count {
                var offset = 0
                var valid = true
                for axis in 0..<rank {
                    let k = (tap / kernelStrides[axis]) % kernel[axis]
                    let p = (position / positionStrides[axis]) % positions[axis]
                    let coordinate = p * strides[axis] - padBegin[axis] + k * dilations[axis]
                    if coordinate < 0 || coordinate >= target[axis] { valid = false; break }
                    offset += coordinate * targetStrides[axis]
                }
                if valid { offsets[tap * count + position] = Int32(offset) }
            }
        }
        return offsets
    }
}

extension KernelBuildContext {
    /// `auto_pad`, treating the legacy empty string as NOTSET.
    func autoPad() throws -> String {
        let value = try string("auto_pad", default: "NOTSET")
        return value.isEmpty ? "NOTSET" : value
    }
}
