import Foundation
import GRPCCore
import ServalAuth
import ServalServing
import ServalTestSupport
import Testing
@testable import ServalGRPC

/// The same scopes on gRPC as on REST, from the `authorization` metadata: UNAUTHENTICATED, PERMISSION_DENIED
/// naming the scope or model (per message of a stream), and health checks without credentials.
struct GRPCAuthTests {
    static let keys: [String: (key: String, line: String)] = {
        var keys: [String: (String, String)] = [:]
        for (name, scopes, models) in [("reader", "[read]", ""), ("scorer", "[infer]", ""), ("mlp-app", "[infer, read]", ", models: [mlp]"), ("ops", "[admin, read]", "")] {
            let (key, sha) = APIKey.generate()
            keys[name] = (key, "  - {name: \(name), sha256: \"\(sha)\", scopes: \(scopes)\(models)}")
        }
        return keys
    }()

    static func metadata(_ name: String) -> Metadata { ["authorization": "Bearer \(keys[name]!.key)"] }

    static func withAuth(
        mode: ModelManager.ControlMode = .none, extra: String = "", clock: ManualClock? = nil, _ body: (GRPCTestServer) async throws -> Void
    ) async throws {
        let yaml = "api_keys:\n" + keys.values.map(\.line).joined(separator: "\n") + "\n" + extra
        let config = try AuthConfig.parse(yaml, directory: FileManager.default.temporaryDirectory)
        let now: @Sendable () -> Double
        if let clock { now = { clock.read() } } else { now = { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 } }
        let authenticator = try await Authenticator.make(config: config, clock: now)
        try await GRPCTestServer.with(mode: mode, authenticator: authenticator, body)
    }

    static func code(_ body: () async throws -> Void) async -> RPCError.Code? {
        do {
            try await body()
            return nil
        } catch let error as RPCError {
            return error.code
        } catch {
            return .unknown
        }
    }

    @Test func healthNeedsNoCredentialsAndEverythingElseDoes() async throws {
        try await Self.withAuth { server in
            let live = try await server.inference.serverLive(.init())
            #expect(live.live)
            let health = try await server.health.check(.init())
            #expect(health.status == .serving)
            #expect(await Self.code { _ = try await server.inference.serverMetadata(.init()) } == .unauthenticated)
            #expect(await Self.code { _ = try await server.inference.modelMetadata(.with { $0.name = "mlp" }, metadata: ["authorization": "Bearer sk_wrong"]) } == .unauthenticated)
            let metadata = try await server.inference.serverMetadata(.init(), metadata: Self.metadata("reader"))
            #expect(metadata.name == "serval")
        }
    }

    @Test func aMissingScopeIsPermissionDenied() async throws {
        try await Self.withAuth { server in
            #expect(await Self.code { _ = try await server.inference.modelInfer(Requests.mlp(rows: 1), metadata: Self.metadata("reader")) } == .permissionDenied)
            #expect(await Self.code { _ = try await server.inference.modelMetadata(.with { $0.name = "mlp" }, metadata: Self.metadata("scorer")) } == .permissionDenied)
            #expect(await Self.code { _ = try await server.inference.repositoryModelUnload(.with { $0.modelName = "mlp" }, metadata: Self.metadata("reader")) } == .permissionDenied)
            let answer = try await server.inference.modelInfer(Requests.mlp(rows: 1), metadata: Self.metadata("scorer"))
            #expect(answer.modelName == "mlp")
        }
    }

    @Test func theModelsAllowListIsCheckedOnEveryMessage() async throws {
        try await Self.withAuth { server in
            let answer = try await server.inference.modelInfer(Requests.mlp(rows: 1), metadata: Self.metadata("mlp-app"))
            #expect(answer.modelName == "mlp")
            #expect(await Self.code { _ = try await server.inference.modelMetadata(.with { $0.name = "iris" }, metadata: Self.metadata("mlp-app")) } == .permissionDenied)
            #expect(await Self.code { _ = try await server.inference.repositoryIndex(.init(), metadata: Self.metadata("mlp-app")) } == .permissionDenied)
            let iris = Requests.iris()
            let code = await Self.code {
                _ = try await server.inference.modelStreamInfer(metadata: Self.metadata("mlp-app")) { writer in
                    try await writer.write(Requests.mlp(rows: 1, id: "ok"))
                    try await writer.write(iris)
                } onResponse: { response in
                    for try await _ in response.messages {}
                }
            }
            #expect(code == .permissionDenied)
        }
    }

    @Test func theAuthenticatedPrincipalIsTheActorOfALoad() async throws {
        try await Self.withAuth(mode: .explicit) { server in
            _ = try await server.inference.repositoryModelLoad(.with { $0.modelName = "mlp" }, metadata: Self.metadata("ops"))
            let entries = try await server.lifecycle.history(model: "mlp", limit: 1)
            #expect(entries.first?.action.rawValue == "load")
            #expect(entries.first?.actor == "ops")
        }
    }

    /// Over a real connection: past its bucket a principal gets RESOURCE_EXHAUSTED on the next RPC (with the wait
    /// in the message), other principals and health checks go on, and a refilled token lets it in again.
    @Test func pastItsTokenBucketAPrincipalIsResourceExhausted() async throws {
        let clock = ManualClock(100)
        try await Self.withAuth(extra: "default_rate: {rate: 1/s, burst: 2}\n", clock: clock) { server in
            for _ in 0..<2 { _ = try await server.inference.modelInfer(Requests.mlp(rows: 1), metadata: Self.metadata("scorer")) }
            var message = ""
            do {
                _ = try await server.inference.modelInfer(Requests.mlp(rows: 1), metadata: Self.metadata("scorer"))
            } catch let error as RPCError {
                #expect(error.code == .resourceExhausted)
                message = error.message
            }
            #expect(message.contains("scorer is over its rate limit"))
            let other = try await server.inference.serverMetadata(.init(), metadata: Self.metadata("reader"))
            #expect(other.name == "serval")
            #expect(try await server.health.check(.init()).status == .serving)
            clock.advance(1)
            let answer = try await server.inference.modelInfer(Requests.mlp(rows: 1), metadata: Self.metadata("scorer"))
            #expect(answer.modelName == "mlp")
        }
    }
}
