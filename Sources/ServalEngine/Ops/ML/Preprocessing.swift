import ServalTensor

/// ai.onnx.ml feature transforms: Scaler, Normalizer, Imputer, OneHotEncoder, Binarizer, LabelEncoder,
/// ArrayFeatureExtractor, and ZipMap (scores to a sequence of maps).
struct ScalerKernel: Kernel {
    let offset: [Float]
    let scale: [Float]

    func run(_ inputs: [Value?], _ context: RunContext) throws -> [Value] {
        let x = try inputs.tensor(0)
        let (values, rows, features) = try featureMatrix(x)
        guard offset.count <= 1 || offset.count == features, scale.count <= 1 || scale.count == features else {
            throw KernelError("Scaler has \(max(offset.count, scale.count)) parameters for \(features) features")
        }
        var out = values
        for row in 0..<rows {
            for f in 0..<features {
                let o = offset.isEmpty ? 0 : offset[offset.count == 1 ? 0 : f]
                let s = scale.isEmpty ? 1 : scale[scale.count == 1 ? 0 : f]
                out[row * features + f] = (values[row * features + f] - o) * s
            }
        }
        return [.tensor(Tensor(shape: x.rank <= 1 ? [rows, features] : x.shape, scalars: out))]
    }
}

struct NormalizerKernel: Kernel {
    enum Norm: String, Sendable { case max = "MAX", l1 = "L1", l2 = "L2" }
    let norm: Norm

    func run(_ inputs: [Value?], _ context: RunContext) throws -> [Value] {
        let x = try inputs.tensor(0)
        var (values, rows, features) = try featureMatrix(x)
        for row in 0..<rows {
            let slice = (row * features)..<((row + 1) * features)
            let divisor: Float
            switch norm {
            case .max: divisor = values[slice].max() ?? 1
            case .l1: divisor = values[slice].reduce(0) { $0 + Swift.abs($1) }
            case .l2: divisor = values[slice].reduce(0) { $0 + $1 * $1 }.squareRoot()
            }
            if divisor != 0 { for i in slice { values[i] /= divisor } }
        }
        return [.tensor(Tensor(shape: x.rank <= 1 ? [rows, features] : x.shape, scalars: values))]
    }
}

struct ZipMapKernel: Kernel {
    let keys: Tensor

    func run(_ inputs: [Value?], _ context: RunContext) throws -> [Value] {
        let x = try inputs.tensor(0).converted(to: .float32)
        let columns = x.rank == 2 ? x.shape[1] : x.count
        guard columns == keys.count else { throw KernelError("ZipMap has \(keys.count) labels for \(columns) score columns") }
        return [.mapSequence(MapSequence(keys: keys, values: x.reshaped([x.count / max(columns, 1), columns])))]
    }
}

struct ImputerKernel: Kernel {
    let floatValues: [Float]
    let intValues: [Int64]
    let replacedFloat: Float
    let replacedInt: Int64

    func run(_ inputs: [Value?], _ context: RunContext) throws -> [Value] {
        let x = try inputs.tensor(0)
        let features = x.rank == 0 ? 1 : x.shape[x.rank - 1]
        if x.dtype == .int64 || x.dtype == .int32 {
            guard intValues.count == 1 || intValues.count == features else { throw KernelError("Imputer has \(intValues.count) int values for \(features) features") }
            var values = try x.int64s()
            for i in values.indices where values[i] == replacedInt { values[i] = intValues[intValues.count == 1 ? 0 : i % features] }
            return [.tensor(try Tensor(shape: x.shape, scalars: values).converted(to: x.dtype))]
        }
        guard floatValues.count == 1 || floatValues.count == features else { throw KernelError("Imputer has \(floatValues.count) values for \(features) features") }
        var values = try x.converted(to: .float32).scalars(as: Float.self)
        for i in values.indices where values[i] == replacedFloat || (replacedFloat.isNaN && values[i].isNaN) {
            values[i] = floatValues[floatValues.count == 1 ? 0 : i % features]
        }
        return [.tensor(try Tensor(shape: x.shape, scalars: values).converted(to: x.dtype))]
    }
}

struct OneHotEncoderKernel: Kernel {
    let intCategories: [Int64: Int]
    let stringCategories: [String: Int]
    let categoryCount: Int
    let zerosForUnknown: Bool

    func run(_ inputs: [Value?], _ context: RunContext) throws -> [Value] {
        let x = try inputs.tensor(0)
        var out = [Float](repeating: 0, count: x.count * categoryCount)
        for i in 0..<x.count {
            let index: Int?
            if x.dtype == .string { index = stringCategories[x.strings[i]] } else { index = intCategories[try x.int64s()[i]] }
            if let index { out[i * categoryCount + index] = 1 } else if !zerosForUnknown {
                throw KernelError("OneHotEncoder: unknown category at element \(i)")
            }
        }
        return [.tensor(Tensor(shape: x.shape + [categoryCount], scalars: out))]
    }
}

/// LabelEncoder in its three attribute forms (v1 classes_strings, v2 keys_*/values_*, v4 tensors).
struct LabelEncoderKernel: Kernel {
    let keys: Tensor
    let values: Tensor
    let defaultValue: Tensor

    func run(_ inputs: [Value?], _ context: RunContext) throws -> [Value] {
        let x = try inputs.tensor(0)
        if keys.dtype == .string {
            let table = Dictionary(keys.strings.enumerated().map { ($0.element, $0.offset) }, uniquingKeysWith: { first, _ in first })
            guard x.dtype == .string else { throw KernelError("LabelEncoder expects string input, got \(x.dtype)") }
            return [.tensor(try lookUp(x.strings.map { table[$0] }, shape: x.shape))]
        }
        let keyValues = try keys.doubles()
        let table = Dictionary(keyValues.enumerated().map { ($0.element, $0.offset) }, uniquingKeysWith: { first, _ in first })
        let inputs = try x.doubles()
        return [.tensor(try lookUp(inputs.map { table[$0] ?? ($0.isNaN ? keyValues.firstIndex(where: \.isNaN) : nil) }, shape: x.shape))]
    }

    private func lookUp(_ positions: [Int?], shape: [Int]) throws -> Tensor {
        if values.dtype == .string {
            let fallback = defaultValue.strings.first ?? "_Unused"
            return Tensor(shape: shape, strings: positions.map { $0.map { values.strings[$0] } ?? fallback })
        }
        let table = try values.doubles(), fallback = try defaultValue.doubles().first ?? -1
        return try Tensor(shape: shape, scalars: positions.map { $0.map { table[$0] } ?? fallback }).converted(to: values.dtype)
    }
}

extension KernelRegistry {
    static func registerMLOps(into registry: inout KernelRegistry) {
        registerLinearModels(into: &registry)
        registerTreeEnsembles(into: &registry)
        let ml = "ai.onnx.ml"
        registry.register("Scaler", domain: ml) { build in
            ScalerKernel(offset: try build.floats("offset") ?? [], scale: try build.floats("scale") ?? [])
        }
        registry.register("Normalizer", domain: ml) { build in
            let name = try build.string("norm", default: "MAX")
            guard let norm = NormalizerKernel.Norm(rawValue: name) else { throw build.invalid("unknown norm \(name)") }
            return NormalizerKernel(norm: norm)
        }
        registry.register("ZipMap", domain: ml) { build in
            if let strings = try build.strings("classlabels_strings"), !strings.isEmpty {
                return ZipMapKernel(keys: Tensor(shape: [strings.count], strings: strings))
            }
            guard let ints = try build.ints("classlabels_int64s") else { throw build.invalid("class labels are required") }
            return ZipMapKernel(keys: Tensor(shape: [ints.count], scalars: ints.map { Int64($0) }))
        }
        registry.register("ArrayFeatureExtractor", domain: ml) { _ in
            ClosureKernel { inputs, context in
                let x = try inputs.tensor(0)
                let indices = try inputs.tensor(1)
                let data = x.rank == 1 ? x.reshaped([1, x.count]) : x
                let last = data.rank - 1
                for index in try indices.int64s() where index < 0 || index >= data.shape[last] {
                    throw KernelError("ArrayFeatureExtractor index \(index) out of range for \(data.shape[last]) features")
                }
                let flat = indices.reshaped([indices.count])
                return [.tensor(try gather(data, flat, axis: last, context))]
            }
        }
        registry.register("Imputer", domain: ml) { build in
            ImputerKernel(
                floatValues: try build.floats("imputed_value_floats") ?? [],
                intValues: (try build.ints("imputed_value_int64s") ?? []).map { Int64($0) },
                replacedFloat: try build.float("replaced_value_float", default: .nan),
                replacedInt: Int64(try build.int("replaced_value_int64", default: 0)))
        }
        registry.register("OneHotEncoder", domain: ml) { build in
            let ints = try build.ints("cats_int64s") ?? [], strings = try build.strings("cats_strings") ?? []
            return OneHotEncoderKernel(
                intCategories: Dictionary(ints.enumerated().map { (Int64($0.element), $0.offset) }, uniquingKeysWith: { a, _ in a }),
                stringCategories: Dictionary(strings.enumerated().map { ($0.element, $0.offset) }, uniquingKeysWith: { a, _ in a }),
                categoryCount: max(ints.count, strings.count), zerosForUnknown: try build.int("zeros", default: 1) != 0)
        }
        registry.register("Binarizer", domain: ml) { build in
            let threshold = try build.float("threshold", default: 0)
            return ClosureKernel { inputs, _ in
                let x = try inputs.tensor(0)
                let values = try x.doubles().map { $0 > Double(threshold) ? 1.0 : 0.0 }
                return [.tensor(try Tensor(shape: x.shape, scalars: values).converted(to: x.dtype))]
            }
        }
        registry.register("LabelEncoder", domain: ml) { build in
            if let keys = try build.tensor("keys_tensor"), let values = try build.tensor("values_tensor") {
                let fallback = try build.tensor("default_tensor")
                    ?? (values.dtype == .string ? Tensor(shape: [1], strings: ["_Unused"]) : try Tensor(shape: [1], scalars: [-1.0]).converted(to: values.dtype))
                return LabelEncoderKernel(keys: keys, values: values, defaultValue: fallback)
            }
            let keyStrings = try build.strings("keys_strings"), keyInts = try build.ints("keys_int64s"), keyFloats = try build.floats("keys_floats")
            let valueStrings = try build.strings("values_strings"), valueInts = try build.ints("values_int64s"), valueFloats = try build.floats("values_floats")
            if keyStrings != nil || keyInts != nil || keyFloats != nil {
                let keys = keyStrings.map { Tensor(shape: [$0.count], strings: $0) }
                    ?? keyInts.map { Tensor(shape: [$0.count], scalars: $0.map { Int64($0) }) }
                    ?? Tensor(shape: [keyFloats!.count], scalars: keyFloats!)
                let values = valueStrings.map { Tensor(shape: [$0.count], strings: $0) }
                    ?? valueInts.map { Tensor(shape: [$0.count], scalars: $0.map { Int64($0) }) }
                    ?? valueFloats.map { Tensor(shape: [$0.count], scalars: $0) }
                guard let values, values.count == keys.count else { throw build.invalid("LabelEncoder keys and values differ in length") }
                let fallback: Tensor
                switch values.dtype {
                case .string: fallback = Tensor(shape: [1], strings: [try build.string("default_string", default: "_Unused")])
                case .int64: fallback = Tensor(shape: [1], scalars: [Int64(try build.int("default_int64", default: -1))])
                default: fallback = Tensor(shape: [1], scalars: [try build.float("default_float", default: -0.0)])
                }
                return LabelEncoderKernel(keys: keys, values: values, defaultValue: fallback)
            }
            // Opset 1: classes_strings maps strings to their index, or indices back to strings.
            guard let classes = try build.strings("classes_strings") else { throw build.invalid("LabelEncoder has no keys") }
            let names = Tensor(shape: [classes.count], strings: classes)
            let indices = Tensor(shape: [classes.count], scalars: (0..<classes.count).map { Int64($0) })
            let defaultInt = Tensor(shape: [1], scalars: [Int64(try build.int("default_int64", default: -1))])
            let defaultString = Tensor(shape: [1], strings: [try build.string("default_string", default: "_Unused")])
            return ClosureKernel { inputs, context in
                let x = try inputs.tensor(0)
                let kernel = x.dtype == .string
                    ? LabelEncoderKernel(keys: names, values: indices, defaultValue: defaultInt)
                    : LabelEncoderKernel(keys: indices, values: names, defaultValue: defaultString)
                return try kernel.run(inputs, context)
            }
        }
    }
}
