import HTTPTypes
import Hummingbird
import Synchronization

/// Registers routes on the Hummingbird router and remembers which methods each path answers, so a known path
/// asked with another method gets 405 with `Allow` instead of 404.
final class RouteTable: Sendable {
    private let paths = Mutex<[(segments: [String], methods: [HTTPRequest.Method])]>([])

    init() {}

    func add(_ path: String, _ method: HTTPRequest.Method) {
        let segments = Self.segments(path)
        paths.withLock { paths in
            if let index = paths.firstIndex(where: { $0.segments == segments }) {
                paths[index].methods.append(method)
            } else {
                paths.append((segments, [method]))
            }
        }
    }

    /// The methods a path answers, nil when no route has that shape. `:name` segments match any one segment;
    /// TF Serving's `name:method` suffix is part of the segment.
    func allowedMethods(_ path: String) -> [HTTPRequest.Method]? {
        let requested = Self.segments(path)
        var methods: [HTTPRequest.Method] = []
        for entry in paths.withLock({ $0 }) where entry.segments.count == requested.count {
            let matches = zip(entry.segments, requested).allSatisfy { $0.hasPrefix(":") || $0 == $1 }
            if matches { methods.append(contentsOf: entry.methods.filter { !methods.contains($0) }) }
        }
        return methods.isEmpty ? nil : methods
    }

    private static func segments(_ path: String) -> [String] {
        path.split(separator: "?", maxSplits: 1).first.map { $0.split(separator: "/").map(String.init) } ?? []
    }
}

/// Registers routes on the router and records each in the table that answers 405s.
struct RouteBuilder {
    let router: HTTPRouter
    let table: RouteTable

    mutating func on(
        _ path: String, _ method: HTTPRequest.Method,
        _ handler: @escaping @Sendable (Request, ServalRequestContext) async throws -> Response
    ) {
        table.add(path, method)
        router.on(RouterPath(path), method: method, use: handler)
    }

    mutating func get(_ path: String, _ handler: @escaping @Sendable (Request, ServalRequestContext) async throws -> Response) { on(path, .get, handler) }
    mutating func post(_ path: String, _ handler: @escaping @Sendable (Request, ServalRequestContext) async throws -> Response) { on(path, .post, handler) }
    mutating func put(_ path: String, _ handler: @escaping @Sendable (Request, ServalRequestContext) async throws -> Response) { on(path, .put, handler) }
    mutating func delete(_ path: String, _ handler: @escaping @Sendable (Request, ServalRequestContext) async throws -> Response) { on(path, .delete, handler) }
}
