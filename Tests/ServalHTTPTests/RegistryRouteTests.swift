import Foundation
import ServalRegistry
import ServalServing
import ServalStore
import Testing

/// The registry extension against a live server: register, versions, labels, rollback, history, and their errors.
struct RegistryRouteTests {
    static let irisFile: Data = { (try? Data(contentsOf: TestServer.examples.appendingPathComponent("iris/1/model.onnx"))) ?? Data() }()
    static let irisRow = #"{"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]}"#

    static func error(_ reply: TestServer.Reply) -> String { (try? reply.object()["error"] as? String) ?? "" }

    @Test func registerWritesTheNextVersionWithLineageAndLoadsIt() async throws {
        try await TestServer.with { (server: TestServer) async throws in
            let metadata = #"{"description":"retrained","tags":{"team":"risk"},"metrics":{"accuracy":0.97},"params":{"C":1.0,"solver":"lbfgs"},"datasets":[{"name":"train","path":"data/train.csv","md5":"0cc175b9c0f1b6a831c399e269772661"}],"source":{"git_commit":"abc123","run_id":"r1"}}"#
            let reply = try await server.upload("/v2/models/iris/versions", parts: [("model", Self.irisFile), ("metadata", Data(metadata.utf8))], actor: "alice")
            #expect(reply.status == 201)
            let body = try reply.object()
            #expect(body["version"] as? String == "2")
            #expect(body["state"] as? String == "READY")
            #expect((body["sha256"] as? String)?.count == 64)
            #expect(FileManager.default.fileExists(atPath: server.repository.appendingPathComponent("iris/2/model.onnx").path))
            let versions = try await server.get("/v2/models/iris/versions").object()
            let list = try #require(versions["versions"] as? [[String: Any]])
            #expect(list.map { $0["version"] as? String } == ["1", "2"])
            #expect(list[0]["registered_by"] as? String == Actor.repository)
            #expect(list[1]["registered_by"] as? String == "alice")
            let lineage = try #require(list[1]["metadata"] as? [String: Any])
            #expect((lineage["metrics"] as? [String: Any])?["accuracy"] as? Double == 0.97)
            #expect(((lineage["datasets"] as? [[String: Any]])?.first?["md5"] as? String) == "0cc175b9c0f1b6a831c399e269772661")
            #expect((lineage["source"] as? [String: Any])?["git_commit"] as? String == "abc123")
            // Latest-1 policy and no label: the new version serves unversioned requests.
            let answer = try await server.post("/v2/models/iris/infer", Self.irisRow)
            #expect(try answer.object()["model_version"] as? String == "2")
            #expect(answer.headers["Serval-Model-Version"] == "2")
            let history = try #require(try await server.get("/v2/models/iris/history").object()["entries"] as? [[String: Any]])
            #expect(history.first?["action"] as? String == "register")
            #expect(history.first?["actor"] as? String == "alice")
        }
    }

    @Test func anUploadThatIsNotALoadableModelWritesNothing() async throws {
        try await TestServer.with { (server: TestServer) async throws in
            let before = try FileManager.default.contentsOfDirectory(atPath: server.repository.path).sorted()
            let garbage = try await server.upload("/v2/models/iris/versions", parts: [("model", Data("not onnx".utf8))])
            #expect(garbage.status == 400)
            #expect(Self.error(garbage).contains("part 'model' is not a model Serval can load"))
            let unsupported = try Data(contentsOf: TestServer.examples.deletingLastPathComponent().deletingLastPathComponent()
                .appendingPathComponent("Tests/Fixtures/unsupported_ops.onnx"))
            let refused = try await server.upload("/v2/models/iris/versions", parts: [("model", unsupported)])
            #expect(refused.status == 400)
            #expect(Self.error(refused).contains("unsupported"))
            let badMetadata = try await server.upload("/v2/models/iris/versions", parts: [("model", Self.irisFile), ("metadata", Data(#"{"metrics":{"accuracy":"high"}}"#.utf8))])
            #expect(badMetadata.status == 400)
            #expect(Self.error(badMetadata) == "part 'metadata': field 'metrics.accuracy' must be a number")
            let noModel = try await server.upload("/v2/models/iris/versions", parts: [("metadata", Data("{}".utf8))])
            #expect(noModel.status == 400 && Self.error(noModel).contains("part 'model'"))
            let notMultipart = try await server.post("/v2/models/iris/versions", "{}")
            #expect(notMultipart.status == 400 && Self.error(notMultipart).contains("multipart/form-data"))
            #expect(try FileManager.default.contentsOfDirectory(atPath: server.repository.path).sorted() == before)
            #expect(try FileManager.default.contentsOfDirectory(atPath: server.repository.appendingPathComponent("iris").path).filter { Int($0) != nil || $0.hasPrefix(".") } == ["1"])
            let versions = try await server.get("/v2/models/iris/versions").object()["versions"] as? [[String: Any]]
            #expect(versions?.count == 1)
        }
    }

    @Test func anUploadOverTheLimitIs413AndWritesNothing() async throws {
        // Uploads have their own limit (models outgrow request bodies): --max-model-size, not --http-max-input-size.
        try await TestServer.with(maxInputSize: 256, configure: { $0.http.maxModelSize = 256 }) { server, _ in
            let reply = try await server.upload("/v2/models/iris/versions", parts: [("model", Self.irisFile)])
            #expect(reply.status == 413)
            #expect(Self.error(reply).contains("--max-model-size"))
            #expect(try FileManager.default.contentsOfDirectory(atPath: server.repository.appendingPathComponent("iris").path).filter { Int($0) != nil || $0.hasPrefix(".") } == ["1"])
        }
    }

    @Test func labelsMoveOnlyToReadyVersionsAndUnversionedRequestsFollowStable() async throws {
        let repository = try TestServer.makeRepository()
        try RepositoryTests.addVersion(repository, model: "iris", version: 2)
        try "version_policy: all\n".write(to: repository.appendingPathComponent("iris/config.yaml"), atomically: true, encoding: .utf8)
        try await TestServer.with(repository: repository) { (server: TestServer) async throws in
            #expect(try await server.post("/v2/models/iris/infer", Self.irisRow).object()["model_version"] as? String == "2")
            let move = try await server.put("/v2/models/iris/labels/stable", json: ["version": "1", "reason": "pin"], actor: "ops")
            #expect(move.status == 200)
            #expect(try move.object()["version"] as? String == "1")
            #expect(try await server.post("/v2/models/iris/infer", Self.irisRow).object()["model_version"] as? String == "1")
            #expect(try await server.post("/v1/models/iris:predict", #"{"instances": [[5.1, 3.5, 1.4, 0.2]]}"#).headers["Serval-Model-Version"] == "1")
            let labels = try await server.get("/v2/models/iris/labels").object()
            #expect(labels["labels"] as? [String: String] == ["stable": "1"])
            let config = try await server.get("/v2/models/iris/config").object()
            #expect((config["config"] as? [String: Any])?["version_labels"] as? [String: Int] == ["stable": 1])

            let missing = try await server.put("/v2/models/iris/labels/stable", json: ["version": "9"])
            #expect(missing.status == 404 && Self.error(missing).contains("no version '9'"))
            let unknownModel = try await server.put("/v2/models/nope/labels/stable", json: ["version": "1"])
            #expect(unknownModel.status == 404 && Self.error(unknownModel).contains("unknown model 'nope'"))
            let badBody = try await server.put("/v2/models/iris/labels/stable", json: ["reason": "x"])
            #expect(badBody.status == 400 && Self.error(badBody) == "request body: field 'version' is required")
            let badVersion = try await server.put("/v2/models/iris/labels/stable", json: ["version": "two"])
            #expect(badVersion.status == 400 && Self.error(badVersion).contains("field 'version'"))
            #expect(try await server.get("/v2/models/iris/labels/nope").status == 405)

            let deleted = try await server.delete("/v2/models/iris/labels/stable")
            #expect(deleted.status == 200)
            #expect(try await server.post("/v2/models/iris/infer", Self.irisRow).object()["model_version"] as? String == "2")
            #expect(try await server.delete("/v2/models/iris/labels/stable").status == 404)
        }
    }

    @Test func aLabelToAVersionThatIsNotReadyIs409NamingTheState() async throws {
        let repository = try TestServer.makeRepository()
        let broken = repository.appendingPathComponent("iris/2")
        try FileManager.default.createDirectory(at: broken, withIntermediateDirectories: true)
        try Data("broken".utf8).write(to: broken.appendingPathComponent("model.onnx"))
        try "version_policy: all\n".write(to: repository.appendingPathComponent("iris/config.yaml"), atomically: true, encoding: .utf8)
        try await TestServer.with(repository: repository) { (server: TestServer) async throws in
            let reply = try await server.put("/v2/models/iris/labels/stable", json: ["version": "2"])
            #expect(reply.status == 409)
            #expect(Self.error(reply).contains("version 2 is UNAVAILABLE"))
            #expect(try await server.get("/v2/models/iris/labels").object()["labels"] as? [String: String] == [:])
        }
    }

    @Test func rollbackRestoresThePreviousStableAndIs409WhenNothingIsLeft() async throws {
        try await TestServer.with { (server: TestServer) async throws in
            #expect(try await server.upload("/v2/models/iris/versions", parts: [("model", Self.irisFile)]).status == 201)
            #expect(try await server.upload("/v2/models/iris/versions", parts: [("model", Self.irisFile)]).status == 201)
            #expect(try await server.put("/v2/models/iris/labels/stable", json: ["version": "2"]).status == 200)
            #expect(try await server.put("/v2/models/iris/labels/stable", json: ["version": "3"]).status == 200)
            #expect(try await server.post("/v2/models/iris/infer", Self.irisRow).object()["model_version"] as? String == "3")
            let back = try await server.post("/v2/models/iris/labels/stable/rollback", json: ["reason": "bad canary"], actor: "oncall")
            #expect(back.status == 200)
            #expect(try back.object()["version"] as? String == "2")
            // The previous stable was kept loaded (pinned), so the very next request is served by it.
            #expect(try await server.post("/v2/models/iris/infer", Self.irisRow).object()["model_version"] as? String == "2")
            let exhausted = try await server.post("/v2/models/iris/labels/stable/rollback", json: [:])
            #expect(exhausted.status == 409 && Self.error(exhausted).contains("no earlier target"))
            #expect(try await server.post("/v2/models/iris/labels/canary/rollback", json: [:]).status == 404)
            let entries = try #require(try await server.get("/v2/models/iris/history?limit=3").object()["entries"] as? [[String: Any]])
            #expect(entries.count == 3)
            #expect(entries[0]["action"] as? String == "rollback")
            #expect(entries[0]["actor"] as? String == "oncall")
            #expect(entries[0]["reason"] as? String == "bad canary")
            #expect(entries[0]["details"] as? [String: String] == ["label": "stable", "from": "3", "to": "2"])
            #expect(try await server.get("/v2/models/iris/history?limit=0").status == 400)
        }
    }

    @Test func labelsPolicyAndHistorySurviveARestart() async throws {
        let repository = try TestServer.makeRepository()
        let data = TestServer.makeDataDirectory()
        try await TestServer.with(repository: repository, dataDirectory: data) { (server: TestServer) async throws in
            #expect(try await server.upload("/v2/models/iris/versions", parts: [("model", Self.irisFile)]).status == 201)
            #expect(try await server.put("/v2/models/iris/labels/stable", json: ["version": "1"], actor: "alice").status == 200)
        }
        try await TestServer.with(repository: repository, dataDirectory: data) { (server: TestServer) async throws in
            #expect(try await server.get("/v2/models/iris/labels").object()["labels"] as? [String: String] == ["stable": "1"])
            // Policy latest-1 would load only version 2; the label keeps version 1 loaded and serving.
            #expect(try await server.post("/v2/models/iris/infer", Self.irisRow).object()["model_version"] as? String == "1")
            let entries = try #require(try await server.get("/v2/models/iris/history").object()["entries"] as? [[String: Any]])
            #expect(entries.map { $0["action"] as? String } == ["label", "register", "register"])
        }
    }

    @Test func aRegistrationInterruptedAfterTheRenameIsRecoveredWithItsLineage() async throws {
        // The state a crash between the folder rename and the store commit leaves: a version folder with its
        // registration record and no store row.
        let repository = try TestServer.makeRepository()
        let folder = repository.appendingPathComponent("iris/2")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try Self.irisFile.write(to: folder.appendingPathComponent("model.onnx"))
        try #"{"actor":"pipeline","sha256":"x","size":1,"metadata":{"metrics":{"accuracy":0.5}}}"#.write(
            to: folder.appendingPathComponent("registration.json"), atomically: true, encoding: .utf8)
        try await TestServer.with(repository: repository) { (server: TestServer) async throws in
            let versions = try #require(try await server.get("/v2/models/iris/versions").object()["versions"] as? [[String: Any]])
            #expect(versions.last?["registered_by"] as? String == "pipeline")
            #expect(((versions.last?["metadata"] as? [String: Any])?["metrics"] as? [String: Double]) == ["accuracy": 0.5])
        }
    }

    @Test func anUploadWhoseClientDiesMidwayLeavesNoVersion() async throws {
        try await TestServer.with { (server: TestServer) async throws in
            let boundary = "cut-short"
            let head = "--\(boundary)\r\nContent-Disposition: form-data; name=\"model\"; filename=\"m.onnx\"\r\n\r\n"
            let declared = head.utf8.count + Self.irisFile.count + 64
            let socket = try RawConnection(port: try #require(server.baseURL.port))
            try socket.send("POST /v2/models/iris/versions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=\(boundary)\r\nContent-Length: \(declared)\r\n\r\n" + head)
            try socket.send(String(decoding: Self.irisFile.prefix(200), as: UTF8.self))
            socket.close()
            // The next request on a fresh connection is served, and the repository holds only version 1.
            #expect(try await server.get("/v2/models/iris/versions").status == 200)
            #expect(try FileManager.default.contentsOfDirectory(atPath: server.repository.appendingPathComponent("iris").path).filter { Int($0) != nil || $0.hasPrefix(".") } == ["1"])
            #expect(try FileManager.default.contentsOfDirectory(atPath: server.repository.path).filter { $0.hasPrefix(".") }.isEmpty)
        }
    }

    @Test func uploadFoldersLeftByAKilledServerAreRemovedAtStart() async throws {
        let repository = try TestServer.makeRepository()
        let abandoned = repository.appendingPathComponent(".upload-0000")
        try FileManager.default.createDirectory(at: abandoned, withIntermediateDirectories: true)
        try Data("half a model".utf8).write(to: abandoned.appendingPathComponent("model.onnx"))
        try await TestServer.with(repository: repository) { (server: TestServer) async throws in
            #expect(!FileManager.default.fileExists(atPath: abandoned.path))
            #expect(try await server.get("/v2/models/iris/versions").object()["versions"] as? [[String: Any]] != nil)
        }
    }

    @Test func concurrentLabelMovesOverHTTPAreEachAudited() async throws {
        let repository = try TestServer.makeRepository()
        try RepositoryTests.addVersion(repository, model: "iris", version: 2)
        try "version_policy: all\n".write(to: repository.appendingPathComponent("iris/config.yaml"), atomically: true, encoding: .utf8)
        try await TestServer.with(repository: repository) { (server: TestServer) async throws in
            try await withThrowingTaskGroup(of: Int.self) { group in
                for index in 0..<10 {
                    group.addTask { try await server.put("/v2/models/iris/labels/stable", json: ["version": String(index % 2 + 1)], actor: "u\(index)").status }
                }
                for try await status in group { #expect(status == 200) }
            }
            let entries = try #require(try await server.get("/v2/models/iris/history").object()["entries"] as? [[String: Any]])
            #expect(entries.filter { $0["action"] as? String == "label" }.count == 10)
            #expect(Set(entries.compactMap { $0["actor"] as? String }).isSuperset(of: (0..<10).map { "u\($0)" }))
        }
    }

    @Test func aLabelledModelCannotBeUnloaded() async throws {
        try await TestServer.with(mode: .explicit) { (server: TestServer) async throws in
            #expect(try await server.post("/v2/repository/models/iris/load", "").status == 200)
            #expect(try await server.put("/v2/models/iris/labels/stable", json: ["version": "1"]).status == 200)
            let refused = try await server.post("/v2/repository/models/iris/unload", "")
            #expect(refused.status == 409 && Self.error(refused).contains("'stable'"))
            #expect(try await server.delete("/v2/models/iris/labels/stable").status == 200)
            #expect(try await server.post("/v2/repository/models/iris/unload", "").status == 200)
            let actions = try #require(try await server.get("/v2/models/iris/history").object()["entries"] as? [[String: Any]]).compactMap { $0["action"] as? String }
            #expect(actions.prefix(2) == ["unload", "unlabel"])
            #expect(actions.contains("load"))
        }
    }
}

/// Two replicas on one PostgreSQL (CI sets SERVAL_TEST_DATABASE_URL): a label moved through one is in force on
/// the other once its store watcher runs (every second in `serve`; called directly here).
struct ReplicaTests {
    @Test(.enabled(if: ProcessInfo.processInfo.environment["SERVAL_TEST_DATABASE_URL"] != nil))
    func aLabelMovedOnOneReplicaIsInForceOnTheOther() async throws {
        let url = try await ServalStoreTestDatabase.fresh()
        let repository = try TestServer.makeRepository()
        try RepositoryTests.addVersion(repository, model: "iris", version: 2)
        try "version_policy: all\n".write(to: repository.appendingPathComponent("iris/config.yaml"), atomically: true, encoding: .utf8)
        try await TestServer.with(repository: repository, databaseURL: url) { (first: TestServer) async throws in
            try await TestServer.with(repository: repository, databaseURL: url) { (second: TestServer) async throws in
                #expect(try await first.put("/v2/models/iris/labels/stable", json: ["version": "1"], actor: "a").status == 200)
                try await second.lifecycle.refreshFromStore()
                #expect(try await second.post("/v2/models/iris/infer", RegistryRouteTests.irisRow).object()["model_version"] as? String == "1")
                #expect(try await second.post("/v2/models/iris/labels/stable/rollback", json: [:]).status == 409)
                #expect(try await second.put("/v2/models/iris/labels/stable", json: ["version": "2"], actor: "b").status == 200)
                try await first.lifecycle.refreshFromStore()
                #expect(try await first.post("/v2/models/iris/infer", RegistryRouteTests.irisRow).object()["model_version"] as? String == "2")
                let actors = try #require(try await first.get("/v2/models/iris/history").object()["entries"] as? [[String: Any]]).prefix(2).compactMap { $0["actor"] as? String }
                #expect(actors == ["b", "a"])
            }
        }
    }
}

/// An empty database on the test server, for tests that share one between replicas.
enum ServalStoreTestDatabase {
    static func fresh() async throws -> String {
        let admin = try #require(ProcessInfo.processInfo.environment["SERVAL_TEST_DATABASE_URL"])
        let name = "r_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()
        let store = try await PostgresStore(url: admin)
        try await store.createDatabase(named: name)
        await store.close()
        var components = try #require(URLComponents(string: admin))
        components.path = "/" + name
        return try #require(components.string)
    }
}
