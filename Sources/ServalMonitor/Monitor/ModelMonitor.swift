import Foundation
import ServalServing
import ServalTensor
import ServalWire

/// One model's monitoring: its settings, the reference profile, and a window of logged rows per version.
/// Owned by the `Monitor` actor; nothing here runs on the request path.
struct ModelMonitor: Sendable {
    let model: String
    let config: MonitoringConfig
    let reference: ReferenceData
    /// Per feature of the monitored input, in column order.
    let kinds: [FeatureKind]
    let profile: [FeatureSample]
    let inputName: String?
    var windows: [Int: RowWindow] = [:]
    /// The model's answers on the reference rows, per version (for prediction drift and calibration).
    var referencePredictions: [Int: ReferencePredictions] = [:]
    var codes = LabelCodes()

    struct ReferencePredictions: Sendable {
        var predictions: FeatureSample
        /// Categorical for a classifier's labels, numerical for a regressor's values.
        var kind: FeatureKind
        var calibration: IsotonicCalibration?
    }

    /// `precision`: the monitored input's type. Live rows arrive in it (FP32 for most models), so the reference is
    /// compared at the same precision: 0.2 read from a CSV and 0.2 sent as FP32 must be the same value.
    init(model: String, config: MonitoringConfig, reference: ReferenceData, precision: DType = .float64) throws {
        self.model = model
        self.config = config
        var reference = reference
        if precision == .float32 || precision == .float16 {
            reference = ReferenceData(features: reference.features, columns: reference.columns.map { $0.map { Double(Float($0)) } }, labels: reference.labels)
        }
        self.reference = reference
        kinds = reference.features.enumerated().map { index, name in
            config.categorical.contains(.name(name)) || config.categorical.contains(.index(index)) ? .categorical : .numerical
        }
        for entry in config.categorical {
            switch entry {
            case .name(let name) where !reference.features.contains(name):
                throw MonitoringConfigError("categorical: '\(name)' is not a feature (features: \(reference.features.joined(separator: ", ")))")
            case .index(let index) where !reference.features.indices.contains(index):
                throw MonitoringConfigError("categorical: index \(index) is outside 0..<\(reference.features.count)")
            default: break
            }
        }
        profile = reference.columns.map { FeatureSample($0) }
        if let empty = profile.firstIndex(where: \.isEmpty) {
            throw MonitoringConfigError("reference: column '\(reference.features[empty])' has no finite value")
        }
        inputName = config.input
    }

    /// The monitored input of `served`: the configured one, else its only (or first) input.
    func input(of served: ServedModel) -> String? { inputName ?? served.inputs.first?.name }

    /// The monitored rows of one answered request: the features of its monitored input and the predictions, or
    /// nil when that input is missing or not [rows, features].
    func extract(_ observation: Observation, input: String) -> MonitoredRows? {
        guard let tensor = observation.request.inputs[input], tensor.rank == 2, tensor.shape[1] == reference.features.count,
              let values = try? tensor.doubles() else { return nil }
        let rows = tensor.shape[0]
        let predictions = PredictionReader.read(observation.response.outputs, rows: rows)
        return MonitoredRows(rows: rows, features: values, labels: predictions.labels, values: predictions.values, confidences: predictions.confidences,
                             scores: predictions.positiveScores)
    }

    /// Adds monitored rows to `version`'s window.
    mutating func append(_ rows: MonitoredRows, version: Int, time: Double) {
        let width = reference.features.count
        guard rows.features.count == rows.rows * width else { return }
        // Taken out of the dictionary while it changes: a copy left behind would make every append copy the ring.
        var window = windows.removeValue(forKey: version) ?? RowWindow(capacity: config.window, width: width)
        rows.features.withUnsafeBufferPointer { buffer in
            for row in 0..<rows.rows {
                let prediction = rows.labels.map { codes.code($0[row]) } ?? rows.values?[row] ?? .nan
                window.append(UnsafeBufferPointer(rebasing: buffer[(row * width)..<((row + 1) * width)]),
                              prediction: prediction, confidence: rows.confidences?[row] ?? .nan, time: time)
            }
        }
        windows[version] = window
    }

    /// Runs `served` on the reference rows once (outside its batcher, one thread), for prediction drift and for
    /// calibrating the estimated accuracy when the reference has labels.
    mutating func prepareReference(for served: ServedModel) {
        guard referencePredictions[served.version] == nil, let input = input(of: served),
              let metadata = served.inputs.first(where: { $0.name == input }), let dtype = DType(kserveName: metadata.datatype) else { return }
        let rows = reference.rows, width = reference.features.count
        var labels: [String] = [], values: [Double] = [], confidences: [Double] = []
        let chunk = 1024
        for start in stride(from: 0, to: rows, by: chunk) {
            let end = min(rows, start + chunk)
            var flat: [Float] = []
            flat.reserveCapacity((end - start) * width)
            for row in start..<end { for column in 0..<width { flat.append(Float(reference.columns[column][row])) } }
            guard let tensor = try? Tensor(shape: [end - start, width], scalars: flat).converted(to: dtype),
                  let answer = try? served.inferInline(.init(inputs: [input: tensor])) else { return }
            let read = PredictionReader.read(answer.outputs, rows: end - start)
            labels += read.labels ?? []
            values += read.values ?? []
            confidences += read.confidences ?? []
        }
        let predictions = labels.isEmpty ? FeatureSample(values) : FeatureSample(labels.map { codes.code($0) })
        var calibration: IsotonicCalibration?
        if let truth = reference.labels, labels.count == rows, confidences.count == rows {
            calibration = IsotonicCalibration((0..<rows).map { (confidences[$0], LabelText.normalise(truth[$0]) == labels[$0] ? 1 : 0) })
        }
        referencePredictions[served.version] = ReferencePredictions(
            predictions: predictions, kind: labels.isEmpty ? .numerical : .categorical, calibration: calibration)
    }

    /// Scores `version`'s window against the reference.
    func status(version: Int, now: Double, realised: RealisedPerformance? = nil) -> MonitoringStatus {
        let window = windows[version] ?? RowWindow(capacity: config.window, width: reference.features.count)
        let enough = window.count >= MonitoringStatus.minimumRows
        var features: [MonitoringStatus.Feature] = []
        let columns = enough ? window.columns() : []
        for (index, name) in reference.features.enumerated() {
            var drift: DriftScore?
            if enough {
                let current = FeatureSample(columns[index])
                if !current.isEmpty {
                    drift = DriftTest.evaluate(method: config.drift.method(for: name), kind: kinds[index], reference: profile[index], current: current,
                                               threshold: config.drift.threshold(for: name))
                }
            }
            features.append(.init(name: name, kind: kinds[index], drift: drift))
        }
        var prediction: MonitoringStatus.Feature?
        if let reference = referencePredictions[version], !reference.predictions.isEmpty {
            let predictionKind = reference.kind
            var drift: DriftScore?
            if enough {
                let current = FeatureSample(window.predictionColumn)
                if !current.isEmpty {
                    drift = DriftTest.evaluate(method: config.drift.methods["prediction"], kind: predictionKind, reference: reference.predictions,
                                               current: current, threshold: config.drift.thresholds["prediction"])
                }
            }
            prediction = .init(name: "prediction", kind: predictionKind, drift: drift)
        }
        var estimated: Double?
        var calibrated = false
        let confidences = window.confidenceColumn.filter(\.isFinite)
        if !confidences.isEmpty {
            if let calibration = referencePredictions[version]?.calibration {
                estimated = confidences.reduce(0) { $0 + calibration($1) } / Double(confidences.count)
                calibrated = true
            } else {
                estimated = confidences.reduce(0, +) / Double(confidences.count)
            }
        }
        let range = window.timeRange
        return MonitoringStatus(
            model: model, version: version, windowSize: config.window, rows: window.count, from: range?.from, to: range?.to, features: features,
            prediction: prediction, driftShareThreshold: config.drift.share,
            performance: .init(realised: realised?.metrics, estimatedAccuracy: estimated, calibrated: calibrated, labelledRows: realised?.labelledRows ?? 0), evaluatedAt: now,
            appended: window.appended)
    }
}

/// Class labels as numbers for the drift tests: a numeric label is its value; any other gets a code of its own,
/// assigned in the order labels are first seen.
struct LabelCodes: Sendable {
    private var table: [String: Double] = [:]

    mutating func code(_ label: String) -> Double {
        if let number = Double(label) { return number }
        if let code = table[label] { return code }
        let code = Double(table.count)
        table[label] = code
        return code
    }
}

/// The rows of one request as the monitor keeps them (and stores them compactly beside the log line).
struct MonitoredRows: Sendable, Codable {
    var rows: Int
    /// Row-major, `rows` × features.
    var features: [Double]
    var labels: [String]?
    var values: [Double]?
    var confidences: [Double]?
    /// Positive-class probabilities of a binary classifier.
    var scores: [Double]?

    enum CodingKeys: String, CodingKey { case rows = "n", features = "x", labels = "l", values = "v", confidences = "c", scores = "s" }

    /// The compact JSON, written directly (this runs for every logged request); `parse` reads it back.
    func json() -> String {
        var json = JSONWriter(capacity: 64 + features.count * 12)
        func numbers(_ key: String, _ values: [Double]) {
            json.raw(",\"\(key)\":[")
            for (index, value) in values.enumerated() {
                if index > 0 { json.raw(",") }
                if value.isFinite { json.raw(String(value)) } else { json.raw(value.isNaN ? "\"nan\"" : value > 0 ? "\"inf\"" : "\"-inf\"") }
            }
            json.raw("]")
        }
        json.raw("{\"n\":\(rows)")
        numbers("x", features)
        if let labels {
            json.raw(",\"l\":[")
            for (index, label) in labels.enumerated() {
                if index > 0 { json.raw(",") }
                json.string(label)
            }
            json.raw("]")
        }
        if let values { numbers("v", values) }
        if let confidences { numbers("c", confidences) }
        if let scores { numbers("s", scores) }
        json.raw("}")
        return json.text
    }

    static func parse(_ text: String) -> MonitoredRows? {
        let decoder = JSONDecoder()
        decoder.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return try? decoder.decode(MonitoredRows.self, from: Data(text.utf8))
    }
}
