import ServalTensor

/// ONNX Conv (any number of spatial axes, groups, strides, dilations, pads, auto_pad) as im2col + SGEMM,
/// with a direct kernel for depthwise convolution and no im2col for 1×1 stride-1 convolutions.
/// `serval:FusedConv` is the same with an activation applied in the output pass.
struct ConvKernel: Kernel {
    let attributes: ConvAttributes
    var group: Int { attributes.group }
    let activation: UnaryOp?
    /// Weights [M, C/group, k...] as float32, read once at load when constant.
    let packedWeights: Tensor?
    let packedBias: Tensor?

    func run(_ inputs: [Value?], _ context: RunContext) throws -> [Value] {
        let xIn = try inputs.tensor(0)
        let x = try xIn.converted(to: .float32)
        let w = try packedWeights ?? inputs.tensor(1).converted(to: .float32)
        let bias = try packedBias ?? inputs.optionalTensor(2)?.converted(to: .float32)
        guard x.rank >= 3, w.rank == x.rank else {
            throw KernelError("Conv input \(x.shape) and weights \(w.shape) must have the same rank ≥ 3")
        }
        let batch = x.shape[0], channels = x.shape[1], filters = w.shape[0]
        guard channels % group == 0, filters % group == 0, w.shape[1] == channels / group else {
            throw KernelError("Conv weights \(w.shape) do not match \(channels) input channels in \(group) groups")
        }
        let spatial = Array(x.shape.dropFirst(2))
        let geometry = try attributes.geometry(input: spatial, weights: w.shape)
        if let bias, bias.count != filters { throw KernelError("Conv bias has \(bias.count) values for \(filters) filters") }
        let outputShape = [batch, filters] + geometry.outputSize
        var out = context.allocate(.float32, outputShape)
        let positions = geometry.outputCount
        let groupChannels = channels / group, groupFilters = filters / group
        let taps = geometry.kernelCount
        let rows = groupChannels * taps
        let inputPlane = geometry.inputCount
        let pointwise = taps == 1 && geometry.strides.allSatisfy { $0 == 1 } && geometry.padBegin.allSatisfy { $0 == 0 }
            && geometry.padEnd.allSatisfy { $0 == 0 }
        let depthwise = group == channels && groupFilters == 1 && geometry.rank == 2
        let planar = geometry.rank == 2
        let offsets = (pointwise || depthwise || planar) ? [] : geometry.gatherOffsets()
        let workers = min(context.threads, batch)
        var columns = (pointwise || depthwise) ? [] : (0..<max(workers, 1)).map { _ in context.allocate(.float32, [rows, positions]) }

        x.withUnsafeBufferPointer(as: Float.self) { px in
            w.withUnsafeBufferPointer(as: Float.self) { pw in
                out.withUnsafeMutableBufferPointer(as: Float.self) { po in
                    let input = px.baseAddress!, weights = pw.baseAddress!, output = po.baseAddress!
                    let columnPointers = columns.indices.map { index in
                        columns[index].withUnsafeMutableBufferPointer(as: Float.self) { $0.baseAddress! }
                    }
                    let body: (Int) -> Void = { image in
                        let source = input + image * channels * inputPlane
                        let target = output + image * filters * positions
                        if depthwise && workers <= 1 {
                            // One image at a time: its channels run in parallel.
                            context.parallelRanges(channels, grain: max(1, 16_384 / max(positions, 1))) { range in
                                depthwiseConv2D(source + range.lowerBound * inputPlane, weights + range.lowerBound * taps,
                                                target + range.lowerBound * positions, channels: range.count, geometry: geometry)
                            }
                            return
                        }
                        if depthwise {
                            depthwiseConv2D(source, weights, target, channels: channels, geometry: geometry)
                            return
                        }
                        for g in 0..<group {
                            let groupSource = source + g * groupChannels * inputPlane
                            let b: UnsafePointer<Float>
                            if pointwise {
                                b = UnsafePointer(groupSource)
                            } else {
                                let column = columnPointers[workers > 1 ? image % workers : 0]
                                if planar && workers <= 1 {
                                    // One image at a time: its channels' columns are filled in parallel instead.
                                    let channelRows = taps * positions
                                    context.parallelRanges(groupChannels, grain: max(1, 32_768 / max(channelRows, 1))) { range in
                                        im2col2D(groupSource + range.lowerBound * inputPlane, column + range.lowerBound * channelRows,
                                                 channels: range.count, geometry: geometry)
                                    }
                                } else if planar {
                                    im2col2D(groupSource, column, channels: groupChannels, geometry: geometry)
                                } else {
                                    gatherColumns(groupSource, column, offsets: offsets, channels: groupChannels,
                                                  taps: taps, positions: positions, inputPlane: inputPlane)
                                }
                                b = UnsafePointer(column)
                            }
                            context.sgemm(transA: false, transB: false, m: groupFilters, n: positions, k: rows,
                                       a: weights + g * groupFilters * rows, lda: rows, b: b, ldb: positions,
                                       c: target + g * groupFilters * positions, ldc: positions)
                        }
                    }
                    if workers > 1 && !pointwise {
                        // Each worker owns one column buffer: images are assigned round-robin by index % workers.
                        Parallel.forEach(workers, threads: workers) { worker in
                            var image = worker
                            while image < batch { body(image); image += workers }
                        }
                    } else {
                        for image in 0..<batch { body(image) }
                    }
                    addBiasAndActivate(output, bias: bias, activation: activation, planes: batch, channels: filters, planeSize: positions, context)
                }
            }
        }
        for index in columns.indices { context.pool.recycle(&columns[index]) }
        return [.tensor(xIn.dtype == .float32 ? out : try out.converted(to: xIn.dtype))]
    }
}

/// im2col: row `c * taps + tap`, column `position` ← input[c][offset] or 0 in padding.
@inline(__always)
func gatherColumns(
    _ source: UnsafePointer<Float>, _ column: UnsafeMutablePointer<Float>, offsets: [Int32],
    channels: Int, taps: Int, positions: Int, inputPlane: Int
) {
    offsets.withUnsafeBufferPointer { table in
        let table = table.baseAddress!
        for c in 0..<channels {
            let plane = source + c * inputPlane
            for tap in 0..<taps {
                let row = column + (c * taps + tap) * positions
                let indices = table + tap * positions
                for p in 0..<positions {
                    let offset = Int(indices[p])
                    row[p] = offset >= 0 ? plane[offset] : 0
                }
            }
        }
    }
}

/// im2col for two spatial axes, without lookup tables.
func im2col2D(_ source: UnsafePointer<Float>, _ column: UnsafeMutablePointer<Float>, channels: Int, geometry: SpatialGeometry) {
    let (height, width) = (geometry.inputSize[0], geometry.inputSize[1])
    let (outHeight, outWidth) = (geometry.outputSize[0], geometry.outputSize[1])
    let (kh, kw) = (geometry.kernel[0], geometry.kernel[1])
    let (sh, sw) = (geometry.strides[0], geometry.strides[1])
    let (dh, dw) = (geometry.dilations[0], geometry.dilations[1])
    let (ph, pw) = (geometry.padBegin[0], geometry.padBegin[1])
    var row = column
    for c in 0..<channels {
        let plane = source + c * height * width
        for i in 0..<kh {
            for j in 0..<kw {
                let shift = j * dw - pw
                var first = 0
                if shift < 0 { first = min(outWidth, (-shift + sw - 1) / sw) }
                let last = max(first, min(outWidth, (width - 1 - shift) >= 0 ? (width - 1 - shift) / sw + 1 : 0))
                for oh in 0..<outHeight {
                    let target = row + oh * outWidth
                    let ih = oh * sh - ph + i * dh
                    if ih < 0 || ih >= height {
                        for ow in 0..<outWidth { target[ow] = 0 }
                        continue
                    }
                    let inputRow = plane + ih * width + shift
                    for ow in 0..<first { target[ow] = 0 }
                    if sw == 1 {
                        for ow in first..<last { target[ow] = inputRow[ow] }
                    } else {
                        for ow in first..<last { target[ow] = inputRow[ow * sw] }
                    }
                    for ow in last..<outWidth { target[ow] = 0 }
                }
                row += outHeight * outWidth
            }
        }
    }
}

/// Depthwise 2-D convolution (one filter per channel), computed directly. Each channel is first copied into a
/// zero-bordered scratch plane, so every output is a branch-free sum of taps: eight columns at a time with SIMD
/// accumulators (strides 1 and 2), the remainder one at a time.
func depthwiseConv2D(
    _ source: UnsafePointer<Float>, _ weights: UnsafePointer<Float>, _ target: UnsafeMutablePointer<Float>,
    channels: Int, geometry: SpatialGeometry
) {
    let (height, width) = (geometry.inputSize[0], geometry.inputSize[1])
    let (outHeight, outWidth) = (geometry.outputSize[0], geometry.outputSize[1])
    let (kh, kw) = (geometry.kernel[0], geometry.kernel[1])
    let (sh, sw) = (geometry.strides[0], geometry.strides[1])
    let (dh, dw) = (geometry.dilations[0], geometry.dilations[1])
    let (ph, pw) = (geometry.padBegin[0], geometry.padBegin[1])
    // Scratch plane big enough for every tap of every output, plus slack for 16-wide loads.
    let paddedHeight = max(height + ph, (outHeight - 1) * sh + (kh - 1) * dh + 1) + 1
    let paddedWidth = max(width + pw, (outWidth - 1) * sw + (kw - 1) * dw + 1) + 32
    var scratch = [Float](repeating: 0, count: paddedHeight * paddedWidth)
    scratch.withUnsafeMutableBufferPointer { buffer in
        let padded = buffer.baseAddress!
        for c in 0..<channels {
            let plane = source + c * height * width
            for row in 0..<height {
                (padded + (row + ph) * paddedWidth + pw).update(from: plane + row * width, count: width)
            }
            let filter = weights + c * kh * kw
            let result = target + c * outHeight * outWidth
            for oh in 0..<outHeight {
                let output = result + oh * outWidth
                let top = padded + oh * sh * paddedWidth
                var ow = 0
                if kh == 3 && kw == 3 && sw <= 2 {
                    // The common 3×3 case with the nine weights held in registers.
                    let (w0, w1, w2) = (SIMD8<Float>(repeating: filter[0]), SIMD8<Float>(repeating: filter[1]), SIMD8<Float>(repeating: filter[2]))
                    let (w3, w4, w5) = (SIMD8<Float>(repeating: filter[3]), SIMD8<Float>(repeating: filter[4]), SIMD8<Float>(repeating: filter[5]))
                    let (w6, w7, w8) = (SIMD8<Float>(repeating: filter[6]), SIMD8<Float>(repeating: filter[7]), SIMD8<Float>(repeating: filter[8]))
                    @inline(__always) func load(_ pointer: UnsafePointer<Float>) -> SIMD8<Float> {
                        sw == 1 ? UnsafeRawPointer(pointer).loadUnaligned(as: SIMD8<Float>.self)
                            : UnsafeRawPointer(pointer).loadUnaligned(as: SIMD16<Float>.self).evenHalf
                    }
                    let (row1, row2) = (dh * paddedWidth, 2 * dh * paddedWidth)
                    while ow < outWidth {
                        let p = UnsafePointer(top + ow * sw)
                        var accumulator = w0 * load(p) + w1 * load(p + dw) + w2 * load(p + 2 * dw)
                        accumulator += w3 * load(p + row1) + w4 * load(p + row1 + dw) + w5 * load(p + row1 + 2 * dw)
                        accumulator += w6 * load(p + row2) + w7 * load(p + row2 + dw) + w8 * load(p + row2 + 2 * dw)
                        if ow + 8 <= outWidth {
                            UnsafeMutableRawPointer(output + ow).storeBytes(of: accumulator, as: SIMD8<Float>.self)
                        } else {
                            for lane in 0..<(outWidth - ow) { output[ow + lane] = accumulator[lane] }
                        }
                        ow += 8
                    }
                } else if sw <= 2 {
                    // The last block may run past outWidth: its extra lanes read the scratch slack and are not stored.
                    while ow < outWidth {
                        var accumulator = SIMD8<Float>(repeating: 0)
                        for i in 0..<kh {
                            let line = top + i * dh * paddedWidth + ow * sw
                            for j in 0..<kw {
                                let tap = UnsafeRawPointer(line + j * dw)
                                let weight = filter[i * kw + j]
                                if sw == 1 {
                                    accumulator += weight * tap.loadUnaligned(as: SIMD8<Float>.self)
                                } else {
                                    accumulator += weight * tap.loadUnaligned(as: SIMD16<Float>.self).evenHalf
                                }
                            }
                        }
                        if ow + 8 <= outWidth {
                            UnsafeMutableRawPointer(output + ow).storeBytes(of: accumulator, as: SIMD8<Float>.self)
                        } else {
                            for lane in 0..<(outWidth - ow) { output[ow + lane] = accumulator[lane] }
                        }
                        ow += 8
                    }
                }
                while ow < outWidth {
                    var sum: Float = 0
                    for i in 0..<kh {
                        let line = top + i * dh * paddedWidth + ow * sw
                        for j in 0..<kw { sum += filter[i * kw + j] * line[j * dw] }
                    }
                    output[ow] = sum
                    ow += 1
                }
            }
        }
    }
}

/// Adds a per-channel bias and applies a fused activation over NC(spatial) data, one plane at a time
/// while it is still in cache.
/// The attributes every convolution reads (Conv, QLinearConv, ConvInteger): kernel_shape, strides, dilations, pads,
/// auto_pad and group.
struct ConvAttributes: Sendable {
    let kernelShape: [Int]?
    let strides: [Int]?
    let dilations: [Int]?
    let pads: [Int]?
    let autoPad: String
    let group: Int

    init(_ build: KernelBuildContext) throws {
        kernelShape = try build.ints("kernel_shape")
        strides = try build.ints("strides")
        dilations = try build.ints("dilations")
        pads = try build.ints("pads")
        autoPad = try build.autoPad()
        group = try build.int("group", default: 1)
    }

    /// Output geometry for spatial input dimensions and weights shaped [M, C/group, k...].
    func geometry(input spatial: [Int], weights: [Int]) throws -> SpatialGeometry {
        try SpatialGeometry(input: spatial, kernel: kernelShape ?? Array(weights.dropFirst(2)), strides: strides, dilations: dilations,
                            pads: pads, autoPad: autoPad)
    }
}

func addBiasAndActivate(
    _ output: UnsafeMutablePointer<Float>, bias: Tensor?, activation: UnaryOp?, planes: Int, channels: Int, planeSize: Int,
    _ context: RunContext? = nil
) {
    guard bias != nil || activation != nil else { return }
    let biasValues = bias?.scalars(as: Float.self)
    let pass = { (range: Range<Int>) in
        for index in range {
            let plane = output + index * planeSize
            if let biasValues {
                let value = biasValues[index % channels]
                for i in 0..<planeSize { plane[i] += value }
            }
            if let activation { activation.apply(plane, plane, planeSize) }
        }
    }
    if let context {
        context.parallelRanges(planes * channels, grain: max(1, elementwiseGrain / max(planeSize, 1)), pass)
    } else {
        pass(0..<planes * channels)
    }
}

/// ONNX ConvTranspose: GEMM into columns, then col2im scatter-add.
struct ConvTransposeKernel: Kernel {
    let kernelShape: [Int]?
    let strides: [Int]?
    let dilations: [Int]?
    let pads: [Int]?
    let outputPadding: [Int]?
    let outputShape: [Int]?
    let autoPad: String
    let group: Int

    func run(_ inputs: [Value?], _ context: RunContext) throws -> [Value] {
        let xIn = try inputs.tensor(0)
        let x = try xIn.converted(to: .float32)
        let w = try inputs.tensor(1).converted(to: .float32)
        let bias = try inputs.optionalTensor(2)?.converted(to: .float32)
        guard x.rank >= 3, w.rank == x.rank else { throw KernelError("ConvTranspose input \(x.shape) and weights \(w.shape) must have the same rank ≥ 3") }
        let batch = x.shape[0], channels = x.shape[1]
        guard channels % group == 0, w.shape[0] == channels else { throw KernelError("ConvTranspose weights \(w.shape) do not match \(channels) channels") }
        let groupChannels = channels / group, groupFilters = w.shape[1], filters = groupFilters * group
        let spatial = Array(x.shape.dropFirst(2))
        let rank = spatial.count
        let kernel = kernelShape ?? Array(w.shape.dropFirst(2))
        let strides = self.strides ?? Array(repeating: 1, count: rank)
        let dilations = self.dilations ?? Array(repeating: 1, count: rank)
        let outputPadding = self.outputPadding ?? Array(repeating: 0, count: rank)
        var begin = Array(pads?.prefix(rank) ?? []), end = Array(pads?.dropFirst(rank) ?? [])
        if begin.count != rank { begin = Array(repeating: 0, count: rank); end = begin }
        var outSize = Array(repeating: 0, count: rank)
        for axis in 0..<rank {
            let extent = (kernel[axis] - 1) * dilations[axis] + 1
            let full = strides[axis] * (spatial[axis] - 1) + outputPadding[axis] + extent
            if let outputShape, outputShape.count >= rank {
                let target = outputShape[outputShape.count - rank + axis]
                let total = full - target
                // Floor division: the total may be negative when output_shape exceeds the natural size.
                let half = Int((Double(total) / 2).rounded(.down))
                if autoPad == "SAME_UPPER" { begin[axis] = half; end[axis] = total - half } else { begin[axis] = total - half; end[axis] = half }
                outSize[axis] = target
            } else if autoPad == "SAME_UPPER" || autoPad == "SAME_LOWER" {
                let target = spatial[axis] * strides[axis]
                let total = max(0, full - target)
                if autoPad == "SAME_UPPER" { begin[axis] = total / 2; end[axis] = total - total / 2 } else { begin[axis] = total - total / 2; end[axis] = total / 2 }
                outSize[axis] = target
            } else {
                outSize[axis] = full - begin[axis] - end[axis]
            }
        }
        let taps = kernel.reduce(1, *)
        let inPositions = spatial.reduce(1, *), outPositions = outSize.reduce(1, *)
        // Input position p at tap k lands on output coordinate p·stride − pad + k·dilation.
        let scatter = SpatialGeometry.tapOffsets(positions: spatial, kernel: kernel, strides: strides, dilations: dilations,
                                                 padBegin: begin, target: outSize)
        var out = Tensor(zeros: .float32, shape: [batch, filters] + outSize)
        var columns = context.allocate(.float32, [groupFilters * taps, inPositions])
        x.withUnsafeBufferPointer(as: Float.self) { px in
            w.withUnsafeBufferPointer(as: Float.self) { pw in
                out.withUnsafeMutableBufferPointer(as: Float.self) { po in
                    columns.withUnsafeMutableBufferPointer(as: Float.self) { pc in
                        for image in 0..<batch {
                            for g in 0..<group {
                                let source = px.baseAddress! + (image * channels + g * groupChannels) * inPositions
                                // columns[Mg·taps, P] = W_gᵀ [Mg·taps, Cg] · X_g [Cg, P]
                                context.sgemm(transA: true, transB: false, m: groupFilters * taps, n: inPositions, k: groupChannels,
                                           a: pw.baseAddress! + g * groupChannels * groupFilters * taps, lda: groupFilters * taps,
                                           b: source, ldb: inPositions, c: pc.baseAddress!, ldc: inPositions)
                                for m in 0..<groupFilters {
                                    let target = po.baseAddress! + (image * filters + g * groupFilters + m) * outPositions
                                    for tap in 0..<taps {
                                        let row = pc.baseAddress! + (m * taps + tap) * inPositions
                                        let map = tap * inPositions
                                        for p in 0..<inPositions {
                                            let offset = Int(scatter[map + p])
                                            if offset >= 0 { target[offset] += row[p] }
                                        }
                                    }
                                }
                            }
                        }
                        addBiasAndActivate(po.baseAddress!, bias: bias, activation: nil, planes: batch, channels: filters, planeSize: outPositions)
                    }
                }
            }
        }
        context.pool.recycle(&columns)
        return [.tensor(xIn.dtype == .float32 ? out : try out.converted(to: xIn.dtype))]
    }
}

extension KernelRegistry {
    static func registerConv(into registry: inout KernelRegistry) {
        let conv: KernelFactory = { build in
            ConvKernel(
                attributes: try ConvAttributes(build), activation: try fusedActivation(build),
                packedWeights: try build.constant(1).map { try $0.converted(to: .float32) },
                packedBias: build.hasInput(2) ? try build.constant(2).map { try $0.converted(to: .float32) } : nil)
        }
        registry.register("Conv", conv)
        registry.register("FusedConv", domain: servalDomain, conv)
        registry.register("ConvTranspose") { build in
            ConvTransposeKernel(
                kernelShape: try build.ints("kernel_shape"), strides: try build.ints("strides"),
                dilations: try build.ints("dilations"), pads: try build.ints("pads"),
                outputPadding: try build.ints("output_padding"), outputShape: try build.ints("output_shape"),
                autoPad: try build.autoPad(), group: try build.int("group", default: 1))
        }
    }
}
