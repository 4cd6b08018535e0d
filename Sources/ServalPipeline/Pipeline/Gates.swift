import Foundation

/// The evaluation gates, as TFX blesses a model: absolute bounds on the candidate's metrics, and bounds on its
/// difference to the champion (`candidate − champion`, for every metric: an error metric such as mae takes
/// `max_delta_vs_champion`). Without a champion, the comparisons are skipped and reported as such.
public enum Gates {
    /// One rule on one metric.
    public struct Result: Sendable, Equatable {
        public enum Outcome: String, Sendable {
            case passed, failed, skipped
        }

        public let metric: EvaluationMetric
        /// `min 0.9`, `max 0.2`, `delta vs champion >= 0` ...
        public let rule: String
        public let candidate: Double
        public let champion: Double?
        public let outcome: Outcome
    }

    public static func check(_ gates: [EvaluationMetric: PipelineDefinition.Gate], candidate: [EvaluationMetric: Double],
                             champion: [EvaluationMetric: Double]?) -> [Result] {
        var results: [Result] = []
        for metric in EvaluationMetric.allCases {
            guard let gate = gates[metric] else { continue }
            let value = candidate[metric] ?? .nan
            let other = champion?[metric]
            func outcome(_ holds: Bool) -> Result.Outcome { value.isNaN ? .failed : holds ? .passed : .failed }
            if let bound = gate.min { results.append(Result(metric: metric, rule: "min \(bound)", candidate: value, champion: other, outcome: outcome(value >= bound))) }
            if let bound = gate.max { results.append(Result(metric: metric, rule: "max \(bound)", candidate: value, champion: other, outcome: outcome(value <= bound))) }
            for (bound, isMinimum) in [(gate.minDeltaVsChampion, true), (gate.maxDeltaVsChampion, false)] {
                guard let bound else { continue }
                let rule = "delta vs champion \(isMinimum ? ">=" : "<=") \(bound)"
                guard let other, other.isFinite else {
                    results.append(Result(metric: metric, rule: rule, candidate: value, champion: nil, outcome: .skipped))
                    continue
                }
                let delta = value - other
                results.append(Result(metric: metric, rule: rule, candidate: value, champion: other, outcome: outcome(isMinimum ? delta >= bound : delta <= bound)))
            }
        }
        return results
    }

    /// The candidate-against-champion table a failed run prints.
    public static func table(_ results: [Result]) -> String {
        func number(_ value: Double?) -> String { value.map { $0.isNaN ? "-" : String(format: "%.6f", $0) } ?? "-" }
        var lines = ["metric          rule                          candidate  champion   outcome"]
        for result in results {
            lines.append(result.metric.rawValue.padding(toLength: 16, withPad: " ", startingAt: 0)
                + result.rule.padding(toLength: 30, withPad: " ", startingAt: 0)
                + number(result.candidate).padding(toLength: 11, withPad: " ", startingAt: 0)
                + number(result.champion).padding(toLength: 11, withPad: " ", startingAt: 0) + result.outcome.rawValue)
        }
        return lines.joined(separator: "\n")
    }
}
