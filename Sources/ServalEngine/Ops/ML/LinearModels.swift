import ServalTensor

/// ai.onnx.ml LinearClassifier and LinearRegressor: scores = X · coefficientsᵀ + intercepts.
struct LinearModel: Sendable {
    let coefficients: [Float]
    let intercepts: [Float]
    let targets: Int

    func scores(_ x: Tensor) throws -> (scores: [Float], rows: Int) {
        let (values, rows, features) = try featureMatrix(x)
        guard coefficients.count == targets * features else {
            throw KernelError("input has \(features) features; the model has \(coefficients.count / max(targets, 1))")
        }
        var scores = [Float](repeating: 0, count: rows * targets)
        guard rows > 0 else { return (scores, 0) }
        values.withUnsafeBufferPointer { px in
            coefficients.withUnsafeBufferPointer { pw in
                scores.withUnsafeMutableBufferPointer { ps in
                    BLAS.sgemm(transA: false, transB: true, m: rows, n: targets, k: features,
                               a: px.baseAddress!, lda: features, b: pw.baseAddress!, ldb: features, c: ps.baseAddress!, ldc: targets)
                }
            }
        }
        if !intercepts.isEmpty {
            for row in 0..<rows { for t in 0..<targets { scores[row * targets + t] += intercepts[intercepts.count == 1 ? 0 : t] } }
        }
        return (scores, rows)
    }
}

struct LinearClassifierKernel: Kernel {
    let model: LinearModel
    let labels: ClassLabels
    let transform: PostTransform

    func run(_ inputs: [Value?], _ context: RunContext) throws -> [Value] {
        let (raw, rows) = try model.scores(try inputs.tensor(0))
        let targets = model.targets
        var chosen = [Int](repeating: 0, count: rows)
        var output: [Float] = []
        if targets == 1 {
            // One score per row: the binary case. ONNX-ML reports both classes' scores.
            output.reserveCapacity(rows * 2)
            for row in 0..<rows {
                let score = raw[row]
                chosen[row] = score > 0 ? 1 : 0
                switch transform {
                case .logistic: output += [logisticFunction(-score), logisticFunction(score)]
                case .probit: output += [probitFunction(-score), probitFunction(score)]
                default: output += [-score, score]
                }
            }
            if labels.count < 2 { throw KernelError("binary LinearClassifier needs two class labels") }
            return [.tensor(labels.tensor(chosen)), .tensor(Tensor(shape: [rows, 2], scalars: output))]
        }
        output.reserveCapacity(rows * targets)
        for row in 0..<rows {
            var scores = Array(raw[(row * targets)..<((row + 1) * targets)])
            var best = 0
            for t in 1..<targets where scores[t] > scores[best] { best = t }
            chosen[row] = best
            transform.apply(&scores)
            output += scores
        }
        guard labels.count == targets else { throw KernelError("LinearClassifier has \(labels.count) labels for \(targets) score columns") }
        return [.tensor(labels.tensor(chosen)), .tensor(Tensor(shape: [rows, targets], scalars: output))]
    }
}

struct LinearRegressorKernel: Kernel {
    let model: LinearModel
    let transform: PostTransform

    func run(_ inputs: [Value?], _ context: RunContext) throws -> [Value] {
        var (scores, rows) = try model.scores(try inputs.tensor(0))
        if transform != .none {
            for row in 0..<rows {
                var values = Array(scores[(row * model.targets)..<((row + 1) * model.targets)])
                transform.apply(&values)
                for t in 0..<model.targets { scores[row * model.targets + t] = values[t] }
            }
        }
        return [.tensor(Tensor(shape: [rows, model.targets], scalars: scores))]
    }
}

extension KernelRegistry {
    static func registerLinearModels(into registry: inout KernelRegistry) {
        registry.register("LinearClassifier", domain: "ai.onnx.ml") { build in
            guard let coefficients = try build.floats("coefficients") else { throw build.invalid("coefficients are required") }
            guard let labels = try ClassLabels(build) else { throw build.invalid("class labels are required") }
            let intercepts = try build.floats("intercepts") ?? []
            let targets = intercepts.isEmpty ? labels.count : intercepts.count
            guard targets > 0, coefficients.count % targets == 0 else { throw build.invalid("coefficients do not divide into \(targets) classes") }
            return LinearClassifierKernel(model: LinearModel(coefficients: coefficients, intercepts: intercepts, targets: targets),
                                          labels: labels, transform: try PostTransform(build))
        }
        registry.register("LinearRegressor", domain: "ai.onnx.ml") { build in
            guard let coefficients = try build.floats("coefficients") else { throw build.invalid("coefficients are required") }
            let targets = try build.int("targets", default: 1)
            guard targets > 0, coefficients.count % targets == 0 else { throw build.invalid("coefficients do not divide into \(targets) targets") }
            return LinearRegressorKernel(model: LinearModel(coefficients: coefficients, intercepts: try build.floats("intercepts") ?? [], targets: targets),
                                         transform: try PostTransform(build))
        }
    }
}
