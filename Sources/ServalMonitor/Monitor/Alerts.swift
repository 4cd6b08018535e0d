import Foundation
import ServalServing
import ServalStore
import ServalWire

/// The alerts of one model version, evaluated on full, non-overlapping windows: drift alerts each time `window`
/// new rows have been logged, performance alerts each time `window` new rows have been labelled. A condition must
/// hold for `for_windows` consecutive evaluations to fire, and be absent as many to resolve, so one noisy window
/// neither fires nor clears an alert.
public struct AlertBook: Sendable, Codable, Equatable {
    public enum Name: String, Sendable, Codable, CaseIterable {
        case datasetDrift = "dataset_drift", predictionDrift = "prediction_drift", accuracy, estimatedAccuracy = "estimated_accuracy", mae
        /// Drift alerts are evaluated per window of logged rows; realised performance per window of labelled rows.
        var countsLabelledRows: Bool { self == .accuracy || self == .mae }
    }

    public struct State: Sendable, Codable, Equatable {
        public var firing = false
        /// Consecutive evaluations whose verdict differs from `firing`.
        public var streak = 0
        public var startsAt: Double?
        public var value: Double?
        public var threshold: Double?
    }

    public var states: [String: State] = [:]
    /// Full windows already evaluated: of logged rows, and of labelled rows.
    public var rowWindows = 0
    public var labelledWindows = 0

    public init() {}

    /// A change an alert receiver hears about.
    public struct Transition: Sendable, Equatable {
        public var name: Name
        public var firing: Bool
        public var startsAt: Double
        public var endsAt: Double?
        public var value: Double?
        public var threshold: Double?

        public init(name: Name, firing: Bool, startsAt: Double, endsAt: Double? = nil, value: Double? = nil, threshold: Double? = nil) {
            self.name = name
            self.firing = firing
            self.startsAt = startsAt
            self.endsAt = endsAt
            self.value = value
            self.threshold = threshold
        }
    }

    /// One condition's verdict on the current figures: nil when there is nothing to judge (no labels yet, no such
    /// threshold configured, too few rows).
    public struct Verdict: Sendable {
        public var breached: Bool
        public var value: Double?
        public var threshold: Double?
        public init(breached: Bool, value: Double?, threshold: Double?) {
            self.breached = breached
            self.value = value
            self.threshold = threshold
        }
    }

    /// Evaluates the conditions whose window completed; returns the alerts that fired or resolved.
    public mutating func evaluate(
        appendedRows: Int, labelledRows: Int, window: Int, forWindows: Int, now: Double, verdicts: [Name: Verdict]
    ) -> [Transition] {
        let rowWindows = appendedRows / max(window, 1), labelledWindows = labelledRows / max(window, 1)
        let rowsDue = rowWindows > self.rowWindows, labelsDue = labelledWindows > self.labelledWindows
        self.rowWindows = max(self.rowWindows, rowWindows)
        self.labelledWindows = max(self.labelledWindows, labelledWindows)
        var transitions: [Transition] = []
        for name in Name.allCases where name.countsLabelledRows ? labelsDue : rowsDue {
            guard let verdict = verdicts[name] else { continue }
            var state = states[name.rawValue] ?? State()
            state.value = verdict.value
            state.threshold = verdict.threshold
            if verdict.breached != state.firing {
                state.streak += 1
                if state.streak >= forWindows {
                    state.firing = verdict.breached
                    state.streak = 0
                    if state.firing {
                        state.startsAt = now
                        transitions.append(Transition(name: name, firing: true, startsAt: now, value: verdict.value, threshold: verdict.threshold))
                    } else {
                        transitions.append(Transition(name: name, firing: false, startsAt: state.startsAt ?? now, endsAt: now, value: verdict.value,
                                                      threshold: verdict.threshold))
                        state.startsAt = nil
                    }
                }
            } else {
                state.streak = 0
            }
            states[name.rawValue] = state
        }
        return transitions
    }

    public var firing: [Name] { Name.allCases.filter { states[$0.rawValue]?.firing == true } }

    /// The conditions of a status: dataset and prediction drift, and the configured performance floors.
    static func verdicts(_ status: MonitoringStatus, performance: MonitoringConfig.Performance?) -> [Name: Verdict] {
        var verdicts: [Name: Verdict] = [:]
        if let drift = status.datasetDrift {
            verdicts[.datasetDrift] = Verdict(breached: drift, value: status.driftedShare, threshold: status.driftShareThreshold)
        }
        if let drift = status.prediction?.drift { verdicts[.predictionDrift] = Verdict(breached: drift.drifted, value: drift.score, threshold: drift.threshold) }
        if let floor = performance?.minAccuracy {
            if let accuracy = status.performance.realised?["accuracy"] {
                verdicts[.accuracy] = Verdict(breached: accuracy < floor, value: accuracy, threshold: floor)
            }
            if let estimated = status.performance.estimatedAccuracy, !status.insufficientData {
                verdicts[.estimatedAccuracy] = Verdict(breached: estimated < floor, value: estimated, threshold: floor)
            }
        }
        if let ceiling = performance?.maxMAE, let mae = status.performance.realised?["mae"] {
            verdicts[.mae] = Verdict(breached: mae > ceiling, value: mae, threshold: ceiling)
        }
        return verdicts
    }
}

/// Alertmanager's webhook payload (version 4): one message per transition, with `labels.alertname`, `model` and
/// `version`, annotations saying what crossed which threshold, and `startsAt`/`endsAt`.
enum AlertPayload {
    static let zeroTime = "0001-01-01T00:00:00Z"

    static func body(_ transition: AlertBook.Transition, model: String, version: Int, externalURL: String) -> String {
        let status = transition.firing ? "firing" : "resolved"
        let labels: [(String, String)] = [("alertname", transition.name.rawValue), ("model", model), ("severity", "warning"), ("version", String(version))]
        let summary = "\(model) v\(version): \(transition.name.rawValue.replacingOccurrences(of: "_", with: " ")) \(transition.firing ? "detected" : "cleared")"
        var description = summary
        if let value = transition.value, let threshold = transition.threshold { description += " (value \(format(value)), threshold \(format(threshold)))" }
        let annotations: [(String, String)] = [("description", description), ("summary", summary)]
        let fingerprint = fingerprintOf(labels)
        var json = JSONWriter(capacity: 1024)
        json.raw("{\"version\":\"4\",\"groupKey\":")
        json.string("{}:{alertname=\"\(transition.name.rawValue)\", model=\"\(model)\"}")
        json.raw(",\"truncatedAlerts\":0,\"status\":\"\(status)\",\"receiver\":\"serval\",\"groupLabels\":")
        object([("alertname", transition.name.rawValue), ("model", model)], &json)
        json.raw(",\"commonLabels\":")
        object(labels, &json)
        json.raw(",\"commonAnnotations\":")
        object(annotations, &json)
        json.raw(",\"externalURL\":")
        json.string(externalURL)
        json.raw(",\"alerts\":[{\"status\":\"\(status)\",\"labels\":")
        object(labels, &json)
        json.raw(",\"annotations\":")
        object(annotations, &json)
        json.raw(",\"startsAt\":")
        json.string(StoreClock.timestamp(Date(timeIntervalSince1970: transition.startsAt)))
        json.raw(",\"endsAt\":")
        json.string(transition.endsAt.map { StoreClock.timestamp(Date(timeIntervalSince1970: $0)) } ?? zeroTime)
        json.raw(",\"generatorURL\":")
        json.string(externalURL)
        json.raw(",\"fingerprint\":")
        json.string(fingerprint)
        json.raw("}]}")
        return json.text
    }

    private static func object(_ pairs: [(String, String)], _ json: inout JSONWriter) {
        json.raw("{")
        for (index, pair) in pairs.enumerated() {
            if index > 0 { json.raw(",") }
            json.string(pair.0)
            json.raw(":")
            json.string(pair.1)
        }
        json.raw("}")
    }

    private static func format(_ value: Double) -> String { String(format: "%.4g", value) }

    /// 16 hex digits of FNV-1a over the sorted labels: stable for the same alert, as Alertmanager's fingerprint is.
    static func fingerprintOf(_ labels: [(String, String)]) -> String {
        var hash = FNV1a()
        for (key, value) in labels.sorted(by: { $0.0 < $1.0 }) { hash.combine(key + "\u{1}" + value + "\u{2}") }
        return FNV1a.hex(hash.value)
    }
}
