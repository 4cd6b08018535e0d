import Foundation
import Logging
import Tracing
import Metrics
import ServalEngine
import ServalONNX
import ServalRegistry
import ServalStore
import ServalWire

/// The control-plane operations that span durable state (the `Registry`) and what is loaded (the `ModelManager`):
/// registering a version into the repository, moving labels only to ready versions, rolling back, and keeping the
/// registry in step with versions that appear on disk. Frontends call this; they never write the registry directly.
public actor ModelLifecycle {
    public nonisolated let manager: ModelManager
    public nonisolated let registry: Registry
    public nonisolated let router: Router
    private let logger: Logger
    /// `serval_model_label_info{model,label,version}` and `serval_traffic_weight{model,target}`.
    private var labelGauges = GaugeSet(label: "serval_model_label_info")
    private var weightGauges = GaugeSet(label: "serval_traffic_weight")

    /// Signs the guard's own webhook (`guard.webhook`) when set: the server's registry webhook secret.
    public nonisolated let guardWebhookSecret: String?

    public init(
        manager: ModelManager, registry: Registry, guardWebhookSecret: String? = nil, observer: (any InferenceObserver)? = nil,
        tracer: (any Tracer)? = nil, logger: Logger = Logger(label: "serval.lifecycle")
    ) {
        self.manager = manager
        self.registry = registry
        self.guardWebhookSecret = guardWebhookSecret
        self.router = Router(manager: manager, table: registry.table, observer: observer, tracer: tracer)
        self.logger = logger
    }

    // MARK: - Repository

    /// Records what is on disk in the registry (labels from config.yaml the first time a model is seen, versions
    /// that appeared by other means), then brings the loaded versions in line with policy and labels.
    /// A store that cannot be reached is logged; the manager still reconciles with the labels it knows.
    public func reconcile(only names: Set<String>? = nil) async throws {
        do { try await synchronize(only: names) } catch let error as StoreError {
            logger.error("store unreachable; serving with the last known labels", metadata: ["error": "\(error.message)"])
        }
        try await manager.reconcile(only: names)
        publishPointers()
    }

    /// `serval_model_label_info{model,label,version} 1` for each label in force (0 once it moved or went), and
    /// `serval_traffic_weight{model,target}` for each arm of a policy in force.
    func publishPointers() {
        var labels: [[String]: Int] = [:]
        var weights: [[String]: Int] = [:]
        for (model, pointers) in registry.table.all {
            for (label, version) in pointers.labels { labels[[model, label, String(version)]] = 1 }
            for route in pointers.traffic?.routes ?? [] { weights[[model, route.target.name]] = route.weight }
        }
        labelGauges.publish(names: ["model", "label", "version"], labels)
        weightGauges.publish(names: ["model", "target"], weights)
    }

    private func synchronize(only names: Set<String>?) async throws {
        for entry in try manager.repository.scan() where names == nil || names!.contains(entry.name) {
            guard case .success(let config) = entry.config else { continue }
            try await registry.seed(entry.name, labels: config.versionLabels ?? [:])
            let known = Set(try await registry.versions(entry.name).map(\.version))
            for (version, file) in entry.versions.sorted(by: { $0.key < $1.key }) where !known.contains(version) {
                let directory = file.url.deletingLastPathComponent()
                guard FileManager.default.fileExists(atPath: file.url.path) else { continue }
                let digest = try await Task.detached(priority: .utility) { try FileDigest.sha256(of: file.url) }.value
                let registration = VersionRegistration.read(versionDirectory: directory)
                try await registry.register(entry.name, version: version, sha256: digest.hex, size: digest.size,
                                            metadata: registration?.metadata, actor: registration?.actor ?? Actor.repository)
                logger.info("version registered from the repository", metadata: ["model": "\(entry.name)", "version": "\(version)"])
            }
        }
    }

    /// Picks up changes another replica committed: reloads the routing table and brings the models whose pointers
    /// changed in line with them (a newly pinned version loads).
    public func refreshFromStore() async throws {
        let touched = try await registry.modelsChangedSinceRefresh()
        guard !touched.isEmpty else { return }
        var models = touched.union(try await registry.refresh())
        if manager.mode == .explicit {
            var loaded: Set<String> = []
            for name in models where await manager.knows(name) { loaded.insert(name) }
            models = loaded
        }
        if !models.isEmpty { try await manager.reconcile(only: models) }
        publishPointers()
    }

    // MARK: - Registering versions

    /// Removes upload folders a killed process left in the repository (`.upload-*`: never renamed into place,
    /// so never a version). Called once at start, before anything is served.
    public func removeAbandonedUploads() {
        let root = manager.repository.root
        for name in (try? FileManager.default.contentsOfDirectory(atPath: root.path)) ?? [] where name.hasPrefix(".upload-") {
            try? FileManager.default.removeItem(at: root.appendingPathComponent(name))
            logger.info("removed an abandoned upload", metadata: ["folder": "\(name)"])
        }
    }

    /// What `register` answers.
    public struct Registered: Sendable {
        public let name: String
        public let version: Int
        public let sha256: String
        public let state: ModelManager.StateName
    }

    /// Checks that `file` is a model Serval can run, writes it as the model's next version (temporary folder,
    /// then one rename), records it with its lineage, and loads it by the model's version policy.
    /// Nothing is written when the model cannot be imported.
    public func register(model: String, file: Data, metadata: VersionMetadata?, actor: String, maxNodes: Int = .max) async throws -> Registered {
        try Self.checkName(model, what: "model name")
        let root = manager.repository.root
        let staging = root.appendingPathComponent(".upload-\(UUID().uuidString)")
        let fileManager = FileManager.default
        try fileManager.createDirectory(at: staging, withIntermediateDirectories: true)
        defer { try? fileManager.removeItem(at: staging) }
        // Writing, importing and hashing up to --http-max-input-size bytes is file and CPU work: off the actor.
        let sha256 = try await Task.detached(priority: .utility) { () throws -> String in
            let modelFile = staging.appendingPathComponent("model.onnx")
            try file.write(to: modelFile)
            try Self.checkLoadable(modelFile, maxNodes: maxNodes)
            let sha256 = FileDigest.sha256(of: file)
            try VersionRegistration(actor: actor, sha256: sha256, size: file.count, metadata: metadata).write(to: staging)
            return sha256
        }.value
        let modelDirectory = root.appendingPathComponent(model)
        try fileManager.createDirectory(at: modelDirectory, withIntermediateDirectories: true)
        let onDisk = Array(manager.repository.versionsOnDisk(model))
        let version = try await mapped { try await self.registry.nextVersion(model, onDisk: onDisk) }
        try fileManager.moveItem(at: staging, to: modelDirectory.appendingPathComponent(String(version)))
        _ = try await mapped {
            try await self.registry.register(model, version: version, sha256: sha256, size: file.count, metadata: metadata, actor: actor)
        }
        try await reconcile(only: [model])
        let state = await manager.state(model, version: version)?.name ?? .unavailable
        return Registered(name: model, version: version, sha256: sha256, state: state)
    }

    /// Imports the file and compiles it, as loading would; the importer's message names what is wrong. A graph of
    /// more than `maxNodes` nodes (`--max-model-nodes`) is refused before it is compiled.
    static func checkLoadable(_ file: URL, maxNodes: Int = .max) throws {
        do {
            let model = try ONNXModel(contentsOf: file)
            guard model.graph.nodes.count <= maxNodes else {
                throw ServingError.invalidArgument("part 'model' has \(model.graph.nodes.count) nodes, more than --max-model-nodes (\(maxNodes))")
            }
            _ = try Session(graph: model.graph)
        } catch let error as ServingError {
            throw error
        } catch {
            throw ServingError.invalidArgument("part 'model' is not a model Serval can load: \(error)")
        }
    }

    /// Model and label names become folder names and URL segments: letters, digits, `_`, `-` and `.`, not first.
    static func checkName(_ name: String, what: String) throws {
        let allowed = name.unicodeScalars.allSatisfy { CharacterSet.alphanumerics.contains($0) && $0.isASCII || "_-.".unicodeScalars.contains($0) }
        guard !name.isEmpty, name.count <= 128, allowed, !name.hasPrefix(".") else {
            throw ServingError.invalidArgument("\(what) '\(name)' must be 1-128 letters, digits, '_', '-' or '.', not starting with '.'")
        }
    }

    // MARK: - Labels

    /// Points `label` at `version`, which must be READY; the move is one transaction with its history entry, and the
    /// next request resolves to the new version.
    public func moveLabel(model: String, label: String, version: String, actor: String, reason: String?) async throws -> Registry.LabelMove {
        try await requireModel(model)
        try Self.checkName(label, what: "label")
        guard let number = Int(version), number > 0 else {
            throw ServingError.invalidArgument("field 'version' must be a version number as a string, e.g. \"2\"; got '\(version)'")
        }
        let loadedForMove = try await requireReady(model, number)
        do {
            let move = try await mapped { try await self.registry.moveLabel(model, label: label, to: number, actor: actor, reason: reason) }
            if loadedForMove { try await manager.releaseTransient(model, version: number) } else { try await manager.reconcile(only: [model]) }
            publishPointers()
            return move
        } catch {
            if loadedForMove { try? await manager.releaseTransient(model, version: number) }
            throw error
        }
    }

    public func removeLabel(model: String, label: String, actor: String, reason: String?) async throws -> Registry.LabelMove {
        try await requireModel(model)
        let move = try await mapped { try await self.registry.removeLabel(model, label: label, actor: actor, reason: reason) }
        try await manager.reconcile(only: [model])
        publishPointers()
        return move
    }

    /// Moves `label` back to its previous target. Targets no longer on disk are skipped; a target on disk that is
    /// not loaded is loaded first, so the label only moves to a version that is ready.
    public func rollback(model: String, label: String, actor: String, reason: String?) async throws -> Registry.LabelMove {
        try await requireModel(model)
        let onDisk = manager.repository.versionsOnDisk(model)
        // The label's rollback target is pinned and so normally loaded; if not (it was just unpinned), load it.
        var preloaded: Int?
        if let target = registry.table.pointers(model)?.previous[label], onDisk.contains(target), await manager.state(model, version: target) == nil {
            _ = try await manager.loadTransient(model, version: target)
            preloaded = target
        }
        var readyVersions: Set<Int> = []
        // A version unloaded to free memory counts: its next request loads it again.
        for version in onDisk where (try? await manager.isAvailable(model, version: version)) == true { readyVersions.insert(version) }
        let ready = readyVersions
        let move: Registry.LabelMove
        do {
            move = try await mapped { try await self.registry.rollback(model, label: label, actor: actor, reason: reason) { ready.contains($0) } }
        } catch {
            if let preloaded { try? await manager.releaseTransient(model, version: preloaded) }
            throw error
        }
        if let preloaded { try await manager.releaseTransient(model, version: preloaded) } else { try await manager.reconcile(only: [model]) }
        publishPointers()
        return move
    }

    public func labels(model: String) async throws -> [String: Int] {
        try await requireModel(model)
        return registry.table.labels(model)
    }

    // MARK: - Reading

    /// One version as `GET /v2/models/{m}/versions` lists it.
    public struct VersionInfo: Sendable {
        public let version: Int
        public let state: String
        public let reason: String?
        public let labels: [String]
        public let record: VersionRecord?
    }

    public func versions(model: String) async throws -> [VersionInfo] {
        try await requireModel(model)
        let records = try await mapped { try await self.registry.versions(model) }
        let onDisk = manager.repository.versionsOnDisk(model)
        let numbers = onDisk.union(records.map(\.version)).sorted()
        let labels = registry.table.labels(model)
        var rows: [VersionInfo] = []
        for number in numbers {
            let state = await manager.state(model, version: number)
            var reason: String?
            if case .unavailable(let why)? = state { reason = why }
            let name = state?.name.rawValue ?? (onDisk.contains(number) ? "UNLOADED" : "DELETED")
            rows.append(VersionInfo(
                version: number, state: name, reason: reason, labels: labels.filter { $0.value == number }.map(\.key).sorted(),
                record: records.first { $0.version == number }))
        }
        return rows
    }

    public func history(model: String, limit: Int) async throws -> [HistoryEntry] {
        try await requireModel(model)
        return try await mapped { try await self.registry.history(model, limit: limit) }
    }

    // MARK: - Explicit load and unload, audited

    /// Explicit mode: loads a model (its labels and on-disk versions recorded first, so pins apply). With an actor
    /// the load is written to the history; start-up loads (`--load-model`) pass nil.
    public func load(model: String, actor: String?) async throws {
        do { try await synchronize(only: [model]) } catch let error as StoreError {
            logger.error("store unreachable; loading with the last known labels", metadata: ["error": "\(error.message)"])
        }
        try await manager.load(model)
        if let actor { await audit(model, .load, actor: actor) }
    }

    public func unload(model: String, actor: String) async throws {
        try await manager.unload(model)
        await audit(model, .unload, actor: actor)
    }

    /// Load and unload already happened when they are recorded; a store that cannot take the entry is logged
    /// (the change is not undone for it).
    private func audit(_ model: String, _ action: HistoryAction, actor: String) async {
        do {
            try await registry.record(model, action: action, actor: actor, details: [:], reason: nil)
        } catch {
            logger.error("could not record a history entry", metadata: ["model": "\(model)", "action": "\(action.rawValue)", "error": "\(error)"])
        }
    }

    // MARK: - Webhooks

    /// Replaces the receivers of registry events.
    public func setWebhooks(_ webhooks: [WebhookOutbox.Webhook]) async throws {
        try await mapped { try await self.registry.setWebhooks(webhooks) }
    }

    public func webhooks() async throws -> [WebhookOutbox.Webhook] {
        try await mapped { try await self.registry.webhooks() }
    }

    public func deliveries(limit: Int) async throws -> [WebhookOutbox.Delivery] {
        try await mapped { try await self.registry.deliveries(limit: limit) }
    }

    // MARK: - Shared checks

    func requireModel(_ model: String) async throws {
        if await manager.knows(model) { return }
        if registry.table.pointers(model) != nil { return }
        throw ServingError.notFound("unknown model '\(model)'")
    }

    /// A version outside the version policy is loaded first (and warmed up); the label moves only once it is
    /// READY. A version that is loading or failed to load is a conflict naming its state.
    private func requireReady(_ model: String, _ version: Int) async throws -> Bool {
        var state = await manager.state(model, version: version)
        var loadedForMove = false
        if state == nil {
            guard manager.repository.versionsOnDisk(model).contains(version) else { throw ServingError.notFound("model '\(model)' has no version '\(version)'") }
            state = try await manager.loadTransient(model, version: version)
            loadedForMove = true
        }
        if case .unloaded? = state {
            // Unloaded to free memory: load it again (a cold start) so the label moves to a version that is READY.
            _ = try await manager.resolve(model, version: version)
            state = await manager.state(model, version: version)
        }
        guard let state, case .ready = state else {
            if loadedForMove { try? await manager.releaseTransient(model, version: version) }
            var detail = state?.name.rawValue ?? "not loaded"
            if case .unavailable(let why)? = state { detail += ": \(why)" }
            throw ServingError.conflict("model '\(model)' version \(version) is \(detail); only a READY version can be labelled")
        }
        return loadedForMove
    }

    /// Registry and store errors in serving terms: not found 404, conflict 409, store unreachable 503.
    func mapped<T: Sendable>(_ body: @Sendable () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as RegistryError {
            switch error.kind {
            case .notFound: throw ServingError.notFound(error.message)
            case .conflict: throw ServingError.conflict(error.message)
            case .invalid: throw ServingError.invalidArgument(error.message)
            case .unavailable: throw ServingError.unavailable(error.message)
            }
        } catch let error as StoreError {
            switch error.kind {
            case .unavailable: throw ServingError.unavailable("state store unavailable, nothing was changed: \(error.message)")
            default: throw ServingError(.internalError, "state store: \(error.message)")
            }
        }
    }
}

