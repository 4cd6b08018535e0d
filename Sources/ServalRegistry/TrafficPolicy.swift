import Foundation

/// How a model's unversioned traffic is split: weighted routes to labels or versions (canary, A/B), shadows that
/// get a copy, a guard that rolls a bad canary back, and progressive promotion. Field names as in the API.
public struct TrafficPolicy: Codable, Sendable, Equatable {
    /// A label or a version (exactly one).
    public struct Target: Codable, Sendable, Equatable, Hashable {
        public var label: String?
        public var version: String?

        public init(label: String? = nil, version: String? = nil) {
            self.label = label
            self.version = version
        }

        /// The name arms are reported under: the label, or `v` and the version.
        public var name: String { label ?? "v\(version ?? "?")" }
    }

    public struct Route: Codable, Sendable, Equatable {
        public var label: String?
        public var version: String?
        public var weight: Int

        public init(label: String? = nil, version: String? = nil, weight: Int) {
            self.label = label
            self.version = version
            self.weight = weight
        }

        public var target: Target { Target(label: label, version: version) }
    }

    public struct Shadow: Codable, Sendable, Equatable {
        public var label: String?
        public var version: String?
        /// Share of unversioned requests copied, 0-100.
        public var percent: Double

        public init(label: String? = nil, version: String? = nil, percent: Double) {
            self.label = label
            self.version = version
            self.percent = percent
        }

        public var target: Target { Target(label: label, version: version) }
    }

    public struct Guard: Codable, Sendable, Equatable {
        public var minRequests: Int
        public var maxErrorRate: Double?
        public var maxP99LatencyRatio: Double?
        public var windowSecs: Int
        public var webhook: String?

        public init(minRequests: Int = 200, maxErrorRate: Double? = nil, maxP99LatencyRatio: Double? = nil, windowSecs: Int = 60, webhook: String? = nil) {
            self.minRequests = minRequests
            self.maxErrorRate = maxErrorRate
            self.maxP99LatencyRatio = maxP99LatencyRatio
            self.windowSecs = windowSecs
            self.webhook = webhook
        }

        enum CodingKeys: String, CodingKey {
            case minRequests = "min_requests", maxErrorRate = "max_error_rate", maxP99LatencyRatio = "max_p99_latency_ratio"
            case windowSecs = "window_secs", webhook
        }

        public init(from decoder: Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            minRequests = try container.decodeIfPresent(Int.self, forKey: .minRequests) ?? 200
            maxErrorRate = try container.decodeIfPresent(Double.self, forKey: .maxErrorRate)
            maxP99LatencyRatio = try container.decodeIfPresent(Double.self, forKey: .maxP99LatencyRatio)
            windowSecs = try container.decodeIfPresent(Int.self, forKey: .windowSecs) ?? 60
            webhook = try container.decodeIfPresent(String.self, forKey: .webhook)
        }
    }

    public struct Progressive: Codable, Sendable, Equatable {
        public var steps: [Int]
        public var intervalSecs: Int

        public init(steps: [Int], intervalSecs: Int) {
            self.steps = steps
            self.intervalSecs = intervalSecs
        }

        enum CodingKeys: String, CodingKey { case steps, intervalSecs = "interval_secs" }
    }

    public var routes: [Route]
    public var shadow: [Shadow]?
    public var `guard`: Guard?
    public var progressive: Progressive?

    public init(routes: [Route], shadow: [Shadow]? = nil, guard: Guard? = nil, progressive: Progressive? = nil) {
        self.routes = routes
        self.shadow = shadow
        self.guard = `guard`
        self.progressive = progressive
    }

    /// The label the guard compares canaries against, and that progressive promotion moves.
    public static let stableLabel = "stable"

    /// Checks the policy's shape; `exists` says whether a target names a known label or version.
    /// Errors name the field and what was expected.
    public func validate(exists: (Target) -> Bool) throws {
        func invalid(_ message: String) -> RegistryError { RegistryError(.invalid, message) }
        guard !routes.isEmpty else { throw invalid("field 'routes' must list at least one route") }
        for (index, route) in routes.enumerated() {
            guard (route.label == nil) != (route.version == nil) else { throw invalid("routes[\(index)] must name exactly one of 'label' or 'version'") }
            guard route.weight >= 0 else { throw invalid("routes[\(index)].weight must be a non-negative integer, got \(route.weight)") }
            guard exists(route.target) else { throw invalid("routes[\(index)] names an unknown target '\(route.target.name)'") }
        }
        let total = routes.reduce(0) { $0 + $1.weight }
        guard total == 100 else { throw invalid("field 'routes': weights must sum to 100, they sum to \(total)") }
        guard Set(routes.map(\.target)).count == routes.count else { throw invalid("field 'routes' names a target twice") }
        for (index, shadow) in (shadow ?? []).enumerated() {
            guard (shadow.label == nil) != (shadow.version == nil) else { throw invalid("shadow[\(index)] must name exactly one of 'label' or 'version'") }
            guard (0...100).contains(shadow.percent) else { throw invalid("shadow[\(index)].percent must be from 0 to 100, got \(shadow.percent)") }
            guard exists(shadow.target) else { throw invalid("shadow[\(index)] names an unknown target '\(shadow.target.name)'") }
        }
        if let rule = `guard` {
            guard rule.minRequests >= 1 else { throw invalid("guard.min_requests must be at least 1") }
            guard rule.windowSecs >= 1 else { throw invalid("guard.window_secs must be at least 1") }
            if let rate = rule.maxErrorRate, !(0...1).contains(rate) { throw invalid("guard.max_error_rate must be from 0 to 1, got \(rate)") }
            if let ratio = rule.maxP99LatencyRatio, ratio <= 0 { throw invalid("guard.max_p99_latency_ratio must be positive, got \(ratio)") }
            guard rule.maxErrorRate != nil || rule.maxP99LatencyRatio != nil else { throw invalid("guard needs max_error_rate or max_p99_latency_ratio") }
            if let hook = rule.webhook, URL(string: hook).map({ ["http", "https"].contains($0.scheme ?? "") && $0.host != nil }) != true {
                throw invalid("guard.webhook must be an http(s) URL, got '\(hook)'")
            }
        }
        if let progressive {
            guard progressive.intervalSecs >= 1 else { throw invalid("progressive.interval_secs must be at least 1") }
            guard !progressive.steps.isEmpty, progressive.steps.allSatisfy({ (1...100).contains($0) }), progressive.steps == progressive.steps.sorted(),
                  progressive.steps.last == 100
            else { throw invalid("progressive.steps must rise from 1 to 100 and end at 100, e.g. [10, 25, 50, 100]") }
            guard routes.count == 2, routes.contains(where: { $0.label == Self.stableLabel }) else {
                throw invalid("progressive needs exactly two routes, one of them the '\(Self.stableLabel)' label")
            }
        }
        if `guard` != nil, !routes.contains(where: { $0.label == Self.stableLabel }) {
            throw invalid("guard needs a route to the '\(Self.stableLabel)' label to compare the other arms with")
        }
    }

    /// The routes that are not the stable label: the arms the guard watches.
    public var canaryRoutes: [Route] { routes.filter { $0.label != Self.stableLabel } }

    /// The route a request goes to: `bucket` in 0..<100 falls in one route's share of the weights.
    public func route(forBucket bucket: Int) -> Route {
        var upper = 0
        for route in routes where route.weight > 0 {
            upper += route.weight
            if bucket < upper { return route }
        }
        return routes.last { $0.weight > 0 } ?? routes[0]
    }

    /// The policy with `arm`'s weight set to `weight` and the other arms rescaled to fill the rest, in proportion
    /// (the largest remainders get the rounding), so weights still sum to 100.
    public func reweighted(_ arm: Target, to weight: Int) -> TrafficPolicy {
        var copy = self
        let others = routes.indices.filter { routes[$0].target != arm }
        let rest = 100 - weight
        let total = others.reduce(0) { $0 + routes[$1].weight }
        var shares: [(index: Int, whole: Int, fraction: Double)] = others.map { index in
            let exact = total > 0 ? Double(routes[index].weight) * Double(rest) / Double(total) : Double(rest) / Double(others.count)
            return (index, Int(exact), exact - Double(Int(exact)))
        }
        var leftover = rest - shares.reduce(0) { $0 + $1.whole }
        shares.sort { $0.fraction > $1.fraction }
        for position in shares.indices where leftover > 0 {
            shares[position].whole += 1
            leftover -= 1
        }
        for share in shares { copy.routes[share.index].weight = share.whole }
        if let index = routes.firstIndex(where: { $0.target == arm }) { copy.routes[index].weight = weight }
        return copy
    }

    public var weights: [String: Int] { Dictionary(routes.map { ($0.target.name, $0.weight) }, uniquingKeysWith: { $1 }) }
}
