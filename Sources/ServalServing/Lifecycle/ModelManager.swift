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

        public var name: StateName {
            switch self {
            case .loading: return .loading
            case .ready: return .ready
            case .unavailable: return .unavailable
            }
        }
    }

    /// A version's state as the protocols spell it (Triton's repository index).
    public enum StateName: String, Sendable, Equatable {
        case ready = "READY"
        case loading = "LOADING"
        case unavailable = "UNAVAILABLE"
    }

    /// A row of the repository index (`/v2/repository/index`).
    public struct IndexEntry: Sendable, Equatable {
        public let name: String
        public let version: String
        public let state: StateName
        public let reason: String
    }

    struct ModelRecord {
        var versions: [Int: VersionState] = [:]
        var fingerprints: [Int: String] = [:]
        var configFingerprint = ""
        var config = ModelConfig()
        /// Why the model as a whole cannot load (bad config, no versions), if so.
        var problem: String?
    }

    public let repository: ModelRepository
    public let mode: ControlMode
    private var records: [String: ModelRecord] = [:]
    private let logger: Logger

    /// Wraps each loaded version's executor (nil: run the session directly). Tests use it to hold a batch in flight.
    private let executorWrapper: (@Sendable (any BatchExecutor) -> any BatchExecutor)?
    /// Labels (and routes) whose targets stay loaded whatever the version policy says.
    private let pins: RoutingTable
    /// Versions being brought up for a label move that has not committed yet.
    private var transientPins: [String: Set<Int>] = [:]

    public init(
        repository: ModelRepository, mode: ControlMode, pins: RoutingTable = RoutingTable(), logger: Logger = Logger(label: "serval.models"),
        executorWrapper: (@Sendable (any BatchExecutor) -> any BatchExecutor)? = nil
    ) {
        self.repository = repository
        self.mode = mode
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
        var record = records[entry.name] ?? ModelRecord()
        let config: ModelConfig
        switch entry.config {
        case .failure(let error):
            record.problem = error.message
            records[entry.name] = record
            logger.error("cannot read model config; previous versions keep serving", metadata: ["model": "\(entry.name)", "error": "\(error.message)"])
            return
        case .success(let parsed):
            config = parsed
        }
        let configChanged = record.configFingerprint != entry.configFingerprint
        // The policy decides what loads, and every pinned version (a label's target) loads too.
        let pinned = pins.pinnedVersions(entry.name).union(transientPins[entry.name] ?? []).filter { entry.versions[$0] != nil }
        let aspired = Set((config.versionPolicy ?? .latest(1)).select(from: Array(entry.versions.keys))).union(pinned).sorted()
        record.problem = aspired.isEmpty ? "no version folder (positive integer with model.onnx) matches the version policy" : nil
        for version in aspired {
            guard let file = entry.versions[version] else { continue }
            let isLoaded: Bool
            if case .ready? = record.versions[version] { isLoaded = true } else { isLoaded = false }
            let unchanged = record.fingerprints[version] == file.fingerprint && !configChanged
            if unchanged, isLoaded || record.versions[version] != nil { continue }
            let previous = record.versions[version]
            if !isLoaded { record.versions[version] = .loading }
            records[entry.name] = record
            let started = Date()
            do {
                let served = try await Self.load(name: entry.name, version: version, file: file.url, config: config, wrapper: executorWrapper)
                record.versions[version] = .ready(served)
                Timer(label: "serval_model_load_duration_seconds", dimensions: [("model", entry.name), ("version", String(version))])
                    .recordSeconds(Date().timeIntervalSince(started))
                logger.info("model version ready", metadata: [
                    "model": "\(entry.name)", "version": "\(version)",
                    "load_seconds": "\(String(format: "%.3f", Date().timeIntervalSince(started)))",
                ])
            } catch {
                let reason = (error as? ServingError)?.message ?? "\(error)"
                if case .ready? = previous {
                    record.versions[version] = previous
                    logger.error("reload failed; previous copy keeps serving", metadata: ["model": "\(entry.name)", "version": "\(version)", "error": "\(reason)"])
                } else {
                    record.versions[version] = .unavailable(reason)
                    logger.error("model version failed to load", metadata: ["model": "\(entry.name)", "version": "\(version)", "error": "\(reason)"])
                }
            }
            record.fingerprints[version] = file.fingerprint
        }
        // Unload what is no longer aspired, but never leave the model with nothing ready.
        let readyAspired = aspired.contains { if case .ready? = record.versions[$0] { return true } else { return false } }
        for version in record.versions.keys where !aspired.contains(version) {
            let isReady: Bool
            if case .ready? = record.versions[version] { isReady = true } else { isReady = false }
            if readyAspired || !isReady || entry.versions[version] == nil {
                record.versions[version] = nil
                record.fingerprints[version] = nil
                logger.info("model version unloaded", metadata: ["model": "\(entry.name)", "version": "\(version)"])
            }
        }
        record.config = config
        record.configFingerprint = entry.configFingerprint
        records[entry.name] = record
        publishStates()
    }

    /// `serval_model_ready{model,version}`: 1 while a version serves, 0 once it failed or left.
    private var readiness = GaugeSet(label: "serval_model_ready")
    private func publishStates() {
        var members: [[String]: Int] = [:]
        for (name, record) in records {
            for (version, state) in record.versions {
                if case .ready = state { members[[name, String(version)]] = 1 } else { members[[name, String(version)]] = 0 }
            }
        }
        readiness.publish(names: ["model", "version"], members)
    }

    /// Compiles and warms up a version off the actor, on a detached task.
    private static func load(
        name: String, version: Int, file: URL, config: ModelConfig, wrapper: (@Sendable (any BatchExecutor) -> any BatchExecutor)?
    ) async throws -> ServedModel {
        try await Task.detached(priority: .utility) {
            try ServedModel(name: name, version: version, file: file, config: config, executorWrapper: wrapper)
        }.value
    }

    /// The version to serve for `version` or, when nil, the highest ready version.
    public func resolve(_ name: String, version: Int? = nil) throws -> ServedModel {
        guard let record = records[name] else { throw ServingError.notFound("unknown model '\(name)'") }
        if let version {
            guard let state = record.versions[version] else {
                throw ServingError.notFound("model '\(name)' has no version '\(version)'")
            }
            guard case .ready(let served) = state else {
                throw ServingError.unavailable("model '\(name)' version \(version) is not ready (\(stateDescription(state)))")
            }
            return served
        }
        for number in record.versions.keys.sorted(by: >) {
            if case .ready(let served)? = record.versions[number] { return served }
        }
        throw ServingError.unavailable("model '\(name)' has no ready version" + (record.problem.map { ": \($0)" } ?? reasons(record)))
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
                rows.append(IndexEntry(name: name, version: String(version), state: state.name, reason: reason))
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

    /// Names of models with at least one ready version.
    public func readyModels() -> [String] {
        records.keys.sorted().filter { name in
            records[name]!.versions.values.contains { if case .ready = $0 { return true } else { return false } }
        }
    }

    /// True when every model in the repository has a ready version.
    public func allReady() -> Bool {
        !records.isEmpty && readyModels().count == records.count
    }

    /// The ready versions of a model, highest first.
    public func readyVersions(of name: String) -> [Int] {
        guard let record = records[name] else { return [] }
        return record.versions.keys.sorted(by: >).filter { if case .ready? = record.versions[$0] { return true } else { return false } }
    }

    /// Explicit mode: load (or reload) one model from the repository.
    public func load(_ name: String) async throws {
        guard mode == .explicit else { throw ServingError(.unsupported, "load/unload needs --model-control-mode explicit (this server uses '\(mode.rawValue)')") }
        let entries = try repository.scan()
        guard entries.contains(where: { $0.name == name }) else { throw ServingError.notFound("no model '\(name)' in the repository") }
        try await reconcile(only: [name])
        if case .failure(let error)? = entries.first(where: { $0.name == name })?.config { throw error }
        _ = try resolve(name)
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
