import Foundation

/// Realised performance over labelled predictions, defined as scikit-learn defines each metric (a class that is
/// never predicted has precision 0, as `zero_division` does by default; macro averages run over every label seen
/// in either the truth or the predictions).
public enum PerformanceMetrics {
    /// accuracy, f1 (macro), precision (macro), recall (macro), and roc_auc for a binary task with positive-class
    /// scores (`scores[i]` is the probability of the larger label).
    public static func classification(truth: [String], predicted: [String], scores: [Double]? = nil) -> [String: Double] {
        let n = truth.count
        guard n > 0, predicted.count == n else { return [:] }
        let labels = Set(truth).union(predicted).sorted(by: LabelOrder.less)
        var truePositives = [String: Int](), predictedCounts = [String: Int](), trueCounts = [String: Int]()
        var correct = 0
        for index in 0..<n {
            trueCounts[truth[index], default: 0] += 1
            predictedCounts[predicted[index], default: 0] += 1
            if truth[index] == predicted[index] {
                correct += 1
                truePositives[truth[index], default: 0] += 1
            }
        }
        var precision = 0.0, recall = 0.0, f1 = 0.0
        for label in labels {
            let tp = Double(truePositives[label] ?? 0), p = Double(predictedCounts[label] ?? 0), t = Double(trueCounts[label] ?? 0)
            let classPrecision = p == 0 ? 0 : tp / p
            let classRecall = t == 0 ? 0 : tp / t
            precision += classPrecision
            recall += classRecall
            f1 += classPrecision + classRecall == 0 ? 0 : 2 * classPrecision * classRecall / (classPrecision + classRecall)
        }
        let count = Double(labels.count)
        var result = ["accuracy": Double(correct) / Double(n), "f1": f1 / count, "precision": precision / count, "recall": recall / count]
        let truthLabels = Set(truth).sorted(by: LabelOrder.less)
        if let scores, scores.count == n, truthLabels.count == 2, scores.allSatisfy(\.isFinite) {
            result["roc_auc"] = rocAUC(positive: truth.map { $0 == truthLabels[1] }, scores: scores)
        }
        return result
    }

    /// The area under the ROC curve as the Mann–Whitney statistic with ties counted half (equal to the trapezoidal
    /// area scikit-learn computes).
    static func rocAUC(positive: [Bool], scores: [Double]) -> Double {
        let order = scores.indices.sorted { scores[$0] < scores[$1] }
        var ranks = [Double](repeating: 0, count: scores.count)
        var start = 0
        while start < order.count {
            var end = start
            while end + 1 < order.count && scores[order[end + 1]] == scores[order[start]] { end += 1 }
            let rank = Double(start + end) / 2 + 1
            for position in start...end { ranks[order[position]] = rank }
            start = end + 1
        }
        let positives = Double(positive.filter { $0 }.count), negatives = Double(positive.count) - positives
        var sum = 0.0
        for index in positive.indices where positive[index] { sum += ranks[index] }
        return (sum - positives * (positives + 1) / 2) / (positives * negatives)
    }

    /// log_loss as scikit-learn computes it: each probability clipped to [eps, 1 − eps] with the epsilon of the
    /// probabilities' type (Float's: models answer in float32), then the mean of −log p(true class). `classes` names
    /// the columns of the row-major `probabilities`; nil when a true label is not among them.
    public static func logLoss(truth: [String], classes: [String], probabilities: [Double], epsilon: Double = Double(Float.ulpOfOne)) -> Double? {
        guard !truth.isEmpty, probabilities.count == truth.count * classes.count else { return nil }
        let column = Dictionary(classes.enumerated().map { ($1, $0) }, uniquingKeysWith: { first, _ in first })
        var sum = 0.0
        for (row, label) in truth.enumerated() {
            guard let index = column[label] else { return nil }
            sum -= log(min(max(probabilities[row * classes.count + index], epsilon), 1 - epsilon))
        }
        return sum / Double(truth.count)
    }

    /// mae, rmse and r2 (1 − SS_res/SS_tot; for a constant truth 1 when perfect, else 0, as scikit-learn's
    /// `force_finite` gives).
    public static func regression(truth: [Double], predicted: [Double]) -> [String: Double] {
        let n = Double(truth.count)
        guard !truth.isEmpty, predicted.count == truth.count else { return [:] }
        var absolute = 0.0, squared = 0.0
        for index in truth.indices {
            let error = truth[index] - predicted[index]
            absolute += abs(error)
            squared += error * error
        }
        let mean = truth.reduce(0, +) / n
        let total = truth.reduce(0) { $0 + ($1 - mean) * ($1 - mean) }
        let r2 = total == 0 ? (squared == 0 ? 1 : 0) : 1 - squared / total
        return ["mae": absolute / n, "rmse": (squared / n).squareRoot(), "r2": r2]
    }
}

/// Class labels in scikit-learn's order: numerically when both are numbers, else as text.
public enum LabelOrder {
    public static func less(_ a: String, _ b: String) -> Bool {
        if let x = Double(a), let y = Double(b) { return x < y }
        return a < b
    }
}
