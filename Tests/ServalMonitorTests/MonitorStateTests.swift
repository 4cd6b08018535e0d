import Foundation
import ServalServing
import ServalStore
import ServalTensor
import ServalTestSupport
import ServalWire
import Testing
@testable import ServalMonitor

/// Windows, status, the intake queue, settings and the payload log, without a server.
@Suite struct MonitorStateTests {
    static func observation(model: String = "m", version: Int = 1, rows: [[Float]], labels: [Int64]? = nil, probabilities: [[Float]]? = nil, id: String? = nil) -> Observation {
        let input = Tensor(shape: [rows.count, rows.first?.count ?? 0], scalars: rows.flatMap { $0 })
        var outputs: [(name: String, value: Value)] = []
        if let labels { outputs.append(("label", .tensor(Tensor(shape: [labels.count], scalars: labels)))) }
        if let probabilities { outputs.append(("probabilities", .tensor(Tensor(shape: [probabilities.count, probabilities[0].count], scalars: probabilities.flatMap { $0 })))) }
        return Observation(model: model, version: version, arm: nil, request: InferenceRequest(id: id, inputs: ["X": input]),
                           response: InferenceResponse(modelName: model, modelVersion: String(version), id: id, outputs: outputs), latency: 0.001, time: 1000)
    }

    static func monitor(window: Int = 40, reference rows: Int = 200) throws -> ModelMonitor {
        let column = (0..<rows).map { Double($0 % 50) }
        return try ModelMonitor(model: "m", config: MonitoringConfig(window: window),
                                reference: ReferenceData(features: ["a", "b"], columns: [column, column], labels: nil))
    }

    static func append(_ monitor: inout ModelMonitor, _ values: [Float], version: Int = 1) {
        let observation = Self.observation(version: version, rows: values.map { [$0, $0] }, labels: values.map { _ in 1 }, probabilities: values.map { _ in [0.2, 0.8] })
        let rows = monitor.extract(observation, input: "X")!
        monitor.append(rows, version: version, time: 1000)
    }

    @Test func fewerThanThirtyRowsIsInsufficientDataNeverNoDrift() throws {
        var monitor = try Self.monitor()
        Self.append(&monitor, (0..<29).map { Float($0) })
        let status = monitor.status(version: 1, now: 0)
        #expect(status.rows == 29)
        #expect(status.insufficientData)
        #expect(status.datasetDrift == nil)
        #expect(status.features.allSatisfy { $0.drift == nil })
        #expect(status.json().contains("\"status\":\"insufficient_data\""))
        Self.append(&monitor, [29])
        let enough = monitor.status(version: 1, now: 0)
        #expect(!enough.insufficientData)
        #expect(enough.partial)  // 30 of 40
        #expect(enough.datasetDrift != nil)
        #expect(enough.features.allSatisfy { $0.drift != nil })
    }

    @Test func theWindowSlidesOverTheLastRows() throws {
        var monitor = try Self.monitor(window: 40)
        // 40 in-distribution rows, then 40 far outside: only the last 40 count.
        Self.append(&monitor, (0..<40).map { Float($0 % 50) })
        #expect(monitor.status(version: 1, now: 0).datasetDrift == false)
        Self.append(&monitor, (0..<40).map { Float(1000 + $0) })
        let status = monitor.status(version: 1, now: 0)
        #expect(status.rows == 40)
        #expect(!status.partial)
        #expect(status.appended == 80)
        #expect(status.datasetDrift == true)
        #expect(monitor.windows[1]!.column(0).allSatisfy { $0 >= 1000 })
    }

    @Test func eachVersionHasItsOwnWindow() throws {
        var monitor = try Self.monitor()
        Self.append(&monitor, (0..<35).map { Float($0) }, version: 1)
        Self.append(&monitor, (0..<5).map { Float($0) }, version: 2)
        #expect(monitor.status(version: 1, now: 0).rows == 35)
        #expect(monitor.status(version: 2, now: 0).rows == 5)
    }

    @Test func estimatedAccuracyWithoutReferenceLabelsIsTheMeanConfidenceUncalibrated() throws {
        var monitor = try Self.monitor()
        Self.append(&monitor, (0..<30).map { Float($0) })
        let status = monitor.status(version: 1, now: 0)
        #expect(abs(status.performance.estimatedAccuracy! - 0.8) < 1e-6)
        #expect(!status.performance.calibrated)
    }

    @Test func anInputThatIsNotRowsOfTheFeaturesIsNotTaken() throws {
        let monitor = try Self.monitor()
        #expect(monitor.extract(Self.observation(rows: [[1, 2, 3]]), input: "X") == nil)
        #expect(monitor.extract(Self.observation(rows: [[1, 2]]), input: "Y") == nil)
    }

    @Test func theIntakeDropsAndCountsWhenFullWithoutWaiting() {
        let intake = ObservationIntake(capacity: 2)
        intake.setRates(["m": 1])
        for _ in 0..<5 { intake.observe(Self.observation(rows: [[1, 2]])) }
        intake.observe(Self.observation(model: "unmonitored", rows: [[1, 2]]))
        #expect(intake.dropped("m") == 3)
        #expect(intake.drain().count == 2)
        #expect(intake.drain().isEmpty)
        // Room again after the drain.
        intake.observe(Self.observation(rows: [[1, 2]]))
        #expect(intake.drain().count == 1)
    }

    @Test func aSampleRateOfZeroLogsNothing() {
        let intake = ObservationIntake(capacity: 10)
        intake.setRates(["m": 0])
        for _ in 0..<20 { intake.observe(Self.observation(rows: [[1, 2]])) }
        #expect(intake.drain().isEmpty)
    }

    @Test func calibrationIsIsotonic() throws {
        // 0.7 right and 0.8 wrong violate monotonicity: they pool to 0.5.
        let calibration = try #require(IsotonicCalibration([(0.6, 0), (0.7, 1), (0.8, 0), (0.9, 1)]))
        #expect(calibration(0.6) == 0)
        #expect(calibration(0.75) == 0.5)
        #expect(abs(calibration(0.65) - 0.25) < 1e-12)
        #expect(calibration(0.95) == 1)  // clipped
        #expect(calibration(0.1) == 0)
    }

    @Test(arguments: [
        ("monitoring: {window: 0}", "window: expected an integer in 1…1000000, got 0"),
        ("monitoring: {sample_rate: 1.5}", "sample_rate: expected a number in [0, 1], got 1.5"),
        ("monitoring: {drift: {method: kss}}", "drift.method: unknown method 'kss'"),
        ("monitoring: {window: many}", "window"),
        ("monitoring: {alert: {webhook: 'ftp://x', for_windows: 2}}", "alert.webhook: expected an http(s) URL"),
    ])
    func badSettingsNameTheField(_ yaml: String, _ message: String) {
        #expect {
            _ = try MonitoringConfig.fromModelConfig(yaml, file: "m/config.yaml")
        } throws: { error in
            "\(error)".hasPrefix("m/config.yaml: monitoring") && "\(error)".contains(message)
        }
    }

    @Test func settingsReadFromYAMLAndRoundTripAsJSON() throws {
        let yaml = """
            max_batch_size: 8
            monitoring:
              reference: reference.csv
              categorical: [cat, 2]
              window: 300
              drift: {method: {a: psi, b: ks}, threshold: {a: 0.2}, share: 0.3}
              performance: {task: regression, label_column: y, max_mae: 1.5}
            """
        let config = try #require(try MonitoringConfig.fromModelConfig(yaml, file: "m/config.yaml"))
        #expect(config.window == 300)
        #expect(config.categorical == [.name("cat"), .index(2)])
        #expect(config.drift.method(for: "a") == .psi)
        #expect(config.drift.method(for: "c") == nil)
        #expect(config.drift.threshold(for: "a") == 0.2)
        #expect(config.drift.share == 0.3)
        #expect(config.performance?.task == .regression)
        #expect(try MonitoringConfig.fromJSON(config.json()) == config)
        #expect(try MonitoringConfig.fromModelConfig("max_batch_size: 8", file: "m/config.yaml") == nil)
    }

    @Test(arguments: TestStores.backends)
    func retentionKeepsTheNewestRowsAndDropsOldOnes(_ dialect: SQLDialect) async throws {
        let store = try await TestStores.make(dialect)
        let log = try await PayloadLog(store: store, replica: "only")
        let model = "retention-\(UUID().uuidString.prefix(8))"
        let entries = (0..<10).map { index in
            PayloadLog.Entry(model: model, requestID: "r\(index)", version: 1, arm: nil, time: Double(1000 + index), latencyMilliseconds: 1, rows: 1,
                             entry: "{\"id\":\"r\(index)\"}", window: nil)
        }
        try await log.write(entries)
        // The same id again replaces its row.
        try await log.write([PayloadLog.Entry(model: model, requestID: "r9", version: 2, arm: nil, time: 1009, latencyMilliseconds: 1, rows: 1,
                                              entry: "{\"id\":\"r9\",\"again\":true}", window: nil)])
        #expect(try await log.lines(model: model, limit: 100, since: nil).count == 10)
        #expect(try await log.lines(model: model, limit: 100, since: nil).last == "{\"id\":\"r9\",\"again\":true}")
        // At most 6 rows, none older than 1002 at now = 1010 with max_age 8.
        let removed = try await log.purge(model: model, maxRows: 6, maxAge: 8, now: 1010)
        #expect(removed == 4)
        let kept = try await log.lines(model: model, limit: 100, since: nil)
        #expect(kept.count == 6)
        #expect(kept.first == "{\"id\":\"r4\"}")
        let recent = try await log.purge(model: model, maxRows: 100, maxAge: 3, now: 1010)
        #expect(recent == 3)
        #expect(try await log.lines(model: model, limit: 2, since: nil) == ["{\"id\":\"r8\"}", "{\"id\":\"r9\",\"again\":true}"])
        #expect(try await log.lines(model: model, limit: 10, since: 1009) == ["{\"id\":\"r9\",\"again\":true}"])
        await store.close()
    }

    @Test(arguments: TestStores.backends)
    func replicasReadEachOthersRowsAndOneHoldsTheAlertLease(_ dialect: SQLDialect) async throws {
        let store = try await TestStores.make(dialect)
        let a = try await PayloadLog(store: store, replica: "a"), b = try await PayloadLog(store: store, replica: "b")
        let model = "replicas-\(UUID().uuidString.prefix(8))"
        func entry(_ id: String, _ value: Double) -> PayloadLog.Entry {
            PayloadLog.Entry(model: model, requestID: id, version: 1, arm: nil, time: value, latencyMilliseconds: 1, rows: 1, entry: "{}",
                             window: MonitoredRows(rows: 1, features: [value]).json())
        }
        #expect(try await a.lastSequence(model: model) == 0)
        try await a.write([entry("a1", 1), entry("a2", 2)])
        try await b.write([entry("b1", 3), entry("b2", 4)])
        try await a.write([entry("a3", 5)])
        let top = try await a.lastSequence(model: model)
        // A sees only B's rows, oldest first; B only A's; the limit keeps the newest.
        #expect(try await a.othersWindows(model: model, after: 0, through: top, limit: 10).map(\.time) == [3, 4])
        #expect(try await b.othersWindows(model: model, after: 0, through: top, limit: 10).map(\.time) == [1, 2, 5])
        #expect(try await b.othersWindows(model: model, after: 0, through: top, limit: 2).map(\.time) == [2, 5])
        let second = try #require(try await a.othersWindows(model: model, after: 0, through: top, limit: 10).last)
        #expect(MonitoredRows.parse(second.window)?.features == [4])
        #expect(try await a.othersWindows(model: model, after: second.sequence, through: top, limit: 10).isEmpty)
        // The alert lease: A takes it; B cannot while A renews; B takes it over once A's lapses; then A cannot.
        let lease = "alerts-\(model)"
        #expect(try await a.holdLease(lease, now: 100, seconds: 10) == (true, false))
        #expect(try await b.holdLease(lease, now: 105, seconds: 10) == (false, false))
        #expect(try await a.holdLease(lease, now: 108, seconds: 10) == (true, false))
        #expect(try await b.holdLease(lease, now: 117, seconds: 10) == (false, false))
        #expect(try await b.holdLease(lease, now: 119, seconds: 10) == (true, true))
        #expect(try await a.holdLease(lease, now: 120, seconds: 10) == (false, false))
        #expect(try await b.holdLease(lease, now: 121, seconds: 10) == (true, false))
        await store.close()
    }
}

extension MonitorStateTests {
    @Test func aWrongTypeNamesTheFieldOnce() {
        #expect {
            _ = try MonitoringConfig.fromModelConfig("monitoring: {window: many}", file: "m/config.yaml")
        } throws: { error in
            "\(error)".hasPrefix("m/config.yaml: monitoring.window: ")
        }
    }
}

extension MonitorStateTests {
    @Test func aConfigOfCommentsOnlyHasNoMonitoring() throws {
        #expect(try MonitoringConfig.fromModelConfig("# monitoring switched on through the API\n", file: "m/config.yaml") == nil)
        #expect(try MonitoringConfig.fromModelConfig("", file: "m/config.yaml") == nil)
    }
}

extension MonitorStateTests {
    @Test func anUnknownFieldIsNamedNotIgnored() {
        #expect {
            _ = try MonitoringConfig.fromModelConfig("monitoring: {reference: r.csv, windw: 100}", file: "m/config.yaml")
        } throws: { "\($0)".contains("monitoring.windw: unknown field") }
        #expect {
            _ = try MonitoringConfig.fromJSON(Array(#"{"reference": "r.csv", "drift": {"shares": 0.3}}"#.utf8))
        } throws: { "\($0)".contains("drift.shares: unknown field") }
    }
}
