import Synchronization

/// The registry's pointer state as the request path reads it: labels per model, held in memory and
/// swapped whole when the store changes. Reading never touches the store and never waits on a write.
public final class RoutingTable: Sendable {
    /// One model's pointers.
    public struct ModelPointers: Sendable, Equatable {
        public var labels: [String: Int] = [:]
        /// Each label's rollback target (the top of its undo stack), kept loaded so a rollback is instant.
        public var previous: [String: Int] = [:]
        /// How unversioned requests are split, if a policy is set; and when it was last set (RFC 3339).
        public var traffic: TrafficPolicy?
        public var trafficSince: String?
        public init(labels: [String: Int] = [:], previous: [String: Int] = [:], traffic: TrafficPolicy? = nil, trafficSince: String? = nil) {
            self.labels = labels
            self.previous = previous
            self.traffic = traffic
            self.trafficSince = trafficSince
        }

        /// The version a target resolves to now: a label's target, or the version itself.
        public func version(of target: TrafficPolicy.Target) -> Int? {
            if let label = target.label { return labels[label] }
            return target.version.flatMap(Int.init)
        }
    }

    private let state = Mutex<[String: ModelPointers]>([:])

    public init() {}

    public func pointers(_ model: String) -> ModelPointers? { state.withLock { $0[model] } }

    public func labels(_ model: String) -> [String: Int] { state.withLock { $0[model]?.labels ?? [:] } }

    public func version(_ model: String, label: String) -> Int? { state.withLock { $0[model]?.labels[label] } }

    /// Versions that must stay loaded whatever the version policy says: every label's target, the version each
    /// label would roll back to, and every route and shadow target of the traffic policy.
    public func pinnedVersions(_ model: String) -> Set<Int> {
        state.withLock { table in
            guard let pointers = table[model] else { return [] }
            let routed = ((pointers.traffic?.routes.map(\.target) ?? []) + (pointers.traffic?.shadow?.map(\.target) ?? [])).compactMap(pointers.version(of:))
            return Set(pointers.labels.values).union(pointers.previous.values).union(routed)
        }
    }

    public var all: [String: ModelPointers] { state.withLock { $0 } }

    /// Replaces one model's pointers; returns true when they changed.
    @discardableResult
    public func update(_ model: String, _ pointers: ModelPointers) -> Bool {
        state.withLock { table in
            let changed = table[model] != pointers
            table[model] = pointers
            return changed
        }
    }

    /// Replaces the whole table; returns the models whose pointers changed.
    @discardableResult
    public func replace(_ models: [String: ModelPointers]) -> Set<String> {
        state.withLock { table in
            let names = Set(table.keys).union(models.keys)
            let changed = names.filter { table[$0] != models[$0] }
            table = models
            return changed
        }
    }
}
