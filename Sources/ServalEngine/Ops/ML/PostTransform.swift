import Foundation
import ServalTensor

/// The score transforms ONNX-ML classifiers and regressors share (`post_transform`).
enum PostTransform: String, Sendable {
    case none = "NONE", softmax = "SOFTMAX", logistic = "LOGISTIC", softmaxZero = "SOFTMAX_ZERO", probit = "PROBIT"

    init(_ build: KernelBuildContext) throws {
        let name = try build.string("post_transform", default: "NONE")
        guard let value = PostTransform(rawValue: name) else { throw build.invalid("unknown post_transform \(name)") }
        self = value
    }

    /// Transforms one row of scores in place.
    func apply(_ scores: inout [Float]) {
        switch self {
        case .none: break
        case .logistic: for i in scores.indices { scores[i] = logisticFunction(scores[i]) }
        case .probit: for i in scores.indices { scores[i] = probitFunction(scores[i]) }
        case .softmax:
            let top = scores.max() ?? 0
            var sum: Float = 0
            for i in scores.indices { scores[i] = expf(scores[i] - top); sum += scores[i] }
            for i in scores.indices { scores[i] /= sum }
        case .softmaxZero:
            // Softmax over the non-zero entries; zeros stay zero.
            let top = scores.filter { $0 != 0 }.max() ?? 0
            var sum: Float = 0
            for i in scores.indices where scores[i] != 0 { scores[i] = expf(scores[i] - top); sum += scores[i] }
            for i in scores.indices where scores[i] != 0 { scores[i] /= sum }
        }
    }
}

func logisticFunction(_ x: Float) -> Float {
    let v = 1 / (1 + expf(-Swift.abs(x)))
    return x < 0 ? 1 - v : v
}

/// Inverse of the standard normal CDF: sqrt(2) · erfinv(2p - 1).
func probitFunction(_ p: Float) -> Float { Float(2.0.squareRoot()) * inverseErf(2 * p - 1) }

func inverseErf(_ x: Float) -> Float {
    // Winitzki's approximation refined by two Newton steps on erf.
    let a: Double = 0.147
    let value = Double(x)
    let lnTerm = Foundation.log(1 - value * value)
    let first = 2 / (Double.pi * a) + lnTerm / 2
    var y = (value < 0 ? -1.0 : 1.0) * (((first * first) - lnTerm / a).squareRoot() - first).squareRoot()
    for _ in 0..<2 {
        let error = Foundation.erf(y) - value
        y -= error / (2 / Double.pi.squareRoot() * Foundation.exp(-y * y))
    }
    return Float(y)
}

/// Class labels of a classifier: int64 (`classlabels_int64s` / `classlabels_ints`) or strings.
enum ClassLabels: Sendable {
    case ints([Int64])
    case strings([String])

    init?(_ build: KernelBuildContext) throws {
        if let strings = try build.strings("classlabels_strings"), !strings.isEmpty {
            self = .strings(strings)
        } else if let ints = try build.ints("classlabels_int64s") ?? build.ints("classlabels_ints"), !ints.isEmpty {
            self = .ints(ints.map { Int64($0) })
        } else {
            return nil
        }
    }

    var count: Int {
        switch self {
        case .ints(let values): return values.count
        case .strings(let values): return values.count
        }
    }

    /// A label tensor of shape [rows] from class indices.
    func tensor(_ indices: [Int]) -> Tensor {
        switch self {
        case .ints(let values): return Tensor(shape: [indices.count], scalars: indices.map { values[$0] })
        case .strings(let values): return Tensor(shape: [indices.count], strings: indices.map { values[$0] })
        }
    }
}

/// The rows of a 1-D or 2-D numeric input as float32, shape [rows, features].
func featureMatrix(_ x: Tensor) throws -> (values: [Float], rows: Int, features: Int) {
    let values = try x.converted(to: .float32).scalars(as: Float.self)
    switch x.rank {
    case 0: return (values, 1, 1)
    case 1: return (values, 1, x.shape[0])
    default: return (values, x.shape[0], x.shape.dropFirst().reduce(1, *))
    }
}
