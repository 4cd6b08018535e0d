import Foundation
import Metrics
import ServalServing
import ServalWire

/// One piece of ground truth: the id of a logged prediction and its true value (one per row of that request).
public struct FeedbackItem: Sendable {
    public var id: String
    public var groundTruth: JSONValue

    public init(id: String, groundTruth: JSONValue) {
        self.id = id
        self.groundTruth = groundTruth
    }

    /// `{"id", "ground_truth"}` or `{"items": [...]}`; the message names what is missing.
    public static func parse(_ body: JSONValue) throws -> [FeedbackItem] {
        func item(_ value: JSONValue, _ place: String) throws -> FeedbackItem {
            guard let object = value.object else { throw MonitorError(.invalid, "\(place): expected an object with 'id' and 'ground_truth'") }
            guard let id = object["id"]?.string, !id.isEmpty else { throw MonitorError(.invalid, "\(place)id: expected the request id (a string) of a logged prediction") }
            guard let truth = object["ground_truth"] else { throw MonitorError(.invalid, "\(place)ground_truth: missing for id '\(id)'") }
            return FeedbackItem(id: id, groundTruth: truth)
        }
        if let items = body["items"] {
            guard let array = items.array, !array.isEmpty else { throw MonitorError(.invalid, "items: expected a non-empty array of {id, ground_truth}") }
            return try array.enumerated().map { try item($1, "items[\($0)].") }
        }
        return [try item(body, "")]
    }
}

/// The realised figures of one version: metrics over its last `window` labelled rows.
struct RealisedPerformance: Sendable {
    var metrics: [String: Double]
    var labelledRows: Int
}

extension Monitor {
    /// Joins ground truth to logged predictions by id. Every item is checked before anything is written: an unknown
    /// id is 404, a value of the wrong type or count is 400 naming the id. Feedback sent again replaces the earlier.
    /// Returns how many rows were labelled.
    public func feedback(_ model: String, _ items: [FeedbackItem], now: Double) async throws -> Int {
        guard let monitor = monitors[model] else { try await notMonitored(model) }
        // Predictions still on their way to the log are written first, so feedback right after a response finds it.
        await flush()
        // The same id twice in one call: the later value wins, as a later call would.
        var order: [String] = []
        var latest: [String: FeedbackItem] = [:]
        for item in items {
            if latest[item.id] == nil { order.append(item.id) }
            latest[item.id] = item
        }
        let logged = try await log.logged(model: model, ids: order)
        var truths: [(id: String, json: String)] = []
        var rows = 0
        for id in order {
            let item = latest[id]!
            guard let entry = logged[item.id] else {
                throw MonitorError(.notFound, "feedback: model '\(model)' has no logged prediction with id '\(item.id)'")
            }
            // The configured task decides the expected type; without one, what the model answered does.
            let regression = monitor.config.performance.map { $0.task == .regression }
                ?? entry.monitored.flatMap(MonitoredRows.parse).map { $0.labels == nil && $0.values != nil } ?? false
            let values = try Self.values(item, rows: entry.rows, regression: regression)
            var json = JSONWriter()
            json.raw("[")
            for (index, value) in values.enumerated() {
                if index > 0 { json.raw(",") }
                switch value {
                case .number(let number): json.number(number)
                case .string(let text): json.string(text)
                default: json.raw("null")
                }
            }
            json.raw("]")
            truths.append((item.id, json.text))
            rows += values.count
        }
        try await log.setGroundTruth(model: model, truths, now: now)
        labelled[model] = true
        Counter(label: "serval_feedback_total", dimensions: [("model", model)]).increment(by: rows)
        try await refreshRealised(model, force: true)
        return rows
    }

    /// One value per row: a scalar (or one-element list) for a one-row request, a list of `rows` values otherwise.
    static func values(_ item: FeedbackItem, rows: Int, regression: Bool) throws -> [JSONValue] {
        let list: [JSONValue]
        switch item.groundTruth {
        case .array(let values): list = values
        case .numbers(let values): list = values.map { .number($0) }
        default: list = [item.groundTruth]
        }
        guard list.count == rows else {
            throw MonitorError(.invalid, "feedback: id '\(item.id)': ground_truth has \(list.count) value(s), the request had \(rows) row(s)")
        }
        for value in list {
            switch value {
            case .number(let number) where regression || number == number.rounded(): continue
            case .string where !regression: continue
            default:
                let expected = regression ? "a number" : "a class label (a string or an integer)"
                throw MonitorError(.invalid, "feedback: id '\(item.id)': ground_truth must be \(expected) per row")
            }
        }
        return list
    }

    func notMonitored(_ model: String) async throws -> Never {
        if let problem = problems[model] { throw MonitorError(.conflict, "model '\(model)': monitoring is not running: \(problem)") }
        guard await manager.knows(model) else { throw MonitorError(.notFound, "unknown model '\(model)'") }
        throw MonitorError(.notFound, "model '\(model)' has no monitoring configured (set it in config.yaml or PUT /v2/models/\(model)/monitoring)")
    }

    /// Recomputes realised performance of each of `model`'s versions from the labelled rows in the store, when
    /// what is labelled changed since the last time (feedback here, through another replica, or a purge), or
    /// always with `force` (feedback taken here: its rows may share a timestamp with the last).
    func refreshRealised(_ model: String, force: Bool = false) async throws {
        guard let monitor = monitors[model] else { return }
        // The count first, then the rows: feedback committed between the two reads then makes the figures newer
        // than the count, never older. The other way round, a count that already included new feedback would make
        // an alert evaluation due with the figures from before it, and no later one would be due for them.
        let totals = try await log.labelledTotals(model: model)
        let basis = RealisedBasis(totals: totals, versions: Set(monitor.windows.keys), config: monitor.config)
        if !force, realisedBasis[model] == basis { return }
        var figures: [Int: RealisedPerformance] = [:]
        for version in monitor.windows.keys {
            let labelled = try await log.labelled(model: model, version: version, limit: monitor.config.window)
            var truth: [String] = [], predicted: [String] = [], scores: [Double] = []
            var truthValues: [Double] = [], predictedValues: [Double] = []
            var hasScores = true
            for (rows, text) in labelled {
                guard let values = try? Array(text.utf8).withUnsafeBytes({ try JSONParser.parse($0) }).array, values.count == rows.rows else { continue }
                for row in 0..<rows.rows {
                    if let labels = rows.labels {
                        switch values[row] {
                        case .string(let label): truth.append(label)
                        case .number(let number): truth.append(LabelText.format(number))
                        default: continue
                        }
                        predicted.append(labels[row])
                        if let score = rows.scores?[row] { scores.append(score) } else { hasScores = false }
                    } else if let outputs = rows.values, case .number(let number) = values[row] {
                        truthValues.append(number)
                        predictedValues.append(outputs[row])
                    }
                }
            }
            let keep = monitor.config.window
            if !truth.isEmpty {
                let start = max(0, truth.count - keep)
                let metrics = PerformanceMetrics.classification(
                    truth: Array(truth[start...]), predicted: Array(predicted[start...]), scores: hasScores ? Array(scores[start...]) : nil)
                figures[version] = RealisedPerformance(metrics: metrics, labelledRows: truth.count - start)
            } else if !truthValues.isEmpty {
                let start = max(0, truthValues.count - keep)
                figures[version] = RealisedPerformance(
                    metrics: PerformanceMetrics.regression(truth: Array(truthValues[start...]), predicted: Array(predictedValues[start...])),
                    labelledRows: truthValues.count - start)
            }
        }
        realised[model] = figures
        realisedBasis[model] = basis
        realisedRefreshes += 1
        statuses[model] = nil
    }
}

/// What a model's realised figures were computed from: recomputed only when it changes.
struct RealisedBasis: Equatable {
    var totals: [Int: PayloadLog.LabelledTotal]
    var versions: Set<Int>
    var config: MonitoringConfig
}
