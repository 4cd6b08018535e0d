import Foundation
import HTTPTypes
import Hummingbird
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

    /// The access rule of the route `method path` reaches, and the model its `:model` segment names; nil when
    /// no route answers it. A literal segment wins over a `:name` one (`/v2/models/stats` is not a model).
    func access(_ method: HTTPRequest.Method, _ path: String) -> (rule: EndpointAccess.Rule, model: String?)? {
        best(path) { $0.rules[method] }
    }

    /// The access rules of the methods a path does answer, for a request with one it does not: a caller that
    /// passes one of them may learn the path exists (405 with `Allow`); anyone else learns nothing from it.
    func accessOfOtherMethods(_ path: String) -> [(rule: EndpointAccess.Rule, model: String?)] {
        guard let methods = allowedMethods(path) else { return [] }
        return methods.compactMap { method in best(path) { $0.rules[method] } }
    }

    private func best(_ path: String, rule ruleOf: (Entry) -> EndpointAccess.Rule?) -> (rule: EndpointAccess.Rule, model: String?)? {
        // On every authenticated request: substrings of the path, matched inside the lock without copying the table.
        let requested = Self.segments(path)
        return paths.withLock { paths in Self.best(paths, requested, ruleOf) }
    }

    private static func best(
        _ paths: [Entry], _ requested: [Substring], _ ruleOf: (Entry) -> EndpointAccess.Rule?
    ) -> (rule: EndpointAccess.Rule, model: String?)? {
        var best: (rule: EndpointAccess.Rule, model: String?, literals: Int)?
        for entry in paths where Self.matches(entry.segments, requested) {
            guard let rule = ruleOf(entry), best == nil || entry.literals > best!.literals else { continue }
            var model: String?
            if let index = entry.segments.firstIndex(of: ":model") {
                // TF Serving: /v1/models/NAME:predict.
                let segment = requested[index]
                model = segment.split(separator: ":", maxSplits: 1).first.map(String.init) ?? String(segment)
                if model?.contains("%") == true { model = model?.removingPercentEncoding ?? model }
            }
            best = (rule, model, entry.literals)
        }
        return best.map { ($0.rule, $0.model) }
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
struct RouteBuilder {
    let router: HTTPRouter
    let table: RouteTable
    var surface = HTTPSurface.all

    mutating func on(
        _ path: String, _ method: HTTPRequest.Method,
        _ handler: @escaping @Sendable (Request, ServalRequestContext) async throws -> Response
    ) {
        guard surface.serves(EndpointAccess.rule(method, path)) else { return }
        table.add(path, method)
        router.on(RouterPath(path), method: method, use: handler)
    }

    mutating func get(_ path: String, _ handler: @escaping @Sendable (Request, ServalRequestContext) async throws -> Response) { on(path, .get, handler) }
    mutating func post(_ path: String, _ handler: @escaping @Sendable (Request, ServalRequestContext) async throws -> Response) { on(path, .post, handler) }
    mutating func put(_ path: String, _ handler: @escaping @Sendable (Request, ServalRequestContext) async throws -> Response) { on(path, .put, handler) }
    mutating func delete(_ path: String, _ handler: @escaping @Sendable (Request, ServalRequestContext) async throws -> Response) { on(path, .delete, handler) }
}
