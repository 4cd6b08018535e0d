import ServalTensor
import ServalWire

/// What the monitor keeps of a model's answer, per row: the prediction (a class label as text, or a regression
/// value) and the confidence of the predicted class when the model gives probabilities.
public struct RowPredictions: Sendable {
    public var labels: [String]?
    public var values: [Double]?
    /// The largest class probability of each row.
    public var confidences: [Double]?
    /// With exactly two classes: the probability of the second (the positive class, for ROC-AUC).
    public var positiveScores: [Double]?
    /// Every class probability, row-major [rows, classes.count], when the model gives them.
    public var probabilities: [Double]?
    /// The classes of the probability columns: a ZipMap's keys, or the classifier's labels when known.
    public var classes: [String]?
    public var count: Int { labels?.count ?? values?.count ?? confidences?.count ?? 0 }

    public init() {}
}

/// Finds the prediction in a model's outputs. A classifier's label is its rank-1 integer or string output; its
/// probabilities are a [rows, classes] float output or a ZipMap (whose keys are the classes). A regressor's value
/// is its float output of one value per row.
public enum PredictionReader {
    /// `classLabels`: the classifier's labels in column order, for a [rows, classes] float output (a ZipMap
    /// names its own).
    public static func read(_ outputs: [(name: String, value: Value)], rows: Int, classLabels: [String]? = nil) -> RowPredictions {
        var result = RowPredictions()
        var classes: [String]?
        var probabilities: [Double]?
        var width = 0
        for (_, value) in outputs {
            switch value {
            case .tensor(let tensor):
                let perRow = tensor.rank == 0 || rows == 0 ? 0 : tensor.count / rows
                guard tensor.rank >= 1, tensor.shape[0] == rows else { continue }
                if tensor.dtype == .string || tensor.dtype.isInteger, perRow == 1, result.labels == nil {
                    result.labels = (try? tensor.elementStrings()) ?? nil
                } else if tensor.dtype.isFloatingPoint, perRow == 1, result.values == nil, probabilities == nil {
                    result.values = try? tensor.doubles()
                } else if tensor.dtype.isFloatingPoint, perRow > 1, probabilities == nil {
                    probabilities = try? tensor.doubles()
                    width = perRow
                }
            case .mapSequence(let maps):
                guard maps.count == rows, probabilities == nil else { continue }
                probabilities = try? maps.values.doubles()
                width = maps.keys.count
                classes = try? maps.keys.elementStrings()
            }
        }
        if let probabilities, width > 0 {
            var confidences = [Double](repeating: 0, count: rows)
            var argmax = [Int](repeating: 0, count: rows)
            for row in 0..<rows {
                var best = 0
                for column in 1..<width where probabilities[row * width + column] > probabilities[row * width + best] { best = column }
                confidences[row] = probabilities[row * width + best]
                argmax[row] = best
            }
            result.confidences = confidences
            if width == 2 { result.positiveScores = (0..<rows).map { probabilities[$0 * 2 + 1] } }
            if classes == nil, let classLabels, classLabels.count == width { classes = classLabels }
            result.probabilities = probabilities
            result.classes = classes
            if result.labels == nil { result.labels = argmax.map { classes?[$0] ?? String($0) } }
            result.values = nil  // a float output beside probabilities is not a regression value
        }
        return result
    }
}
