import ServalTensor
import ServalWire

/// Row-by-row agreement of a shadow's outputs with the primary's. For a classifier (a model with a label output:
/// integer or string), a row disagrees when its label, or the argmax of its scores, differs; otherwise when any
/// element's relative difference is over `tolerance`.
public enum ShadowComparison {
    public struct Outcome: Sendable, Equatable {
        public var rows = 0
        public var disagreeing = 0
    }

    public static let tolerance = 1e-3

    public static func compare(primary: InferenceResponse, shadow: InferenceResponse) -> Outcome {
        let primaryOutputs = Dictionary(primary.outputs.map { ($0.name, $0.value) }, uniquingKeysWith: { $1 })
        let shadowOutputs = Dictionary(shadow.outputs.map { ($0.name, $0.value) }, uniquingKeysWith: { $1 })
        let names = primary.outputs.map(\.name).filter { shadowOutputs[$0] != nil }
        let tensors = names.compactMap { name -> (Tensor, Tensor)? in
            guard let a = primaryOutputs[name]?.tensor, let b = shadowOutputs[name]?.tensor else { return nil }
            return (a, b)
        }
        let classifier = tensors.contains { !$0.0.dtype.isFloatingPoint }
        let rows = tensors.first.map { $0.0.shape.first ?? 1 } ?? 0
        var disagreeing = [Bool](repeating: false, count: rows)
        for (a, b) in tensors {
            guard a.shape == b.shape, a.dtype == b.dtype else {
                for row in 0..<rows { disagreeing[row] = true }
                continue
            }
            let width = rows > 0 ? a.count / rows : 0
            if a.dtype == .string {
                for row in 0..<rows where a.strings[(row * width)..<((row + 1) * width)] != b.strings[(row * width)..<((row + 1) * width)] {
                    disagreeing[row] = true
                }
                continue
            }
            guard let x = try? a.converted(to: .float64).scalars(as: Double.self), let y = try? b.converted(to: .float64).scalars(as: Double.self) else { continue }
            for row in 0..<rows {
                let range = (row * width)..<((row + 1) * width)
                if !a.dtype.isFloatingPoint {
                    if x[range] != y[range] { disagreeing[row] = true }
                } else if classifier {
                    if argmax(x[range]) != argmax(y[range]) { disagreeing[row] = true }
                } else if range.contains(where: { abs(x[$0] - y[$0]) > tolerance * max(abs(x[$0]), abs(y[$0]), 1e-12) }) {
                    disagreeing[row] = true
                }
            }
        }
        return Outcome(rows: rows, disagreeing: disagreeing.filter { $0 }.count)
    }

    static func argmax(_ values: ArraySlice<Double>) -> Int? {
        values.indices.max { values[$0] < values[$1] }
    }
}
