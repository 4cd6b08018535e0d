import Foundation
import HTTPTypes
import Hummingbird
import ServalAuth
import Synchronization

/// Registers routes on the Hummingbird router and remembers which methods each path answers, so a known path
/// asked with another method gets 405 with `Allow` instead of 404.
final class RouteTable: Sendable {
    private struct Entry {
        let segments: [String]
        /// Segments that are not `:name`: the more, the more specific (a literal wins over a parameter).
        let literals: Int
        var methods: [HTTPRequest.Method]
        var rules: [HTTPRequest.Method: EndpointAccess.Rule]
    }

    private let paths = Mutex<[Entry]>([])

    init() {}

    func add(_ path: String, _ method: HTTPRequest.Method) {
        let segments = Self.segments(path).map(String.init)
        let rule = EndpointAccess.rule(method, path)
        paths.withLock { paths in
            if let index = paths.firstIndex(where: { $0.segments == segments }) {
                paths[index].methods.append(method)
                paths[index].rules[method] = rule
            } else {
                paths.append(Entry(segments: segments, literals: segments.filter { !$0.hasPrefix(":") }.count, methods: [method], rules: [method: rule]))
            }
        }
    }

    /// The methods a path answers, nil when no route has that shape. `:name` segments match any one segment;
    /// TF Serving's `name:method` suffix is part of the segment.
    func allowedMethods(_ path: String) -> [HTTPRequest.Method]? {
        let requested = Self.segments(path)
        var methods: [HTTPRequest.Method] = []
        for entry in paths.withLock({ $0 }) where Self.matches(entry.segments, requested) {
            methods.append(contentsOf: entry.methods.filter { !methods.contains($0) })
        }
        return methods.isEmpty ? nil : methods
    }

    /// The access rule of the route `method path` reaches, for a request the router did not match (a matched
    /// route knows its rule already); nil when no route answers it. A literal segment wins over a `:name` one
    /// (`/v2/models/stats` is not a model).
    func access(_ method: HTTPRequest.Method, _ path: String) -> AccessRule? {
        best(path) { $0.rules[method] }
    }

    /// The access rules of the methods a path does answer, for a request with one it does not: a caller that
    /// passes one of them may learn the path exists (405 with `Allow`); anyone else learns nothing from it.
    func accessOfOtherMethods(_ path: String) -> [AccessRule] {
        guard let methods = allowedMethods(path) else { return [] }
        return methods.compactMap { method in best(path) { $0.rules[method] } }
    }

    private func best(_ path: String, rule ruleOf: (Entry) -> EndpointAccess.Rule?) -> AccessRule? {
        let requested = Self.segments(path)
        var best: (rule: EndpointAccess.Rule, segment: Substring?, literals: Int)?
        for entry in paths.withLock({ $0 }) where Self.matches(entry.segments, requested) {
            guard let rule = ruleOf(entry), best == nil || entry.literals > best!.literals else { continue }
            best = (rule, entry.segments.firstIndex(of: ":model").map { requested[$0] }, entry.literals)
        }
        return best.map { $0.rule.access(segment: $0.segment) }
    }

    /// Every registered (method, path pattern), for the access matrix and the OpenAPI check.
    var routes: [(method: HTTPRequest.Method, path: String)] {
        paths.withLock { paths in
            paths.flatMap { entry in entry.methods.map { (method: $0, path: "/" + entry.segments.joined(separator: "/")) } }
        }
    }

    private static func matches(_ pattern: [String], _ requested: [Substring]) -> Bool {
        guard pattern.count == requested.count else { return false }
        for (expected, segment) in zip(pattern, requested) where !(expected.utf8.first == UInt8(ascii: ":") || expected == segment) { return false }
        return true
    }

    private static func segments(_ path: String) -> [Substring] {
        path.split(separator: "?", maxSplits: 1).first.map { $0.split(separator: "/") } ?? []
    }
}

/// Registers routes on the router and records each in the table that answers 405s.
/// Routes the listener's surface does not serve are not registered (a 404 there, as for any unknown path).
/// With `--auth-config`, each route's handler is wrapped in the access check for its own rule, so the router's
/// one match decides both the handler and who may call it.
struct RouteBuilder {
    typealias Handler = @Sendable (Request, ServalRequestContext) async throws -> Response
    let router: HTTPRouter
    let table: RouteTable
    var surface = HTTPSurface.all
    /// The access check; nil when every endpoint is open.
    var access: RequestAccess?

    mutating func on(_ path: String, _ method: HTTPRequest.Method, _ handler: @escaping Handler) {
        let rule = EndpointAccess.rule(method, path)
        guard surface.serves(rule) else { return }
        table.add(path, method)
        guard let access else {
            router.on(RouterPath(path), method: method, use: handler)
            return
        }
        let model: Substring? = rule.models == .none || rule.models == .all ? nil : "model"
        router.on(RouterPath(path), method: method) { request, context in
            try await access.admit(rule.access(segment: model.flatMap { context.parameters[$0] }), context) { try await handler(request, $0) }
        }
    }

    mutating func get(_ path: String, _ handler: @escaping Handler) { on(path, .get, handler) }
    mutating func post(_ path: String, _ handler: @escaping Handler) { on(path, .post, handler) }
    mutating func put(_ path: String, _ handler: @escaping Handler) { on(path, .put, handler) }
    mutating func delete(_ path: String, _ handler: @escaping Handler) { on(path, .delete, handler) }
}
