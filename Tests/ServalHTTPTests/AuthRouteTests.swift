import Foundation
import ServalAuth
import ServalServer
import Testing
@testable import ServalHTTP

/// Authentication and scopes on a real server: every scope against every endpoint in `EndpointAccess.table`
/// (a generated matrix), the per-model allow-list, 401 before routing, rate limits, and the principal as actor.
struct AuthRouteTests {
    /// One key per scope, one limited to iris, and one with a tiny rate.
    static let keys: [(name: String, key: String, line: String)] = {
        var keys: [(String, String, String)] = []
        for scope in Scope.allCases {
            let (key, sha) = APIKey.generate()
            keys.append(("only-\(scope.rawValue)", key, "  - {name: only-\(scope.rawValue), sha256: \"\(sha)\", scopes: [\(scope.rawValue)]}"))
        }
        let (iris, irisSHA) = APIKey.generate()
        keys.append(("iris-app", iris, "  - {name: iris-app, sha256: \"\(irisSHA)\", scopes: [infer, read], models: [iris]}"))
        let (slow, slowSHA) = APIKey.generate()
        keys.append(("slow", slow, "  - {name: slow, sha256: \"\(slowSHA)\", scopes: [read], rate: 1/h, burst: 2}"))
        let (ops, opsSHA) = APIKey.generate()
        keys.append(("ops", ops, "  - {name: ops, sha256: \"\(opsSHA)\", scopes: [read, admin, infer, metrics]}"))
        return keys
    }()

    static func key(_ name: String) -> String { keys.first { $0.name == name }!.key }

    static func withAuth(_ body: (TestServer) async throws -> Void) async throws {
        let yaml = "api_keys:\n" + keys.map(\.line).joined(separator: "\n") + "\n"
        let config = try AuthConfig.parse(yaml, directory: FileManager.default.temporaryDirectory)
        let authenticator = try await Authenticator.make(config: config, clock: { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 })
        try await TestServer.with(configure: { $0.http.authenticator = authenticator }) { server, _ in try await body(server) }
    }

    static func call(_ server: TestServer, _ method: String, _ path: String, key: String?) async throws -> TestServer.Reply {
        var headers = ["Content-Type": "application/json"]
        if let key { headers["Authorization"] = "Bearer \(key)" }
        return try await server.send(method, path, body: method == "GET" || method == "DELETE" ? nil : Data("{}".utf8), headers: headers)
    }

    /// A concrete path for a route pattern: iris, version 1, label stable, an unknown job or pipeline.
    static func concrete(_ pattern: String) -> String {
        pattern.split(separator: "/", omittingEmptySubsequences: false).map { segment -> String in
            switch segment {
            case ":model": return "iris"
            case ":version": return "1"
            case ":label": return "stable"
            case ":id": return "00000000-0000-0000-0000-000000000000"
            case ":name": return "nope"
            default: return String(segment)
            }
        }.joined(separator: "/")
    }

    @Test func everyScopeAgainstEveryEndpoint() async throws {
        try await Self.withAuth { server in
            for (route, rule) in EndpointAccess.table.sorted(by: { $0.key < $1.key }) {
                let parts = route.split(separator: " ", maxSplits: 1)
                let method = String(parts[0])
                var path = Self.concrete(String(parts[1]))
                if method == "POST", path.hasPrefix("/v1/") { path += ":predict" }
                for scope in Scope.allCases {
                    let reply = try await Self.call(server, method, path, key: Self.key("only-\(scope.rawValue)"))
                    if rule.scopes.isEmpty || rule.scopes.contains(scope) {
                        #expect(![401, 403].contains(reply.status), "\(route) with only \(scope.rawValue): \(reply.status) \(String(decoding: reply.body, as: UTF8.self))")
                    } else {
                        #expect(reply.status == 403, "\(route) with only \(scope.rawValue): \(reply.status)")
                        let message = (try? reply.object()["error"] as? String) ?? ""
                        #expect(message.contains("lacks the") && rule.scopes.allSatisfy { message.contains("'\($0.rawValue)'") }, "\(route): \(message)")
                    }
                }
                // Without credentials: 401 with WWW-Authenticate, except what anonymous callers may do (health).
                let anonymous = try await Self.call(server, method, path, key: nil)
                if rule.scopes.isEmpty || rule.scopes == [.health] {
                    #expect(![401, 403].contains(anonymous.status), "\(route) anonymous: \(anonymous.status)")
                } else {
                    #expect(anonymous.status == 401, "\(route) anonymous: \(anonymous.status)")
                    #expect(anonymous.headers["Www-Authenticate"]?.hasPrefix("Bearer") == true || anonymous.headers["WWW-Authenticate"]?.hasPrefix("Bearer") == true,
                            "\(route): \(anonymous.headers)")
                }
            }
        }
    }

    @Test func unauthenticatedRequestsGet401WhetherOrNotTheRouteExists() async throws {
        try await Self.withAuth { server in
            #expect(try await Self.call(server, "GET", "/no/such/path", key: nil).status == 401)
            #expect(try await Self.call(server, "QUERY", "/v2/models/iris", key: nil).status == 401)
            #expect(try await Self.call(server, "GET", "/no/such/path", key: Self.key("ops")).status == 404)
            let wrong = try await Self.call(server, "GET", "/v2", key: "sk_wrong")
            #expect(wrong.status == 401)
            #expect(try wrong.object()["error"] as? String == "unknown API key")
            #expect(try await Self.call(server, "GET", "/v2/health/ready", key: nil).status == 200)
            // A method a path does not serve: 405 with Allow for whoever may use the path, 401 for anyone else.
            let trace = try await Self.call(server, "TRACE", "/v2/health/live", key: nil)
            #expect(trace.status == 405)
            #expect(trace.headers["Allow"] == "GET")
            let query = try await Self.call(server, "QUERY", "/v2/models/iris", key: Self.key("ops"))
            #expect(query.status == 405)
            #expect(try await Self.call(server, "TRACE", "/v2/models/iris/labels/stable", key: nil).status == 401)
        }
    }

    /// On one keep-alive connection the key is remembered after its first request, and only exactly that key: the
    /// same key one character off, or no key at all, is refused on the next request of the same connection.
    @Test func aRememberedKeyAdmitsOnlyItselfOnItsConnection() async throws {
        try await Self.withAuth { server in
            let ops = Self.key("ops")
            let last = ops.index(before: ops.endIndex)
            let altered = String(ops[..<last]) + (ops[last] == "A" ? "B" : "A")
            func request(_ key: String?) -> Data {
                Data("GET /v2/models/iris HTTP/1.1\r\nHost: localhost\r\n\(key.map { "Authorization: Bearer \($0)\r\n" } ?? "")\r\n".utf8)
            }
            let connection = try RawConnection(port: server.port)
            defer { connection.close() }
            #expect(await connection.response(to: request(ops)).hasPrefix("HTTP/1.1 200"))
            #expect(await connection.response(to: request(altered)).hasPrefix("HTTP/1.1 401"))
            #expect(await connection.response(to: request(nil)).hasPrefix("HTTP/1.1 401"))
            #expect(await connection.response(to: request(Self.key("slow"))).hasPrefix("HTTP/1.1 200"))
            #expect(await connection.response(to: request(ops)).hasPrefix("HTTP/1.1 200"))
        }
    }

    @Test func aModelsAllowListLimitsInferAndRead() async throws {
        try await Self.withAuth { server in
            let row = ["inputs": [["name": "X", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]]]]
            let body = try JSONSerialization.data(withJSONObject: row)
            let headers = ["Authorization": "Bearer \(Self.key("iris-app"))", "Content-Type": "application/json"]
            #expect(try await server.send("POST", "/v2/models/iris/infer", body: body, headers: headers).status == 200)
            let other = try await server.send("POST", "/v2/models/mlp/infer", body: body, headers: headers)
            #expect(other.status == 403)
            #expect(try other.object()["error"] as? String == "iris-app may not use model 'mlp' (its models: iris)")
            #expect(try await Self.call(server, "GET", "/v2/models/iris", key: Self.key("iris-app")).status == 200)
            #expect(try await Self.call(server, "GET", "/v1/models/mlp", key: Self.key("iris-app")).status == 403)
            // TF Serving's NAME:predict: the model is the name before the colon, as the handler reads it.
            let instances = Data("{\"instances\": [[5.1, 3.5, 1.4, 0.2]]}".utf8)
            #expect(try await server.send("POST", "/v1/models/iris:predict", body: instances, headers: headers).status == 200)
            let otherPredict = try await server.send("POST", "/v1/models/mlp:predict", body: instances, headers: headers)
            #expect(otherPredict.status == 403)
            #expect(try otherPredict.object()["error"] as? String == "iris-app may not use model 'mlp' (its models: iris)")
            // Endpoints covering every model need a key without an allow-list.
            #expect(try await Self.call(server, "GET", "/v2/models/stats", key: Self.key("iris-app")).status == 403)
            #expect(try await Self.call(server, "GET", "/v2/models/stats", key: Self.key("ops")).status == 200)
        }
    }

    @Test func overTheRateAKeyGets429WithRetryAfter() async throws {
        try await Self.withAuth { server in
            #expect(try await Self.call(server, "GET", "/v2", key: Self.key("slow")).status == 200)
            #expect(try await Self.call(server, "GET", "/v2", key: Self.key("slow")).status == 200)
            let refused = try await Self.call(server, "GET", "/v2", key: Self.key("slow"))
            #expect(refused.status == 429)
            #expect(Int(refused.headers["Retry-After"] ?? "") ?? 0 >= 1)
            #expect((try refused.object()["error"] as? String)?.hasPrefix("slow is over its rate limit") == true)
            // Another key has its own bucket.
            #expect(try await Self.call(server, "GET", "/v2", key: Self.key("ops")).status == 200)
            let metrics = try await Self.call(server, "GET", "/metrics", key: Self.key("ops"))
            #expect(String(decoding: metrics.body, as: UTF8.self).contains("serval_rate_limited_total{principal=\"slow\"} 1"))
        }
    }

    @Test func thePrincipalIsTheActorInTheHistory() async throws {
        try await Self.withAuth { server in
            let headers = ["Authorization": "Bearer \(Self.key("ops"))", "Content-Type": "application/json", "Serval-Actor": "someone-else"]
            let move = try await server.send("PUT", "/v2/models/iris/labels/stable", body: Data("{\"version\":\"1\"}".utf8), headers: headers)
            #expect(move.status == 200)
            let history = try await Self.call(server, "GET", "/v2/models/iris/history?limit=1", key: Self.key("ops"))
            let entries = try #require(try history.object()["entries"] as? [[String: Any]])
            #expect(entries.first?["actor"] as? String == "ops")
            // A job records who submitted it, whatever Serval-Actor claims.
            let row = #"{"inputs":[{"name":"X","shape":[1,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}]}"#
            let submitted = try await server.send("POST", "/v2/models/iris/jobs", body: Data(row.utf8), headers: headers)
            #expect(submitted.status == 202)
            let id = try #require(try submitted.object()["id"] as? String)
            let job = try await Self.call(server, "GET", "/v2/jobs/\(id)", key: Self.key("ops"))
            #expect(try job.object()["submitted_by"] as? String == "ops")
        }
    }
}
