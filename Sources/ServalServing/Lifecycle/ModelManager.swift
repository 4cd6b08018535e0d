import Foundation
import Logging
import Metrics
import ServalRegistry
import ServalWire

/// Keeps the served models in step with the repository: loads the versions the policy asks for, warms them
/// up, swaps them in, and unloads the ones no longer wanted, only once a replacement is ready.
/// A version that fails to load is UNAVAILABLE with its reason; the rest keep serving.
public actor ModelManager {
    /// Triton's `--model-control-mode`.
    public enum ControlMode: String, Sendable, CaseIterable {
        /// Load everything at start-up, never change.
        case none
        /// Re-read the repository every `--repository-poll-secs`.
        case poll
        /// Only the load/unload API changes what is served.
        case explicit
    }

    public enum VersionState: Sendable {
        case loading
        case ready(ServedModel)
        case unavailable(String)
        /// Unloaded to free memory (idle, or evicted for the memory budget); the next request loads it again.
        case unloaded(UnloadReason)

        public var name: StateName {
            switch self {
            case .loading: return .loading
            case .ready: return .ready
            case .unavailable: return .unavailable
            case .unloaded: return .unloaded
            }
        }
    }

    /// Why a version that can serve was unloaded.
    public enum UnloadReason: String, Sendable {
        /// Idle for its model's `idle_unload_secs`.
        case idle
        /// Evicted, least recently used first, to fit another version within `--model-memory-limit`.
        case memory
    }

    /// A version's state as the protocols spell it (Triton's repository index).
    public enum StateName: String, Sendable, Equatable {
        case ready = "READY"
        case loading = "LOADING"
        case unavailable = "UNAVAILABLE"
        case unloaded = "UNLOADED"
    }

    /// A row of the repository index (`/v2/repository/index`).
    public struct IndexEntry: Sendable, Equatable {
        public let name: String
        public let version: String
        public let state: StateName
        public let reason: String
        /// Bytes the version holds while loaded (nil: never loaded).
        public var memoryBytes: Int? = nil

        public init(name: String, version: String, state: StateName, reason: String, memoryBytes: Int? = nil) {
            self.name = name
            self.version = version
            self.state = state
            self.reason = reason
            self.memoryBytes = memoryBytes
        }
    }

    /// How versions come and go within the memory they may use (scale to zero, in the manner of ModelMesh).
    public struct Residency: Sendable {
        /// Bytes all loaded versions may hold together (`--model-memory-limit`); nil: no limit.
        public var memoryLimit: Int?
        /// Requests that may wait for one version's cold start (`--cold-start-max-pending`); beyond it, 503.
        public var coldStartMaxPending: Int
        /// Seconds a request waits for a cold start before it gets 503 (`--cold-start-timeout-secs`).
        public var coldStartTimeout: Double

        public init(memoryLimit: Int? = nil, coldStartMaxPending: Int = 64, coldStartTimeout: Double = 30) {
            self.memoryLimit = memoryLimit
            self.coldStartMaxPending = max(0, coldStartMaxPending)
            self.coldStartTimeout = max(0, coldStartTimeout)
        }
    }

    struct ModelRecord {
        var versions: [Int: VersionState] = [:]
        var fingerprints: [Int: String] = [:]
        /// Each version's file, for loading it again after an unload.
        var files: [Int: URL] = [:]
        /// Each version's resident bytes, as last measured (kept across unloads: the estimate for its next load).
        var memory: [Int: Int] = [:]
        var configFingerprint = ""
        var config = ModelConfig()
        /// Why the model as a whole cannot load (bad config, no versions), if so.
        var problem: String?
    }

    struct VersionKey: Hashable, Sendable {
        let model: String
        let version: Int
    }

    /// A load started by a request for an unloaded version, and the requests waiting for it.
    final class ColdStart {
        var waiters: [Int: (continuation: CheckedContinuation<ServedModel, Error>, timer: Task<Void, Never>)] = [:]
        var nextWaiter = 0
        /// Bytes set aside for the version while it loads.
        let reserved: Int

        init(reserved: Int) { self.reserved = reserved }
    }

    public let repository: ModelRepository
    public let mode: ControlMode
    public let residency: Residency
    private var records: [String: ModelRecord] = [:]
    private let logger: Logger
    /// Monotonic seconds; tests inject their own.
    private let clock: @Sendable () -> Double
    /// Sleeps for the cold-start timeout; tests inject one they control.
    private let sleep: @Sendable (Double) async throws -> Void
    private var coldStarts: [VersionKey: ColdStart] = [:]
    /// Awaited before each load; tests hold a load (a cold start in progress) with it.
    private let beforeLoad: (@Sendable (_ model: String, _ version: Int) async -> Void)?

    /// Wraps each loaded version's executor (nil: run the session directly). Tests use it to hold a batch in flight.
    private let executorWrapper: (@Sendable (any BatchExecutor) -> any BatchExecutor)?
    /// Labels (and routes) whose targets stay loaded whatever the version policy says.
    private let pins: RoutingTable
    /// Versions being brought up for a label move that has not committed yet.
    private var transientPins: [String: Set<Int>] = [:]

    public init(
        repository: ModelRepository, mode: ControlMode, pins: RoutingTable = RoutingTable(), residency: Residency = Residency(),
        logger: Logger = Logger(label: "serval.models"), executorWrapper: (@Sendable (any BatchExecutor) -> any BatchExecutor)? = nil,
        clock: @escaping @Sendable () -> Double = { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 },
        sleep: @escaping @Sendable (Double) async throws -> Void = { try await Task.sleep(for: .seconds($0)) },
        beforeLoad: (@Sendable (_ model: String, _ version: Int) async -> Void)? = nil
    ) {
        self.beforeLoad = beforeLoad
        self.repository = repository
        self.mode = mode
        self.residency = residency
        self.clock = clock
        self.sleep = sleep
        self.pins = pins
        self.logger = logger
        self.executorWrapper = executorWrapper
    }

    /// Brings every model in the repository (or only `names`) to its aspired versions.
    public func reconcile(only names: Set<String>? = nil) async throws {
        let entries = try repository.scan()
        let present = Set(entries.map(\.name))
        for name in records.keys where !present.contains(name) && (names == nil || names!.contains(name)) {
            logger.info("model removed from repository; unloading", metadata: ["model": "\(name)"])
            records[name] = nil
        }
        publishStates()
        for entry in entries where names == nil || names!.contains(entry.name) {
            await reconcile(entry)
        }
    }

    private func reconcile(_ entry: ModelRepository.Entry) async {
        let config: ModelConfig
        switch entry.config {
        case .failure(let error):
            records[entry.name, default: ModelRecord()].problem = error.message
            logger.error("cannot read model config; previous versions keep serving", metadata: ["model": "\(entry.name)", "error": "\(error.message)"])
            return
        case .success(let parsed):
            config = parsed
        }
        let configChanged = records[entry.name]?.configFingerprint != entry.configFingerprint
        // The policy decides what loads, and every pinned version (a label's target) loads too.
        let pinned = pins.pinnedVersions(entry.name).union(transientPins[entry.name] ?? []).filter { entry.versions[$0] != nil }
        let aspired = Set((config.versionPolicy ?? .latest(1)).select(from: Array(entry.versions.keys))).union(pinned).sorted()
        records[entry.name, default: ModelRecord()].problem = aspired.isEmpty ? "no version folder (positive integer with model.onnx) matches the version policy" : nil
        records[entry.name]!.config = config
        for version in aspired {
            guard let file = entry.versions[version] else { continue }
            // Loads suspend the actor: read the record afresh each time, and change only this version's entries.
            let current = records[entry.name]?.versions[version]
            let isLoaded: Bool
            if case .ready? = current { isLoaded = true } else { isLoaded = false }
            let unchanged = records[entry.name]?.fingerprints[version] == file.fingerprint && !configChanged
            if unchanged, isLoaded || current != nil { continue }
            if coldStarts[VersionKey(model: entry.name, version: version)] != nil { continue }
            if !isLoaded { records[entry.name]!.versions[version] = .loading }
            records[entry.name]!.files[version] = file.url
            let outcome = await loadWithinBudget(name: entry.name, version: version, file: file.url, config: config, lazily: false)
            guard records[entry.name] != nil else { return }  // unloaded (explicit mode) while it loaded
            switch outcome {
            case .success(let served):
                records[entry.name]!.versions[version] = .ready(served)
            case .failure(let error):
                let reason = error.message
                if case .ready? = current {
                    records[entry.name]!.versions[version] = current
                    logger.error("reload failed; previous copy keeps serving", metadata: ["model": "\(entry.name)", "version": "\(version)", "error": "\(reason)"])
                } else {
                    records[entry.name]!.versions[version] = .unavailable(reason)
                    logger.error("model version failed to load", metadata: ["model": "\(entry.name)", "version": "\(version)", "error": "\(reason)"])
                }
            }
            records[entry.name]!.fingerprints[version] = file.fingerprint
        }
        // Unload what is no longer aspired, but never leave the model with nothing ready.
        var record = records[entry.name]!
        let readyAspired = aspired.contains { record.versions[$0].map(Self.canServe) ?? false }
        for version in record.versions.keys where !aspired.contains(version) {
            let isReady: Bool
            if case .ready? = record.versions[version] { isReady = true } else { isReady = false }
            if readyAspired || !isReady || entry.versions[version] == nil {
                record.versions[version] = nil
                record.fingerprints[version] = nil
                record.files[version] = nil
                logger.info("model version unloaded", metadata: ["model": "\(entry.name)", "version": "\(version)"])
            }
        }
        record.configFingerprint = entry.configFingerprint
        records[entry.name] = record
        publishStates()
    }

    /// True for a version that serves now or will on its next request (loaded, or unloaded to free memory).
    static func canServe(_ state: VersionState) -> Bool {
        switch state {
        case .ready, .unloaded: return true
        case .loading, .unavailable: return false
        }
    }

    /// Loads a version after making room for it within `--model-memory-limit`: least recently used versions with
    /// nothing in flight are unloaded first. A version that alone exceeds the limit fails with the reason; a cold
    /// start (`lazily`) that cannot fit because the other versions are busy is refused for a retry, where a
    /// start-up or repository load goes ahead and the next sweep trims the excess.
    private func loadWithinBudget(name: String, version: Int, file: URL, config: ModelConfig, lazily: Bool) async -> Result<ServedModel, ServingError> {
        let key = VersionKey(model: name, version: version)
        let estimate = records[name]?.memory[version] ?? Self.fileSize(file)
        if let limit = residency.memoryLimit {
            // A file-size estimate can be above what the version turns out to hold: only the measure after the load
            // decides that a version cannot fit at all.
            if !makeRoom(for: min(estimate, limit), keeping: key), lazily {
                return .failure(ServingError(.unavailable, "model '\(name)' version \(version) needs \(estimate) bytes and --model-memory-limit (\(limit) bytes) is held by versions with requests in flight; retry shortly", retryAfterSeconds: 1))
            }
        }
        if let beforeLoad { await beforeLoad(name, version) }
        let started = clock()
        let served: ServedModel
        do {
            served = try await Self.load(name: name, version: version, file: file, config: config, wrapper: executorWrapper)
        } catch {
            return .failure((error as? ServingError) ?? ServingError.unavailable("\(name) version \(version): \(error)"))
        }
        let seconds = clock() - started
        served.usage.touch(clock())
        records[name]?.memory[version] = served.memoryBytes
        if let limit = residency.memoryLimit {
            if served.memoryBytes > limit { return .failure(Self.overBudget(name, version, bytes: served.memoryBytes, limit: limit)) }
            _ = makeRoom(for: served.memoryBytes - (records[name]?.versions[version].flatMap { if case .ready(let old) = $0 { old.memoryBytes } else { nil } } ?? 0), keeping: key)
        }
        Timer(label: "serval_model_load_duration_seconds", dimensions: [("model", name), ("version", String(version))]).recordSeconds(seconds)
        var metadata: Logger.Metadata = [
            "model": "\(name)", "version": "\(version)", "load_seconds": "\(String(format: "%.3f", seconds))", "memory_bytes": "\(served.memoryBytes)",
        ]
        for (phase, phaseSeconds) in served.loadPhases.named { metadata["\(phase)_seconds"] = "\(String(format: "%.4f", phaseSeconds))" }
        logger.info(lazily ? "model version loaded on demand (cold start)" : "model version ready", metadata: metadata)
        return .success(served)
    }

    private static func overBudget(_ name: String, _ version: Int, bytes: Int, limit: Int) -> ServingError {
        ServingError.unavailable("model '\(name)' version \(version) needs \(bytes) bytes, more than --model-memory-limit (\(limit) bytes) allows on its own")
    }

    private static func fileSize(_ file: URL) -> Int {
        ((try? FileManager.default.attributesOfItem(atPath: file.path))?[.size] as? NSNumber)?.intValue ?? 0
    }

    /// Bytes held by loaded versions, plus what cold starts in progress have set aside.
    public var residentBytes: Int { residentBytes(excluding: nil) }

    private func residentBytes(excluding key: VersionKey?) -> Int {
        let loaded = records.values.reduce(0) { total, record in
            record.versions.values.reduce(total) { sum, state in if case .ready(let served) = state { sum + served.memoryBytes } else { sum } }
        }
        return coldStarts.reduce(loaded) { $0 + ($1.key == key ? 0 : $1.value.reserved) }
    }

    /// Unloads least recently used versions with nothing in flight (never `keeping`) until `bytes` more fit within
    /// the limit. Returns false when they still do not fit.
    private func makeRoom(for bytes: Int, keeping: VersionKey) -> Bool {
        guard let limit = residency.memoryLimit else { return true }
        var used = residentBytes(excluding: keeping)
        guard used + bytes > limit else { return true }
        for victim in evictionOrder(keeping: keeping) {
            guard used + bytes > limit else { break }
            used -= victim.memoryBytes
            unloadVersion(VersionKey(model: victim.name, version: victim.version), reason: .memory)
        }
        return used + bytes <= limit
    }

    /// Loaded versions that may be evicted, least recently used first: nothing in flight, not `keeping`.
    func evictionOrder(keeping: VersionKey? = nil) -> [ServedModel] {
        var candidates: [ServedModel] = []
        for (name, record) in records {
            for (version, state) in record.versions {
                guard case .ready(let served) = state, served.usage.inFlight == 0, VersionKey(model: name, version: version) != keeping else { continue }
                candidates.append(served)
            }
        }
        return candidates.sorted { ($0.usage.lastUsed, $0.name, $0.version) < ($1.usage.lastUsed, $1.name, $1.version) }
    }

    private func unloadVersion(_ key: VersionKey, reason: UnloadReason) {
        guard case .ready(let served)? = records[key.model]?.versions[key.version] else { return }
        records[key.model]!.versions[key.version] = .unloaded(reason)
        Counter(label: "serval_model_evictions_total", dimensions: [("reason", reason.rawValue)]).increment()
        logger.info("model version unloaded to free memory", metadata: [
            "model": "\(key.model)", "version": "\(key.version)", "reason": "\(reason.rawValue)", "memory_bytes": "\(served.memoryBytes)",
        ])
        publishStates()
    }

    /// Unloads every version idle for its model's `idle_unload_secs` (nothing in flight, not asked for since),
    /// and trims loaded versions to the memory limit. The server calls it about once a second; returns what it
    /// unloaded.
    @discardableResult
    public func sweep() -> [(model: String, version: Int)] {
        let now = clock()
        var unloaded: [(model: String, version: Int)] = []
        for (name, record) in records {
            guard let idle = record.config.idleUnloadSecs, idle > 0 else { continue }
            for (version, state) in record.versions {
                guard case .ready(let served) = state, served.usage.inFlight == 0, now - served.usage.lastUsed >= idle else { continue }
                unloadVersion(VersionKey(model: name, version: version), reason: .idle)
                unloaded.append((name, version))
            }
        }
        if let limit = residency.memoryLimit {
            var used = residentBytes
            for victim in evictionOrder() where used > limit {
                used -= victim.memoryBytes
                unloadVersion(VersionKey(model: victim.name, version: victim.version), reason: .memory)
                unloaded.append((victim.name, victim.version))
            }
        }
        return unloaded
    }

    /// `serval_model_ready{model,version}`: 1 while a version serves, 0 once it failed or left;
    /// `serval_model_memory_bytes{model,version}`: what each loaded version holds.
    private var readiness = GaugeSet(label: "serval_model_ready")
    private var memoryGauges = GaugeSet(label: "serval_model_memory_bytes")
    private func publishStates() {
        var members: [[String]: Int] = [:]
        var memory: [[String]: Int] = [:]
        for (name, record) in records {
            for (version, state) in record.versions {
                let key = [name, String(version)]
                members[key] = Self.canServe(state) ? 1 : 0
                if case .ready(let served) = state { memory[key] = served.memoryBytes }
            }
        }
        readiness.publish(names: ["model", "version"], members)
        memoryGauges.publish(names: ["model", "version"], memory)
    }

    /// Compiles and warms up a version off the actor, on a detached task.
    private static func load(
        name: String, version: Int, file: URL, config: ModelConfig, wrapper: (@Sendable (any BatchExecutor) -> any BatchExecutor)?
    ) async throws -> ServedModel {
        try await Task.detached(priority: .utility) {
            try ServedModel(name: name, version: version, file: file, config: config, executorWrapper: wrapper)
        }.value
    }

    /// The version to serve for `version` or, when nil, the highest version that can serve. A version unloaded to
    /// free memory is loaded again first (`wake`; a cold start, waited for in a bounded queue); without `wake`
    /// it is UNAVAILABLE, as for shadows, which must never wait.
    public func resolve(_ name: String, version: Int? = nil, wake: Bool = true) async throws -> ServedModel {
        guard let record = records[name] else { throw ServingError.notFound("unknown model '\(name)'") }
        let number: Int
        if let version {
            guard record.versions[version] != nil else { throw ServingError.notFound("model '\(name)' has no version '\(version)'") }
            number = version
        } else {
            guard let best = record.versions.keys.sorted(by: >).first(where: { Self.canServe(record.versions[$0]!) || coldStarts[VersionKey(model: name, version: $0)] != nil }) else {
                throw ServingError.unavailable("model '\(name)' has no ready version" + (record.problem.map { ": \($0)" } ?? reasons(record)))
            }
            number = best
        }
        let key = VersionKey(model: name, version: number)
        switch record.versions[number]! {
        case .ready(let served):
            served.usage.touch(clock())
            return served
        case .unloaded where wake, .loading where wake && coldStarts[key] != nil:
            return try await awaitColdStart(key)
        case let state:
            throw ServingError.unavailable("model '\(name)' version \(number) is not ready (\(stateDescription(state)))")
        }
    }

    /// True when the version `version` (nil: the model's best) serves now or will on its next request; the model
    /// ready calls and server readiness ask this, so a version unloaded to free memory keeps the pod in service.
    public func isAvailable(_ name: String, version: Int? = nil) throws -> Bool {
        guard let record = records[name] else { throw ServingError.notFound("unknown model '\(name)'") }
        if let version {
            guard let state = record.versions[version] else { throw ServingError.notFound("model '\(name)' has no version '\(version)'") }
            return Self.canServe(state) || coldStarts[VersionKey(model: name, version: version)] != nil
        }
        return record.versions.contains { Self.canServe($0.value) || coldStarts[VersionKey(model: name, version: $0.key)] != nil }
    }

    /// Joins (or starts) the cold start of an unloaded version. At most `coldStartMaxPending` requests wait for one
    /// version; the rest, and any that waited `coldStartTimeout`, get 503 with `Retry-After`.
    private func awaitColdStart(_ key: VersionKey) async throws -> ServedModel {
        let cold: ColdStart
        if let running = coldStarts[key] {
            cold = running
        } else {
            cold = try startColdStart(key)
        }
        guard cold.waiters.count < residency.coldStartMaxPending else {
            Counter(label: "serval_cold_start_rejections_total", dimensions: [("reason", "queue_full")]).increment()
            throw ServingError(.unavailable, "model '\(key.model)' version \(key.version) is loading (cold start) and \(cold.waiters.count) requests already wait for it (--cold-start-max-pending \(residency.coldStartMaxPending)); retry shortly", retryAfterSeconds: 1)
        }
        let id = cold.nextWaiter
        cold.nextWaiter += 1
        let timeout = residency.coldStartTimeout
        let sleep = self.sleep
        return try await withCheckedThrowingContinuation { continuation in
            let timer = Task { [weak self] in
                guard (try? await sleep(timeout)) != nil else { return }
                await self?.expireWaiter(key, id)
            }
            cold.waiters[id] = (continuation, timer)
        }
    }

    private func startColdStart(_ key: VersionKey) throws -> ColdStart {
        guard let record = records[key.model], let file = record.files[key.version] else {
            throw ServingError.unavailable("model '\(key.model)' version \(key.version) cannot be loaded again: its file is unknown")
        }
        let cold = ColdStart(reserved: record.memory[key.version] ?? Self.fileSize(file))
        coldStarts[key] = cold
        records[key.model]!.versions[key.version] = .loading
        publishStates()
        let config = record.config
        let started = clock()
        Task { [weak self] in await self?.runColdStart(key, file: file, config: config, started: started) }
        return cold
    }

    private func runColdStart(_ key: VersionKey, file: URL, config: ModelConfig, started: Double) async {
        let outcome = await loadWithinBudget(name: key.model, version: key.version, file: file, config: config, lazily: true)
        let waiters = coldStarts.removeValue(forKey: key)?.waiters ?? [:]
        if records[key.model]?.versions[key.version] != nil {
            switch outcome {
            case .success(let served):
                records[key.model]!.versions[key.version] = .ready(served)
                Counter(label: "serval_model_cold_starts_total", dimensions: [("model", key.model)]).increment()
                Timer(label: "serval_model_cold_start_duration_seconds", dimensions: [("model", key.model)]).recordSeconds(clock() - started)
            case .failure(let error) where error.retryAfterSeconds != nil:
                records[key.model]!.versions[key.version] = .unloaded(.memory)  // momentary: the next request tries again
            case .failure(let error):
                records[key.model]!.versions[key.version] = .unavailable(error.message)
                logger.error("cold start failed", metadata: ["model": "\(key.model)", "version": "\(key.version)", "error": "\(error.message)"])
            }
        }
        publishStates()
        let result: Result<ServedModel, ServingError>
        if case .success = outcome, records[key.model]?.versions[key.version] == nil {
            result = .failure(.notFound("model '\(key.model)' version \(key.version) was unloaded while it loaded"))
        } else {
            result = outcome
        }
        for (_, waiter) in waiters {
            waiter.timer.cancel()
            waiter.continuation.resume(with: result.mapError { $0 })
        }
    }

    /// Requests waiting for the cold start of a version (0 when none is in progress).
    public func coldStartWaiters(_ name: String, version: Int) -> Int { coldStarts[VersionKey(model: name, version: version)]?.waiters.count ?? 0 }

    private func expireWaiter(_ key: VersionKey, _ id: Int) {
        guard let waiter = coldStarts[key]?.waiters.removeValue(forKey: id) else { return }
        Counter(label: "serval_cold_start_rejections_total", dimensions: [("reason", "timeout")]).increment()
        waiter.continuation.resume(throwing: ServingError(
            .unavailable, "model '\(key.model)' version \(key.version) did not finish loading within --cold-start-timeout-secs (\(residency.coldStartTimeout) s); retry shortly",
            retryAfterSeconds: 1))
    }

    /// Loads a version on disk that the policy leaves out, so a label can be moved to it once it is ready; the
    /// caller calls `releaseTransient` after the move (the label then pins it) or after a failure.
    public func loadTransient(_ name: String, version: Int) async throws -> VersionState? {
        transientPins[name, default: []].insert(version)
        try await reconcile(only: [name])
        return records[name]?.versions[version]
    }

    public func releaseTransient(_ name: String, version: Int) async throws {
        guard transientPins[name]?.remove(version) != nil else { return }
        if transientPins[name]?.isEmpty == true { transientPins[name] = nil }
        try await reconcile(only: [name])
    }

    /// The state of one version, nil when the manager does not hold it (not on disk, or outside the policy).
    public func state(_ name: String, version: Int) -> VersionState? { records[name]?.versions[version] }

    /// True when the manager knows the model (it is in the repository and was reconciled).
    public func knows(_ name: String) -> Bool { records[name] != nil }

    private func stateDescription(_ state: VersionState) -> String {
        if case .unavailable(let reason) = state { return reason }
        return state.name.rawValue
    }

    private func reasons(_ record: ModelRecord) -> String {
        let failures = record.versions.values.compactMap { state -> String? in
            if case .unavailable(let reason) = state { return reason }
            return nil
        }
        return failures.isEmpty ? "" : ": " + failures.joined(separator: "; ")
    }

    /// Every model and version with its state (models that never loaded appear with version "").
    public func index() -> [IndexEntry] {
        var rows: [IndexEntry] = []
        for name in records.keys.sorted() {
            let record = records[name]!
            if record.versions.isEmpty {
                rows.append(IndexEntry(name: name, version: "", state: .unavailable, reason: record.problem ?? "not loaded"))
            }
            for version in record.versions.keys.sorted() {
                let state = record.versions[version]!
                var reason = ""
                if case .unavailable(let why) = state { reason = why }
                if case .unloaded(let why) = state { reason = why.rawValue }
                rows.append(IndexEntry(name: name, version: String(version), state: state.name, reason: reason, memoryBytes: record.memory[version]))
            }
        }
        return rows
    }

    /// Every ready version of every model (or of `name`), for statistics and metrics.
    public func readyModels(named name: String? = nil) -> [ServedModel] {
        records.keys.sorted().filter { name == nil || $0 == name }.flatMap { key in
            records[key]!.versions.keys.sorted().compactMap { version -> ServedModel? in
                if case .ready(let served)? = records[key]!.versions[version] { return served }
                return nil
            }
        }
    }

    /// Names of models with at least one version that can serve (loaded, or unloaded to free memory).
    public func readyModels() -> [String] {
        records.keys.sorted().filter { (try? isAvailable($0)) ?? false }
    }

    /// True when every model in the repository has a version that can serve: server readiness. A version
    /// unloaded to free memory counts, or the pod would leave its Service and never get the request that reloads it.
    public func allReady() -> Bool {
        !records.isEmpty && readyModels().count == records.count
    }

    /// The versions of a model that can serve, highest first.
    public func readyVersions(of name: String) -> [Int] {
        guard let record = records[name] else { return [] }
        return record.versions.keys.sorted(by: >).filter { (try? isAvailable(name, version: $0)) ?? false }
    }

    /// Explicit mode: load (or reload) one model from the repository.
    public func load(_ name: String) async throws {
        guard mode == .explicit else { throw ServingError(.unsupported, "load/unload needs --model-control-mode explicit (this server uses '\(mode.rawValue)')") }
        let entries = try repository.scan()
        guard entries.contains(where: { $0.name == name }) else { throw ServingError.notFound("no model '\(name)' in the repository") }
        try await reconcile(only: [name])
        if case .failure(let error)? = entries.first(where: { $0.name == name })?.config { throw error }
        _ = try await resolve(name)
    }

    /// Explicit mode: stop serving a model; in-flight requests finish on the copy they hold.
    public func unload(_ name: String) throws {
        guard mode == .explicit else { throw ServingError(.unsupported, "load/unload needs --model-control-mode explicit (this server uses '\(mode.rawValue)')") }
        guard records[name] != nil else { throw ServingError.notFound("model '\(name)' is not loaded") }
        let labels = pins.labels(name)
        if !labels.isEmpty {
            let named = labels.sorted { $0.key < $1.key }.map { "'\($0.key)' → \($0.value)" }.joined(separator: ", ")
            throw ServingError.conflict("model '\(name)' cannot be unloaded while labels point at its versions (\(named)); remove them first")
        }
        records[name] = nil
        publishStates()
        logger.info("model unloaded", metadata: ["model": "\(name)"])
    }
}
