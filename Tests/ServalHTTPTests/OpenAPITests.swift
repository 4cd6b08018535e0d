import Foundation
import ServalAuth
import Testing
@testable import ServalHTTP

/// The OpenAPI contract (openapi/serval.yaml, served at `/openapi.json`) against the server: the spec's operations
/// and the registered routes are the same set, each operation's declared scope is the one `EndpointAccess`
/// enforces, and the document is served to anonymous callers.
struct OpenAPITests {
    static var document: [String: Any] {
        get throws { try #require(try JSONSerialization.jsonObject(with: Data(OpenAPIDocument.json.utf8)) as? [String: Any]) }
    }

    static let methods = ["get", "put", "post", "delete", "patch", "head", "options"]

    /// Every operation as ("METHOD /path/:param" in the router's spelling, the operation object). TF Serving's
    /// `{model}:predict` is the `:model` segment with its method suffix, as the router sees it.
    static func operations() throws -> [(route: String, operation: [String: Any])] {
        let paths = try #require(try document["paths"] as? [String: [String: Any]])
        var operations: [(String, [String: Any])] = []
        for (path, item) in paths {
            let pattern = path.split(separator: "/", omittingEmptySubsequences: false).map { segment -> String in
                guard segment.hasPrefix("{"), let close = segment.firstIndex(of: "}") else { return String(segment) }
                return ":" + segment[segment.index(after: segment.startIndex)..<close]
            }.joined(separator: "/")
            for method in methods {
                guard let operation = item[method] as? [String: Any] else { continue }
                operations.append(("\(method.uppercased()) \(pattern)", operation))
            }
        }
        return operations
    }

    @Test func theSpecAndTheRegisteredRoutesAreTheSameSet() async throws {
        let specified = Set(try Self.operations().map(\.route))
        try await TestServer.with { server in
            let registered = Set(server.server.httpRoutes)
            #expect(registered.subtracting(specified).sorted() == [], "registered but not in openapi/serval.yaml")
            #expect(specified.subtracting(registered).sorted() == [], "in openapi/serval.yaml but not registered")
            #expect(registered == Set(EndpointAccess.table.keys), "EndpointAccess.table and the registered routes differ")
        }
    }

    @Test func eachOperationDeclaresTheScopeTheServerEnforces() throws {
        for (route, operation) in try Self.operations() {
            let rule = try #require(EndpointAccess.table[route], "\(route) has no access rule")
            let declared = try #require(operation["x-serval-scope"] as? String, "\(route) has no x-serval-scope")
            let names = declared.replacingOccurrences(of: " (every model)", with: "").components(separatedBy: " or ")
            let scopes = Set(names.compactMap(Scope.init(rawValue:)))
            if declared == "none" {
                #expect(rule.scopes.isEmpty, "\(route)")
            } else {
                #expect(scopes.count == names.count && scopes == rule.scopes, "\(route): spec says \(declared), server needs \(rule.scopes)")
            }
            let everyModel: Bool = if case .all = rule.models { true } else { false }
            #expect(declared.hasSuffix("(every model)") == everyModel, "\(route): \(declared)")
            // Only what needs no credentials says so (an empty security requirement).
            let anonymous = (operation["security"] as? [[String: Any]])?.contains { $0.isEmpty } ?? false
            #expect(anonymous == (rule.scopes.isEmpty || rule.scopes == [.health]), "\(route): security \(String(describing: operation["security"]))")
        }
    }

    @Test func everyOperationDocumentsItsErrors() throws {
        for (route, operation) in try Self.operations() {
            let responses = try #require(operation["responses"] as? [String: Any], "\(route)")
            let rule = try #require(EndpointAccess.table[route])
            // With --auth-config: no credentials, the wrong scope, too many requests.
            let needed = rule.scopes.isEmpty ? [] : rule.scopes == [.health] ? ["401", "403"] : ["401", "403", "429"]
            for status in needed { #expect(responses[status] != nil, "\(route) does not document \(status)") }
            #expect(responses.keys.contains { $0.hasPrefix("2") }, "\(route) documents no success")
        }
    }

    @Test func theDocumentIsServedToAnonymousCallers() async throws {
        try await AuthRouteTests.withAuth { server in
            let reply = try await AuthRouteTests.call(server, "GET", "/openapi.json", key: nil)
            #expect(reply.status == 200)
            #expect(reply.headers["Content-Type"] == "application/json")
            let served = try reply.object()
            #expect(served["openapi"] as? String == "3.1.0")
            #expect((served["paths"] as? [String: Any])?.count == (try Self.document["paths"] as? [String: Any])?.count)
        }
    }
}
