import Foundation
import ServalServing
import Testing

/// Model repository, version policy, labels, hot reload and load failures (driven through `ModelManager`
/// and the HTTP API, with explicit reconcile calls instead of waiting for a poll timer).
@Suite(.serialized) struct RepositoryTests {
    static func addVersion(_ repository: URL, model: String, version: Int, from source: Int = 1, bytes: Data? = nil) throws {
        let folder = repository.appendingPathComponent("\(model)/\(version)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let target = folder.appendingPathComponent("model.onnx")
        if let bytes {
            try bytes.write(to: target)
        } else {
            try FileManager.default.copyItem(at: repository.appendingPathComponent("\(model)/\(source)/model.onnx"), to: target)
        }
    }

    @Test func newVersionIsServedAfterReconcileAndOldOneUnloaded() async throws {
        try await TestServer.with(mode: .poll) { (server: TestServer) async throws in
            try Self.addVersion(server.repository, model: "iris", version: 2)
            try await server.lifecycle.reconcile()
            let response = try await server.post("/v2/models/iris/infer", KServeTests.iris).object()
            #expect(response["model_version"] as? String == "2")
            #expect(try await server.get("/v2/models/iris/versions/1").status == 404)
        }
    }

    @Test func brokenNewVersionKeepsThePreviousServing() async throws {
        try await TestServer.with(mode: .poll) { (server: TestServer) async throws in
            try Self.addVersion(server.repository, model: "iris", version: 2, bytes: Data("not a model".utf8))
            try await server.lifecycle.reconcile()
            let response = try await server.post("/v2/models/iris/infer", KServeTests.iris)
            #expect(response.status == 200)
            #expect(try response.object()["model_version"] as? String == "1")
            let index = try #require(try await server.post("/v2/repository/index", "{}").json() as? [[String: Any]])
            let broken = try #require(index.first { $0["name"] as? String == "iris" && $0["version"] as? String == "2" })
            #expect(broken["state"] as? String == "UNAVAILABLE")
            #expect((broken["reason"] as? String)?.contains("not a valid ONNX model") == true)
            // The other model is untouched.
            #expect(try await server.get("/v2/models/mlp/ready").status == 200)
        }
    }

    @Test func brokenModelIsUnavailableOthersServe() async throws {
        let repository = try TestServer.makeRepository()
        try Self.addVersion(repository, model: "broken", version: 1, bytes: Data(repeating: 7, count: 100))
        try await TestServer.with(repository: repository) { (server: TestServer) async throws in
            let reply = try await server.post("/v2/models/broken/infer", KServeTests.iris)
            #expect(reply.status == 503)
            #expect((try reply.object()["error"] as? String)?.contains("no ready version") == true)
            #expect(try await server.get("/v2/health/ready").status == 503)
            #expect(try await server.post("/v2/models/iris/infer", KServeTests.iris).status == 200)
        }
    }

    @Test func versionPolicyAndLabelsFromConfig() async throws {
        let repository = try TestServer.makeRepository()
        try Self.addVersion(repository, model: "iris", version: 2)
        try Self.addVersion(repository, model: "iris", version: 3)
        try "version_policy:\n  specific: [1, 2]\nversion_labels:\n  stable: 1\n  canary: 2\n"
            .write(to: repository.appendingPathComponent("iris/config.yaml"), atomically: true, encoding: .utf8)
        try await TestServer.with(repository: repository) { (server: TestServer) async throws in
            #expect(await server.manager.readyVersions(of: "iris") == [2, 1])
            // An unversioned request follows the `stable` label when there is one, not the latest version.
            let unversioned = try await server.post("/v2/models/iris/infer", KServeTests.iris).object()
            #expect(unversioned["model_version"] as? String == "1")
            let stable = try await server.post("/v1/models/iris/labels/stable:predict", #"{"instances": [[5.1, 3.5, 1.4, 0.2]]}"#)
            #expect(stable.status == 200)
            #expect(try await server.server.router.route("iris", .label("canary")).primary.version == 2)
            #expect(try await server.get("/v1/models/iris/labels/nope").status == 404)
            #expect(try await server.get("/v2/models/iris/versions/3").status == 404)
        }
    }

    @Test func invalidConfigIsReportedAndPreviousVersionKeepsServing() async throws {
        try await TestServer.with(mode: .poll) { (server: TestServer) async throws in
            try "version_policy: [oops".write(to: server.repository.appendingPathComponent("iris/config.yaml"), atomically: true, encoding: .utf8)
            try await server.lifecycle.reconcile()
            #expect(try await server.post("/v2/models/iris/infer", KServeTests.iris).status == 200)
        }
    }

    @Test func explicitModeLoadsAndUnloadsOnRequest() async throws {
        try await TestServer.with(mode: .explicit) { (server: TestServer) async throws in
            #expect(try await server.get("/v2/models/iris").status == 404)
            #expect(try await server.post("/v2/repository/models/iris/load", "").status == 200)
            #expect(try await server.post("/v2/models/iris/infer", KServeTests.iris).status == 200)
            #expect(try await server.post("/v2/repository/models/iris/unload", "").status == 200)
            #expect(try await server.get("/v2/models/iris").status == 404)
            #expect(try await server.post("/v2/repository/models/absent/load", "").status == 404)
        }
    }

    @Test func loadIsRefusedOutsideExplicitMode() async throws {
        try await TestServer.with { (server: TestServer) async throws in
            let reply = try await server.post("/v2/repository/models/iris/load", "")
            #expect(reply.status == 400)
            #expect((try reply.object()["error"] as? String)?.contains("--model-control-mode explicit") == true)
        }
    }
}
