import Foundation
import ServalStore
import ServalWire

/// What `GET /v2/models/{m}/monitoring/status` reports for one model version over its current window.
public struct MonitoringStatus: Sendable {
    /// One feature's (or the prediction's) verdict; score and verdict are nil while the data is insufficient.
    public struct Feature: Sendable {
        public var name: String
        public var kind: FeatureKind
        public var drift: DriftScore?
    }

    public struct Performance: Sendable {
        public var realised: [String: Double]?
        public var estimatedAccuracy: Double?
        public var calibrated: Bool
        public var labelledRows: Int
    }

    public var model: String
    public var version: Int
    public var windowSize: Int
    public var rows: Int
    public var from: Double?
    public var to: Double?
    public var features: [Feature]
    public var prediction: Feature?
    public var driftShareThreshold: Double
    public var performance: Performance
    public var evaluatedAt: Double
    /// Rows ever logged into this window, for evaluators that act on each full window.
    public var appended: Int
    public var alerts = AlertBook()

    public static let minimumRows = 30
    public var partial: Bool { rows < windowSize }
    public var insufficientData: Bool { rows < Self.minimumRows }
    public var driftedFeatures: Int { features.filter { $0.drift?.drifted == true }.count }
    public var driftedShare: Double? { insufficientData || features.isEmpty ? nil : Double(driftedFeatures) / Double(features.count) }
    /// nil while the data is insufficient: never "no drift" on too few rows.
    public var datasetDrift: Bool? { driftedShare.map { $0 >= driftShareThreshold } }

    public func json() -> String {
        var json = JSONWriter(capacity: 1024)
        json.raw("{\"model\":")
        json.string(model)
        json.raw(",\"version\":")
        json.string(String(version))
        json.raw(",\"window\":{\"size\":\(windowSize),\"rows\":\(rows),\"partial\":\(partial),\"insufficient_data\":\(insufficientData),\"from\":")
        Self.time(from, &json)
        json.raw(",\"to\":")
        Self.time(to, &json)
        json.raw("},\"status\":")
        json.string(insufficientData ? "insufficient_data" : datasetDrift == true ? "drift" : "ok")
        json.raw(",\"features\":[")
        for (index, feature) in features.enumerated() {
            if index > 0 { json.raw(",") }
            Self.feature(feature, &json)
        }
        json.raw("],\"dataset_drift\":{\"drifted\":")
        json.raw(datasetDrift.map { "\($0)" } ?? "null")
        json.raw(",\"drifted_features\":\(insufficientData ? "null" : String(driftedFeatures)),\"features\":\(features.count),\"share\":")
        Self.number(driftedShare, &json)
        json.raw(",\"threshold\":")
        json.number(driftShareThreshold)
        json.raw("},\"prediction_drift\":")
        if let prediction { Self.feature(prediction, &json) } else { json.raw("null") }
        json.raw(",\"performance\":{\"realised\":")
        if let realised = performance.realised {
            json.raw("{")
            for (index, key) in realised.keys.sorted().enumerated() {
                if index > 0 { json.raw(",") }
                json.string(key)
                json.raw(":")
                Self.number(realised[key], &json)
            }
            json.raw("}")
        } else {
            json.raw("null")
        }
        json.raw(",\"estimated\":")
        if let accuracy = performance.estimatedAccuracy {
            json.raw("{\"accuracy\":")
            json.number(accuracy)
            json.raw(",\"calibrated\":\(performance.calibrated)}")
        } else {
            json.raw("null")
        }
        json.raw(",\"labelled_rows\":\(performance.labelledRows)},\"alerts\":[")
        var first = true
        for name in AlertBook.Name.allCases {
            guard let state = alerts.states[name.rawValue] else { continue }
            if !first { json.raw(",") }
            first = false
            json.raw("{\"alertname\":")
            json.string(name.rawValue)
            json.raw(",\"state\":")
            json.string(state.firing ? "firing" : state.streak > 0 ? "pending" : "inactive")
            json.raw(",\"since\":")
            Self.time(state.startsAt, &json)
            json.raw(",\"value\":")
            Self.number(state.value, &json)
            json.raw(",\"threshold\":")
            Self.number(state.threshold, &json)
            json.raw("}")
        }
        json.raw("],\"evaluated_at\":")
        Self.time(evaluatedAt, &json)
        json.raw("}")
        return json.text
    }

    private static func feature(_ feature: Feature, _ json: inout JSONWriter) {
        json.raw("{\"name\":")
        json.string(feature.name)
        json.raw(",\"type\":")
        json.string(feature.kind.rawValue)
        json.raw(",\"method\":")
        if let drift = feature.drift { json.string(drift.method.rawValue) } else { json.raw("null") }
        json.raw(",\"score\":")
        number(feature.drift?.score, &json)
        json.raw(",\"statistic\":")
        number(feature.drift?.statistic, &json)
        json.raw(",\"p_value\":")
        number(feature.drift?.pValue, &json)
        json.raw(",\"threshold\":")
        number(feature.drift?.threshold, &json)
        json.raw(",\"drifted\":")
        json.raw(feature.drift.map { "\($0.drifted)" } ?? "null")
        json.raw("}")
    }

    /// A number, or null for nil and for NaN or ±∞ (which JSON cannot carry).
    private static func number(_ value: Double?, _ json: inout JSONWriter) {
        guard let value, value.isFinite else { return json.raw("null") }
        json.raw(String(value))
    }

    private static func time(_ seconds: Double?, _ json: inout JSONWriter) {
        guard let seconds else { return json.raw("null") }
        json.string(StoreClock.timestamp(Date(timeIntervalSince1970: seconds)))
    }
}
