import Foundation
import Logging
import Metrics
import ServalRegistry
import ServalServing
import ServalStore
import ServalTensor
import ServiceLifecycle

/// Model monitoring, beside the request path: takes sampled observations from the `ObservationIntake`, keeps the
/// payload log in the store and a window per model version in memory, and scores the windows against each
/// model's reference (at most once a second), publishing status and gauges. Replicas sharing the store add each
/// other's logged rows to their windows every evaluation, so each scores the model's traffic, not its own share;
/// one of them at a time (the holder of the store's alert lease) evaluates alerts and sends their webhooks.
/// Settings come from the `monitoring:` section of a model's `config.yaml`, or from `PUT .../monitoring`, which
/// the registry stores and audits.
public actor Monitor {
    public nonisolated let intake: ObservationIntake
    let manager: ModelManager
    /// The model repository: each model's `config.yaml` and reference file are in its folder.
    let repositoryRoot: URL
    let registry: Registry
    let log: PayloadLog
    private let ingestion = AsyncLock()
    let logger: Logger
    /// Where `logger:` settings send CloudEvents.
    private let cloudEvents: CloudEventSink
    var monitors: [String: ModelMonitor] = [:]
    /// Why a model that asks for monitoring has none (its settings or reference are invalid).
    var problems: [String: String] = [:]
    var statuses: [String: [Int: MonitoringStatus]] = [:]
    /// Realised performance by model and version, from the labelled rows in the store.
    var realised: [String: [Int: RealisedPerformance]] = [:]
    private var published: Set<[String]> = []
    /// Alert states by model and version (persisted, so a restart neither re-fires nor forgets a firing alert).
    var alerts: [String: [Int: AlertBook]] = [:]
    /// Models known to have feedback, and when that was last looked up for the others.
    var labelled: [String: Bool] = [:]
    private var labelledChecked: [String: Double] = [:]
    /// What each model's realised figures were last computed from (its labelled rows per version count the
    /// windows performance alerts evaluate), and how often they were computed (tests read it).
    var realisedBasis: [String: RealisedBasis] = [:]
    var realisedRefreshes = 0
    /// Where alert payloads point receivers (the report page); e.g. `http://host:8000`.
    let externalURL: String
    /// Signs alert webhooks like every other Serval webhook (empty: unsigned).
    let webhookSecret: String
    private var alertHandlers: [@Sendable (AlertEvent) async -> Void] = []
    /// Seconds between the points of each version's history (drift share, accuracy, request rate, p99).
    let seriesInterval: Double
    /// Logged requests and their latencies since the last history point, by model and version.
    private var traffic: [String: [Int: (requests: Int, milliseconds: [Double], since: Double)]] = [:]
    private var lastPoint: [String: [Int: Double]] = [:]
    /// Each version's last scoring, reused while no row has reached its window since (with the same settings).
    private var scored: [String: [Int: ScoredWindow]] = [:]
    /// Windows scored so far: an evaluation with nothing new scores nothing (tests read it).
    private(set) var scorings = 0
    /// How far each model's windows have read other replicas' rows.
    private var cursors: [String: ReplicaCursor] = [:]
    /// Whether replicas can share this store (PostgreSQL). A SQLite file has one process: it reads no one else's
    /// rows and needs no lease.
    let shared: Bool
    /// Whether this replica holds the alert lease (it evaluates alerts; the others show what the holder saved).
    public private(set) var leadsAlerts: Bool
    /// Seconds an alert lease lasts unless renewed (each evaluation renews it).
    public static let alertLeaseSeconds = 10.0

    /// A scoring and what it was made from (its status carries the window's `appended` count).
    struct ScoredWindow {
        var config: MonitoringConfig
        var predictionsReady: Bool
        var status: MonitoringStatus
    }

    /// `version`'s status: its window scored against the reference only when rows arrived since the last scoring
    /// (every statistic reads the whole window, so there is nothing to add to an old score); the realised figures,
    /// refreshed from the store on their own schedule, always the latest.
    func currentStatus(_ monitor: ModelMonitor, version: Int, now: Double) -> MonitoringStatus {
        let figures = realised[monitor.model]?[version]
        let appended = monitor.windows[version]?.appended ?? 0
        let ready = monitor.referencePredictions[version] != nil
        if let last = scored[monitor.model]?[version], last.status.appended == appended, last.config == monitor.config, last.predictionsReady == ready {
            var status = last.status
            status.evaluatedAt = now
            status.performance.realised = figures?.metrics
            status.performance.labelledRows = figures?.labelledRows ?? 0
            return status
        }
        scorings += 1
        let status = monitor.status(version: version, now: now, realised: figures)
        scored[monitor.model, default: [:]][version] = ScoredWindow(config: monitor.config, predictionsReady: ready, status: status)
        return status
    }

    /// Other replicas' rows already added: everything up to the oldest of `tops` (the newest sequence numbers of
    /// the last few evaluations), and `seen` above it. Rows are re-read for a few evaluations because a row's
    /// sequence number is taken when its transaction starts: a row can become visible after a newer one.
    struct ReplicaCursor {
        var tops: [Int]
        var seen: Set<Int>
        static let lag = 3
    }

    public init(
        manager: ModelManager, repositoryRoot: URL, registry: Registry, intake: ObservationIntake = ObservationIntake(), externalURL: String = "",
        webhookSecret: String = "", seriesInterval: Double = 60, logger: Logger
    ) async throws {
        self.seriesInterval = seriesInterval
        self.externalURL = externalURL
        self.webhookSecret = webhookSecret
        self.manager = manager
        self.repositoryRoot = repositoryRoot
        self.registry = registry
        self.intake = intake
        self.logger = logger
        log = try await PayloadLog(store: registry.store, replica: RequestID.next())
        shared = log.store.dialect == .postgres
        leadsAlerts = !shared
        cloudEvents = CloudEventSink(logger: logger)
        for (model, version, book) in try await log.alertBooks() { alerts[model, default: [:]][version] = book }
    }

    /// Calls `handler` for every alert that fires or resolves (the hook a retraining pipeline attaches to).
    public func onAlert(_ handler: @escaping @Sendable (AlertEvent) async -> Void) { alertHandlers.append(handler) }

    // MARK: - Settings

    /// Where a model's settings come from.
    public enum Source: String, Sendable { case api, config, none }

    /// The settings in force for `model` and where they came from.
    public func settings(_ model: String) async throws -> (config: MonitoringConfig?, source: Source, problem: String?) {
        let (config, source) = try resolve(model, overrides: try await registry.monitoringSettings())
        return (config, source, config == nil ? nil : problems[model])
    }

    /// The settings of `model`: the API's (stored in the registry) over its `config.yaml`'s.
    private func resolve(_ model: String, overrides: [String: String]) throws -> (MonitoringConfig?, Source) {
        if let text = overrides[model] { return (try MonitoringConfig.fromJSON(Array(text.utf8)), .api) }
        if let config = try fileSettings(model) { return (config, .config) }
        return (nil, .none)
    }

    private func fileSettings(_ model: String) throws -> MonitoringConfig? {
        let url = repositoryRoot.appendingPathComponent(model).appendingPathComponent("config.yaml")
        guard let text = try? String(contentsOf: url, encoding: .utf8) else { return nil }
        return try MonitoringConfig.fromModelConfig(text, file: "\(model)/config.yaml")
    }

    /// Replaces `model`'s settings (nil: back to `config.yaml`), after checking that they load; audited.
    public func setSettings(_ model: String, _ config: MonitoringConfig?, actor: String, reason: String?) async throws {
        if let config { _ = try await build(model, config) }
        try await registry.setMonitoring(model, settings: config.map { String(decoding: $0.json(), as: UTF8.self) }, actor: actor, reason: reason)
        try await reconfigure()
    }

    /// Loads or reloads every model's settings and reference; a model whose settings did not change keeps its windows.
    public func reconfigure() async throws {
        let overrides = try await registry.monitoringSettings()
        var names = Set(await manager.index().map(\.name))
        names.formUnion(overrides.keys)
        var next: [String: ModelMonitor] = [:]
        var problems: [String: String] = [:]
        for name in names.sorted() {
            do {
                guard let config = try resolve(name, overrides: overrides).0 else { continue }
                if let current = monitors[name], current.config == config {
                    next[name] = current
                    continue
                }
                var monitor = try await build(name, config)
                try await refill(&monitor)
                // Refilled rows were evaluated before the restart (or belong to other settings): alerts count windows from here.
                for (version, window) in monitor.windows { alerts[name, default: [:]][version, default: AlertBook()].rowWindows = window.appended / config.window }
                next[name] = monitor
                logger.info("monitoring", metadata: ["model": "\(name)", "features": "\(monitor.reference.features.count)", "reference_rows": "\(monitor.reference.rows)"])
            } catch {
                problems[name] = "\(error)"
                if self.problems[name] != problems[name] { logger.error("monitoring disabled", metadata: ["model": "\(name)", "error": "\(error)"]) }
            }
        }
        for model in next.keys where monitors[model] == nil {
            // The counters exist (at 0) from the start, so dashboards and alert rules see a series before the first event.
            Counter(label: "serval_payload_log_dropped_total", dimensions: [("model", model)]).increment(by: 0)
            Counter(label: "serval_feedback_total", dimensions: [("model", model)]).increment(by: 0)
        }
        monitors = next
        self.problems = problems
        statuses = statuses.filter { next[$0.key] != nil }
        scored = scored.filter { next[$0.key] != nil }
        intake.setRates(next.mapValues(\.config.sampleRate))
    }

    private func build(_ model: String, _ config: MonitoringConfig) async throws -> ModelMonitor {
        guard let reference = config.reference else { throw MonitoringConfigError("reference: required (rows the model was trained on)") }
        let url = repositoryRoot.appendingPathComponent(model).appendingPathComponent(reference)
        let data = try ReferenceData.load(url, features: config.features, labelColumn: config.performance?.labelColumn)
        // The monitored input's type, from a loaded version (FP32, the usual export, when none is loaded yet).
        let served = await manager.readyModels(named: model).first
        let input = served?.inputs.first { $0.name == (config.input ?? served?.inputs.first?.name) }
        let precision = input.flatMap { DType(kserveName: $0.datatype) } ?? .float32
        return try ModelMonitor(model: model, config: config, reference: data, precision: precision)
    }

    /// Fills a new monitor's windows from the newest logged rows, so a restart does not start from empty; other
    /// replicas' rows are read from there on.
    private func refill(_ monitor: inout ModelMonitor) async throws {
        let top = shared ? try await log.lastSequence(model: monitor.model) : 0
        var seen = Set<Int>()
        for row in try await log.recentWindows(model: monitor.model, limit: monitor.config.window) {
            if let rows = MonitoredRows.parse(row.window) { monitor.append(rows, version: row.version, time: row.time) }
            if row.sequence > top { seen.insert(row.sequence) }
        }
        if shared { cursors[monitor.model] = ReplicaCursor(tops: [top], seen: seen) }
    }

    /// Adds the rows other replicas logged for `model` since the last call to its windows, oldest first.
    func addOtherReplicasRows(_ model: String) async throws {
        guard shared, let config = monitors[model]?.config, var cursor = cursors[model], let low = cursor.tops.first else { return }
        // Every suspension first, so the windows change below without interleaving with an ingest.
        let top = try await log.lastSequence(model: model)
        var added: [(row: PayloadLog.WindowRow, rows: MonitoredRows)] = []
        if top > low {
            for row in try await log.othersWindows(model: model, after: low, through: top, limit: config.window) where !cursor.seen.contains(row.sequence) {
                if let rows = MonitoredRows.parse(row.window) { added.append((row, rows)) }
                cursor.seen.insert(row.sequence)
            }
        }
        var served: [Int: ServedModel] = [:]
        for version in Set(added.map(\.row.version)) {
            if let model = try? await manager.resolve(model, version: version, wake: false) { served[version] = model }
        }
        cursor.tops.append(top)
        if cursor.tops.count > ReplicaCursor.lag { cursor.tops.removeFirst() }
        let floor = cursor.tops[0]
        cursor.seen = cursor.seen.filter { $0 > floor }
        guard var monitor = monitors.removeValue(forKey: model) else { return }
        if monitor.config == config {
            for (row, rows) in added {
                if let served = served[row.version] { monitor.prepareReference(for: served) }
                monitor.append(rows, version: row.version, time: row.time)
            }
            cursors[model] = cursor
        }
        monitors[model] = monitor
    }

    /// Gives the alert lease up (a graceful shutdown): another replica, or this one restarted, takes it at once.
    public func releaseAlertLease() async {
        guard shared, leadsAlerts else { return }
        do { try await log.releaseLease("alerts") } catch {
            logger.warning("alert lease not released; it lapses in \(Int(Self.alertLeaseSeconds)) s", metadata: ["error": "\(error)"])
        }
        leadsAlerts = false
    }

    /// Takes or renews the alert lease; on taking it over from another replica, starts from the alert states it
    /// saved, counting windows from here. Without it, the saved states are what this replica shows.
    private func holdAlertLease(now: Double) async {
        guard shared else { return }
        do {
            let lease = try await log.holdLease("alerts", now: now, seconds: Self.alertLeaseSeconds)
            if !lease.held || lease.takenOver {
                var books: [String: [Int: AlertBook]] = [:]
                for (model, version, book) in try await log.alertBooks() { books[model, default: [:]][version] = book }
                if lease.takenOver {
                    for (model, monitor) in monitors {
                        for (version, window) in monitor.windows { books[model, default: [:]][version, default: AlertBook()].rowWindows = window.appended / monitor.config.window }
                    }
                    logger.info("alert lease taken over: this replica evaluates alerts")
                }
                alerts = books
            }
            leadsAlerts = lease.held
        } catch is CancellationError {
            return
        } catch {
            logger.error("alert lease not renewed", metadata: ["error": "\(error)"])
        }
    }

    // MARK: - Intake

    /// Ingests whatever the intake holds now (tests, and feedback, which must see every answered request).
    /// One drain-and-write at a time: a caller that returns has had every observation queued before it called
    /// written, even one another drain took first.
    public func flush() async {
        await ingestion.withLock {
            let pending = self.intake.drain()
            if !pending.isEmpty { await self.ingest(pending) }
        }
    }

    /// Takes what the intake queued: windows first, then one store transaction for the log rows.
    func ingest(_ observations: [Observation]) async {
        // Every suspension first (the versions' models), so the changes below run without interleaving.
        var served: [String: ServedModel] = [:]
        for observation in observations where monitors[observation.model] != nil {
            let key = "\(observation.model)/\(observation.version)"
            if served[key] == nil, let model = try? await manager.resolve(observation.model, version: observation.version, wake: false) { served[key] = model }
        }
        var entries: [PayloadLog.Entry] = []
        entries.reserveCapacity(observations.count)
        for observation in observations {
            // Taken out of the dictionary while it changes, so its windows are changed in place, not copied.
            guard var monitor = monitors.removeValue(forKey: observation.model) else { continue }
            let id = observation.response.id ?? observation.request.id ?? RequestID.next()
            if let sink = monitor.config.logger { cloudEvents.send(observation, id: id, to: sink) }
            var compact: String?
            if let served = served["\(observation.model)/\(observation.version)"], let input = monitor.input(of: served) {
                monitor.prepareReference(for: served)
                if let rows = monitor.extract(observation, input: input) {
                    monitor.append(rows, version: observation.version, time: observation.time)
                    compact = rows.json()
                }
            }
            monitors[observation.model] = monitor
            // Changed in place through the subscripts (a copy taken out would copy the latencies each time).
            traffic[observation.model, default: [:]][observation.version, default: (0, [], observation.time)].requests += 1
            traffic[observation.model, default: [:]][observation.version, default: (0, [], observation.time)].milliseconds.append(observation.latency * 1000)
            let rows = observation.request.inputs.values.first?.shape.first ?? 1
            entries.append(.init(model: observation.model, requestID: id, version: observation.version, arm: observation.arm, time: observation.time,
                                 latencyMilliseconds: observation.latency * 1000, rows: rows, entry: PayloadLog.line(observation, id: id), window: compact))
        }
        do { try await log.write(entries) } catch {
            Counter(label: "serval_payload_log_write_failures_total").increment()
            logger.error("payload log write failed", metadata: ["rows": "\(entries.count)", "error": "\(error)"])
        }
    }

    // MARK: - Evaluation

    /// Scores every window that has rows, refreshes realised performance from the store (feedback may have come
    /// through another replica), and publishes the gauges. Run once a second by the service.
    public func evaluate(now: Double) async {
        var members: [[String]: Double] = [:]
        await holdAlertLease(now: now)
        for model in monitors.keys.sorted() {
            do { try await addOtherReplicasRows(model) } catch is CancellationError {
                return
            } catch {
                logger.error("other replicas' rows not read", metadata: ["model": "\(model)", "error": "\(error)"])
            }
            do {
                // Realised figures only once there is feedback (here, or through another replica: checked every 10 s).
                if labelled[model] != true, now - (labelledChecked[model] ?? 0) >= 10 {
                    labelledChecked[model] = now
                    labelled[model] = try await log.hasFeedback(model: model)
                }
                if labelled[model] == true { try await refreshRealised(model) }
            } catch is CancellationError {
                return  // shutting down
            } catch {
                logger.error("realised performance not refreshed", metadata: ["model": "\(model)", "error": "\(error)"])
            }
            guard let monitor = monitors[model] else { continue }
            for version in monitor.windows.keys {
                var status = currentStatus(monitor, version: version, now: now)
                if leadsAlerts { await evaluateAlerts(monitor, version: version, status: status, now: now) }
                await recordPoint(monitor, status: status, now: now)
                status.alerts = alerts[model]?[version] ?? AlertBook()
                statuses[model, default: [:]][version] = status
                Self.gauges(status, into: &members)
            }
            for name in AlertBook.Name.allCases {
                let firing = alerts[model]?.values.contains { $0.firing.contains(name) } == true
                members[["serval_alert_firing", model, name.rawValue]] = firing ? 1 : 0
            }
        }
        for key in Set(members.keys).union(published) {
            Gauge(label: key[0], dimensions: Self.dimensions(key)).record(members[key] ?? 0)
        }
        published = Set(members.keys)
    }

    /// The status of `model`'s `version` (nil: the version unversioned requests go to), at most a second old.
    public func status(_ model: String, version: Int?, now: Double) async throws -> MonitoringStatus {
        guard let monitor = monitors[model] else { try await notMonitored(model) }
        let chosen: Int
        if let version { chosen = version } else if let labelled = registry.table.version(model, label: Router.defaultLabel) {
            chosen = labelled
        } else {
            chosen = await manager.readyVersions(of: model).max() ?? monitor.windows.keys.max() ?? 0
        }
        if let cached = statuses[model]?[chosen], now - cached.evaluatedAt < 1 { return cached }
        var status = currentStatus(monitor, version: chosen, now: now)
        status.alerts = alerts[model]?[chosen] ?? AlertBook()
        statuses[model, default: [:]][chosen] = status
        return status
    }

    /// Payload-log lines of `model`, oldest first.
    public func logs(_ model: String, limit: Int, since: Double?) async throws -> [String] {
        try await log.lines(model: model, limit: limit, since: since)
    }

    /// Applies each monitored model's retention.
    public func purge(now: Double) async throws {
        for (model, monitor) in monitors {
            let removed = try await log.purge(model: model, maxRows: monitor.config.log.maxRows, maxAge: monitor.config.log.maxAge, now: now)
            if removed > 0 { logger.debug("payload log purged", metadata: ["model": "\(model)", "rows": "\(removed)"]) }
        }
    }

    // MARK: - History

    /// Appends a history point for the version once `seriesInterval` has passed since its last one.
    private func recordPoint(_ monitor: ModelMonitor, status: MonitoringStatus, now: Double) async {
        let model = monitor.model, version = status.version
        if let last = lastPoint[model]?[version], now - last < seriesInterval { return }
        let figures = traffic[model]?[version]
        let elapsed = figures.map { max(now - $0.since, 1e-3) }
        var p99: Double?
        if let milliseconds = figures?.milliseconds, !milliseconds.isEmpty {
            let sorted = milliseconds.sorted()
            p99 = sorted[min(sorted.count - 1, Int((Double(sorted.count) * 0.99).rounded(.up)) - 1)]
        }
        let rate = figures.flatMap { figures in elapsed.map { Double(figures.requests) / $0 / max(monitor.config.sampleRate, 1e-9) } }
        let point = HistoryPoint(
            at: now, driftShare: status.driftedShare, accuracy: status.performance.realised?["accuracy"],
            estimatedAccuracy: status.performance.estimatedAccuracy, requestsPerSecond: lastPoint[model]?[version] == nil ? nil : rate ?? 0, p99Milliseconds: p99)
        do { try await log.appendSeries(model: model, version: version, point, keep: monitor.config.log.maxAge) } catch {
            logger.error("monitoring history not written", metadata: ["model": "\(model)", "error": "\(error)"])
            return
        }
        lastPoint[model, default: [:]][version] = now
        traffic[model, default: [:]][version] = (0, [], now)
    }

    // MARK: - Report page

    /// The status and everything else the report page of `model` shows.
    public func page(_ model: String, version: Int?, now: Double) async throws -> (MonitoringStatus, ReportPage.Context) {
        let status = try await status(model, version: version, now: now)
        guard let monitor = monitors[model] else { try await notMonitored(model) }
        let series = try await log.series(model: model, version: status.version, since: now - 86_400)
        let pointers = registry.table.pointers(model)
        var routes: [(target: String, version: Int?, weight: Int)] = []
        for route in pointers?.traffic?.routes ?? [] {
            routes.append((route.target.name, pointers?.version(of: route.target), route.weight))
        }
        let context = ReportPage.Context(
            histograms: monitor.histograms(version: status.version),
            series: series,
            labels: pointers?.labels ?? [:], traffic: routes, versions: monitor.windows.keys.sorted())
        return (status, context)
    }

    /// Every model with monitoring settings, with its current status or the reason it has none.
    public func overview(now: Double) async -> [(model: String, status: MonitoringStatus?, problem: String?)] {
        var rows: [(model: String, status: MonitoringStatus?, problem: String?)] = []
        for model in Set(monitors.keys).union(problems.keys).sorted() {
            if let status = try? await status(model, version: nil, now: now) { rows.append((model, status, nil)) } else { rows.append((model, nil, problems[model])) }
        }
        return rows
    }

    // MARK: - Alerts

    /// Advances `version`'s alerts on its current figures; a transition is committed with its webhook delivery (the
    /// registry's outbox, retried until the receiver takes it) and handed to the alert handlers.
    private func evaluateAlerts(_ monitor: ModelMonitor, version: Int, status: MonitoringStatus, now: Double) async {
        let model = monitor.model
        var book = alerts[model]?[version] ?? AlertBook()
        let before = book
        let transitions = book.evaluate(
            appendedRows: status.appended, labelledRows: realisedBasis[model]?.totals[version]?.rows ?? 0, window: monitor.config.window,
            forWindows: monitor.config.alert?.forWindows ?? 2, now: now, verdicts: AlertBook.verdicts(status, performance: monitor.config.performance))
        guard book != before else { return }
        let url = monitor.config.alert?.webhook
        let page = externalURL + "/monitoring/" + model
        let deliveries = url == nil ? [] : transitions.map { (id: "alert_" + RequestID.next(), body: AlertPayload.body($0, model: model, version: version, externalURL: page)) }
        do {
            try await log.saveAlerts(model: model, version: version, book: book, now: now, deliveries: deliveries, url: url ?? "", secret: webhookSecret)
        } catch {
            logger.error("alert state not saved; will evaluate again", metadata: ["model": "\(model)", "error": "\(error)"])
            return
        }
        alerts[model, default: [:]][version] = book
        for transition in transitions {
            logger.warning(transition.firing ? "alert firing" : "alert resolved", metadata: [
                "model": "\(model)", "version": "\(version)", "alert": "\(transition.name.rawValue)",
                "value": "\(transition.value.map { String($0) } ?? "-")", "threshold": "\(transition.threshold.map { String($0) } ?? "-")",
            ])
            let event = AlertEvent(model: model, version: version, transition: transition)
            for handler in alertHandlers { await handler(event) }
        }
    }

    // MARK: - Gauges

    private static func gauges(_ status: MonitoringStatus, into members: inout [[String]: Double]) {
        let model = status.model, version = String(status.version)
        members[["serval_monitoring_window_rows", model, version]] = Double(status.rows)
        for feature in status.features {
            guard let drift = feature.drift else { continue }
            members[["serval_feature_drift_score", model, version, feature.name, drift.method.rawValue]] = drift.score.isFinite ? drift.score : 0
            members[["serval_feature_drifted", model, version, feature.name, drift.method.rawValue]] = drift.drifted ? 1 : 0
        }
        if let share = status.driftedShare {
            members[["serval_drifted_feature_share", model, version]] = share
            members[["serval_dataset_drift", model, version]] = status.datasetDrift == true ? 1 : 0
        }
        if let drift = status.prediction?.drift {
            members[["serval_prediction_drift_score", model, version, drift.method.rawValue]] = drift.score.isFinite ? drift.score : 0
        }
        if let accuracy = status.performance.realised?["accuracy"] { members[["serval_model_accuracy", model, version]] = accuracy }
        if let mae = status.performance.realised?["mae"] { members[["serval_model_mae", model, version]] = mae }
        if let estimated = status.performance.estimatedAccuracy {
            members[["serval_model_estimated_accuracy", model, version, String(status.performance.calibrated)]] = estimated
        }
    }

    private static func dimensions(_ key: [String]) -> [(String, String)] {
        switch key[0] {
        case "serval_feature_drift_score", "serval_feature_drifted":
            return [("model", key[1]), ("version", key[2]), ("feature", key[3]), ("method", key[4])]
        case "serval_prediction_drift_score": return [("model", key[1]), ("version", key[2]), ("method", key[3])]
        case "serval_model_estimated_accuracy": return [("model", key[1]), ("version", key[2]), ("calibrated", key[3])]
        case "serval_alert_firing": return [("model", key[1]), ("alert", key[2])]
        default: return [("model", key[1]), ("version", key[2])]
        }
    }
}

/// An alert that fired or resolved, as handed to `Monitor.onAlert` handlers.
public struct AlertEvent: Sendable {
    public let model: String
    public let version: Int
    public let transition: AlertBook.Transition

    public init(model: String, version: Int, transition: AlertBook.Transition) {
        self.model = model
        self.version = version
        self.transition = transition
    }
}

/// Why a monitoring call could not be answered; frontends map `kind` to a status code.
public struct MonitorError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable { case notFound, conflict, invalid }
    public let kind: Kind
    public let message: String
    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }
    public var description: String { message }
}

/// Runs the monitor: ingests queued observations as they arrive, scores windows once a second, and reloads
/// settings and applies retention every `housekeeping` interval. Intake and scoring run on a background thread
/// of their own at the lowest priority, so under load they take what serving leaves and never delay a request.
public struct MonitorService: Service {
    let monitor: Monitor
    let housekeeping: Duration
    private static let background = BackgroundExecutor(name: "serval-monitor")

    public init(monitor: Monitor, housekeeping: Duration = .seconds(5)) {
        self.monitor = monitor
        self.housekeeping = housekeeping
    }

    public func run() async throws {
        let monitor = self.monitor, housekeeping = self.housekeeping
        await cancelWhenGracefulShutdown {
            await withTaskGroup(of: Void.self) { group in
                group.addTask(executorPreference: Self.background) {
                    for await _ in monitor.intake.rings {
                        // Not cancelled by a shutdown halfway through its write: the batch is written whole, then
                        // the loop ends and the shutdown path below writes what is left.
                        await Task(executorPreference: Self.background) { await monitor.flush() }.value
                        if Task.isCancelled { return }
                        // Pace the writer: what arrives meanwhile is written as one batch (one transaction, a few
                        // statements), instead of a transaction per request under load.
                        do { try await Task.sleep(for: .milliseconds(100)) } catch { return }
                    }
                }
                group.addTask(executorPreference: Self.background) {
                    while !Task.isCancelled {
                        do { try await Task.sleep(for: .seconds(1)) } catch { return }
                        await monitor.evaluate(now: Date().timeIntervalSince1970)
                    }
                }
                group.addTask {
                    var last = ContinuousClock.now
                    while !Task.isCancelled {
                        do { try await Task.sleep(for: housekeeping) } catch { return }
                        do {
                            try await monitor.reconfigure()
                            if ContinuousClock.now - last > .seconds(60) {
                                try await monitor.purge(now: Date().timeIntervalSince1970)
                                last = ContinuousClock.now
                            }
                        } catch {
                            monitor.logger.error("monitoring housekeeping failed", metadata: ["error": "\(error)"])
                        }
                    }
                }
                await group.next()
                group.cancelAll()
            }
        }
        // Whatever arrived before the shutdown is still written.
        await monitor.flush()
        await monitor.releaseAlertLease()
    }
}
