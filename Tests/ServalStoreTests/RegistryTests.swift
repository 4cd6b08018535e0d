import Foundation
import ServalRegistry
import ServalStore
import ServalTestSupport
import Testing

@Suite("Registry: labels, rollback, history (SQLite and PostgreSQL)")
struct RegistryTests {
    static func registry(_ backend: SQLDialect) async throws -> Registry {
        try await Registry(store: try await TestStores.make(backend))
    }

    static func registerVersions(_ registry: Registry, _ model: String, _ versions: ClosedRange<Int>) async throws {
        for version in versions {
            try await registry.register(model, version: version, sha256: "sha\(version)", size: 10 * version, metadata: nil, actor: "alice")
        }
    }

    @Test(arguments: TestStores.backends)
    func configSeedsLabelsOnlyTheFirstTime(_ backend: SQLDialect) async throws {
        let registry = try await Self.registry(backend)
        try await registry.seed("iris", labels: ["stable": 1])
        #expect(registry.table.labels("iris") == ["stable": 1])
        _ = try await registry.moveLabel("iris", label: "stable", to: 2, actor: "bob", reason: nil)
        // A restart reads config.yaml again: the store has seen the model, so its state wins.
        try await registry.seed("iris", labels: ["stable": 1, "canary": 3])
        #expect(registry.table.labels("iris") == ["stable": 2])
        let seeded = try await registry.history("iris").last
        #expect(seeded?.actor == Actor.config)
        #expect(seeded?.action == .label)
    }

    @Test(arguments: TestStores.backends)
    func rollbackWalksBackLikeAnUndoStack(_ backend: SQLDialect) async throws {
        let registry = try await Self.registry(backend)
        for version in 1...4 { _ = try await registry.moveLabel("m", label: "stable", to: version, actor: "a", reason: "ship \(version)") }
        let available: @Sendable (Int) -> Bool = { _ in true }
        #expect(try await registry.rollback("m", label: "stable", actor: "a", reason: "bad", isAvailable: available).to == 3)
        #expect(try await registry.rollback("m", label: "stable", actor: "a", reason: "bad", isAvailable: available).to == 2)
        // A new move starts a new head: rolling back from 5 returns to 2, then 1.
        _ = try await registry.moveLabel("m", label: "stable", to: 5, actor: "a", reason: nil)
        #expect(try await registry.rollback("m", label: "stable", actor: "a", reason: nil, isAvailable: available).to == 2)
        #expect(try await registry.rollback("m", label: "stable", actor: "a", reason: nil, isAvailable: available).to == 1)
        let exhausted = await #expect(throws: RegistryError.self) {
            _ = try await registry.rollback("m", label: "stable", actor: "a", reason: nil, isAvailable: available)
        }
        #expect(exhausted?.kind == .conflict)
        #expect(registry.table.version("m", label: "stable") == 1)
    }

    @Test(arguments: TestStores.backends)
    func rollbackSkipsVersionsThatAreGone(_ backend: SQLDialect) async throws {
        let registry = try await Self.registry(backend)
        for version in [1, 2, 3] { _ = try await registry.moveLabel("m", label: "stable", to: version, actor: "a", reason: nil) }
        let move = try await registry.rollback("m", label: "stable", actor: "a", reason: nil) { $0 != 2 }
        #expect(move == Registry.LabelMove(label: "stable", from: 3, to: 1))
    }

    @Test(arguments: TestStores.backends)
    func aDeletedLabelComesBackWithRollback(_ backend: SQLDialect) async throws {
        let registry = try await Self.registry(backend)
        _ = try await registry.moveLabel("m", label: "canary", to: 2, actor: "a", reason: nil)
        _ = try await registry.removeLabel("m", label: "canary", actor: "a", reason: "done")
        #expect(registry.table.labels("m").isEmpty)
        #expect(try await registry.rollback("m", label: "canary", actor: "a", reason: nil) { _ in true }.to == 2)
        let missing = await #expect(throws: RegistryError.self) { _ = try await registry.removeLabel("m", label: "nope", actor: "a", reason: nil) }
        #expect(missing?.kind == .notFound)
    }

    @Test(arguments: TestStores.backends)
    func historyIsNewestFirstWithActorDetailsAndReason(_ backend: SQLDialect) async throws {
        let registry = try await Self.registry(backend)
        try await Self.registerVersions(registry, "m", 1...2)
        _ = try await registry.moveLabel("m", label: "stable", to: 1, actor: "alice", reason: "first")
        _ = try await registry.moveLabel("m", label: "stable", to: 2, actor: "bob", reason: "second")
        _ = try await registry.rollback("m", label: "stable", actor: "carol", reason: "regression") { _ in true }
        let entries = try await registry.history("m")
        #expect(entries.map(\.action) == [.rollback, .label, .label, .register, .register])
        #expect(entries[0].actor == "carol" && entries[0].reason == "regression")
        #expect(JSONDocument.parse(entries[0].details) == ["label": "stable", "from": "2", "to": "1"])
        #expect(entries.map(\.id) == entries.map(\.id).sorted(by: >))
        #expect(try await registry.history("m", limit: 2).count == 2)
    }

    @Test(arguments: TestStores.backends)
    func registeringKeepsLineageAndIsIdempotent(_ backend: SQLDialect) async throws {
        let registry = try await Self.registry(backend)
        var metadata = VersionMetadata()
        metadata.metrics = ["accuracy": 0.97]
        metadata.params = ["C": .number(1), "solver": .string("lbfgs")]
        metadata.datasets = [.init(name: "train", path: "data/train.csv", md5: "abc")]
        metadata.source = VersionMetadata.Source()
        metadata.source?.gitCommit = "deadbeef"
        try await registry.register("m", version: 1, sha256: "s1", size: 5, metadata: metadata, actor: "alice")
        try await registry.register("m", version: 1, sha256: "other", size: 9, metadata: nil, actor: Actor.repository)
        let versions = try await registry.versions("m")
        #expect(versions.count == 1)
        #expect(versions[0].metadata == metadata && versions[0].actor == "alice" && versions[0].sha256 == "s1")
        #expect(try await registry.nextVersion("m", onDisk: [1]) == 2)
        #expect(try await registry.nextVersion("m", onDisk: [1, 7]) == 8)
        #expect(try await registry.history("m").filter { $0.action == .register }.count == 1)
    }

    @Test(arguments: TestStores.backends)
    func concurrentLabelMovesSerialiseAndAreEachAudited(_ backend: SQLDialect) async throws {
        let registry = try await Self.registry(backend)
        _ = try await registry.moveLabel("m", label: "stable", to: 100, actor: "init", reason: nil)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for version in 1...12 {
                group.addTask { _ = try await registry.moveLabel("m", label: "stable", to: version, actor: "user\(version)", reason: nil) }
            }
            try await group.waitForAll()
        }
        let moves = try await registry.history("m").filter { $0.action == .label }.reversed().map { JSONDocument.parse($0.details) }
        #expect(moves.count == 13)
        // Serialised: each move's "from" is the previous move's "to", so the undo stack is one straight line.
        for (previous, next) in zip(moves, moves.dropFirst()) {
            guard case .object(let before) = previous, case .object(let after) = next else { Issue.record("details not objects"); continue }
            #expect(after["from"] == before["to"])
        }
    }

    @Test(arguments: TestStores.backends)
    func aSecondReplicaSeesChangesOnRefresh(_ backend: SQLDialect) async throws {
        let store = try await TestStores.make(backend)
        let first = try await Registry(store: store)
        let second = try await Registry(store: store)
        _ = try await first.moveLabel("m", label: "stable", to: 3, actor: "a", reason: nil)
        #expect(try await second.modelsChangedSinceRefresh() == ["m"])
        #expect(second.table.labels("m").isEmpty)
        #expect(try await second.refresh() == ["m"])
        #expect(second.table.labels("m") == ["stable": 3])
        #expect(try await second.modelsChangedSinceRefresh().isEmpty)
    }
}
