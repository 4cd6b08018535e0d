import Foundation
import ServalRegistry
import Synchronization
import ServalWire
import Tracing

/// What a request is sent to: the primary version that answers, and the shadows that get a copy afterwards.
/// Codecs decode against `primary`'s signature. `arm` names the traffic-policy route it was picked from.
public struct Route: Sendable {
    public let model: String
    public let primary: ServedModel
    /// Shadow versions with the target name they are reported under.
    public let shadows: [(target: String, model: ServedModel)]
    public let arm: String?

    public init(model: String, primary: ServedModel, shadows: [(target: String, model: ServedModel)] = [], arm: String? = nil) {
        self.model = model
        self.primary = primary
        self.shadows = shadows
        self.arm = arm
    }
}

/// The one place that chooses which loaded version serves a request. Every frontend resolves a `ModelSelector`
/// here and sends the decoded request through `infer`; none calls `ServedModel` for inference itself.
///
/// Resolution reads the in-memory `RoutingTable` and the manager's loaded versions, never the store:
/// a label move committed on any replica is in force here once the table is refreshed.
public final class Router: Sendable {
    public let manager: ModelManager
    public let table: RoutingTable
    /// Per-arm outcomes of policy-routed requests, for the guard and `GET .../traffic`.
    public let statistics: TrafficStatistics
    /// Shadow copies, run after the primary answered.
    public let shadows: ShadowRunner
    /// Monotonic seconds; tests inject their own.
    public let clock: @Sendable () -> Double
    private let random: @Sendable () -> Int
    /// Sees every answered request (the model monitor); nil: nothing watches.
    public let observer: (any InferenceObserver)?
    /// Records request traces (`--otlp-endpoint`); nil: tracing is off and costs nothing.
    public let tracer: (any Tracer)?

    /// The label unversioned requests follow when the model has one and no traffic policy.
    public static let defaultLabel = TrafficPolicy.stableLabel

    public init(
        manager: ModelManager, table: RoutingTable, statistics: TrafficStatistics = TrafficStatistics(), shadows: ShadowRunner = ShadowRunner(),
        clock: @escaping @Sendable () -> Double = Router.monotonicSeconds, random: (@Sendable () -> Int)? = nil,
        observer: (any InferenceObserver)? = nil, tracer: (any Tracer)? = nil
    ) {
        self.observer = observer
        self.tracer = tracer
        self.manager = manager
        self.table = table
        self.statistics = statistics
        self.shadows = shadows
        self.clock = clock
        let buckets = BucketSequence()
        self.random = random ?? { buckets.next() }
    }

    /// Seconds since boot on a monotonic clock.
    @Sendable public static func monotonicSeconds() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

    /// Resolves `selector` for `model`: an unknown model, version or label is NOT_FOUND; a known version that is
    /// not ready is UNAVAILABLE, with its state. An unversioned request follows the traffic policy when there is
    /// one (sticky by `routingKey` when given), else the `stable` label, else the latest ready version.
    public func route(_ model: String, _ selector: ModelSelector, routingKey: String? = nil) async throws -> Route {
        switch selector {
        case .version(let number):
            return Route(model: model, primary: try await manager.resolve(model, version: number))
        case .label(let label):
            guard let version = table.version(model, label: label) else {
                _ = try await manager.resolve(model)  // an unknown model is reported as such, not as a missing label
                throw ServingError.notFound("model '\(model)' has no label '\(label)'")
            }
            return Route(model: model, primary: try await manager.resolve(model, version: version))
        case .latest:
            // One read of the table: the policy if there is one, else the stable label.
            let pointers = table.pointers(model)
            if let pointers, let policy = pointers.traffic {
                let bucket = routingKey.map(Self.bucket(for:)) ?? random()
                let chosen = policy.route(forBucket: bucket)
                guard let version = pointers.version(of: chosen.target) else {
                    throw ServingError.unavailable("model '\(model)': traffic route '\(chosen.target.name)' points at no version")
                }
                var copies: [(target: String, model: ServedModel)] = []
                for shadow in policy.shadow ?? [] where Double(random()) < shadow.percent {
                    // A shadow that is not loaded is skipped (never woken): it never delays or fails the primary.
                    guard let number = pointers.version(of: shadow.target), let served = try? await manager.resolve(model, version: number, wake: false) else { continue }
                    copies.append((shadow.target.name, served))
                }
                return Route(model: model, primary: try await manager.resolve(model, version: version), shadows: copies, arm: chosen.target.name)
            }
            return Route(model: model, primary: try await manager.resolve(model, version: pointers?.labels[Self.defaultLabel]))
        }
    }

    /// Runs `request` on the route's primary version; a policy-routed request's outcome is recorded for its arm,
    /// and the observer sees the answer. A request without an id gets one, so it can be logged and given feedback.
    /// `observed: false` leaves the observer out (a job's pieces, observed once joined through `observe`).
    public func infer(
        _ request: InferenceRequest, on route: Route, priority: RequestPriority = .normal, observed: Bool = true, trace: RequestTrace? = nil
    ) async throws -> InferenceResponse {
        var request = request
        if request.id == nil { request.id = RequestID.next() }
        trace?.routed(model: route.model, version: route.primary.version, arm: route.arm, requestID: request.id)
        let watcher = observed ? observer : nil
        guard route.arm != nil || watcher != nil || trace != nil else { return try await route.primary.infer(request, priority: priority) }
        let started = clock()
        do {
            let (response, timing) = try await route.primary.inferTimed(request, priority: priority)
            trace?.batch(timing)
            let seconds = clock() - started
            if let arm = route.arm {
                statistics.record(model: route.model, arm: arm, time: started, milliseconds: seconds * 1000, failed: false)
                for shadow in route.shadows {
                    shadows.submit(.init(model: route.model, target: shadow.target, shadow: shadow.model, request: request, primary: response))
                }
            }
            if watcher != nil { observe(request, response, on: route, latency: seconds) }
            return response
        } catch let error as ServingError {
            if let arm = route.arm, error.isServerFault {
                statistics.record(model: route.model, arm: arm, time: started, milliseconds: (clock() - started) * 1000, failed: true)
            }
            throw error
        }
    }

    /// Hands an answer computed outside `infer` (a job joined from pieces) to the observer.
    public func observe(_ request: InferenceRequest, _ response: InferenceResponse, on route: Route, latency: Double) {
        observer?.observe(Observation(model: route.model, version: route.primary.version, arm: route.arm, request: request, response: response,
                                      latency: latency, time: Date().timeIntervalSince1970))
    }

    /// Whether `selector` resolves to a version that serves now or will on its next request (model readiness):
    /// unlike `route`, it never starts a cold start. Under a traffic policy every arm's target must be available.
    public func isAvailable(_ model: String, _ selector: ModelSelector) async throws -> Bool {
        switch selector {
        case .version(let number):
            return try await manager.isAvailable(model, version: number)
        case .label(let label):
            guard let version = table.version(model, label: label) else {
                _ = try await manager.isAvailable(model)
                throw ServingError.notFound("model '\(model)' has no label '\(label)'")
            }
            return try await manager.isAvailable(model, version: version)
        case .latest:
            let pointers = table.pointers(model)
            if let pointers, let policy = pointers.traffic {
                for route in policy.routes {
                    guard let version = pointers.version(of: route.target), try await manager.isAvailable(model, version: version) else { return false }
                }
                return true
            }
            return try await manager.isAvailable(model, version: pointers?.labels[Self.defaultLabel])
        }
    }

    /// The version `selector` resolves to without requiring it to be ready (for status and readiness calls).
    public func version(_ model: String, _ selector: ModelSelector) async throws -> Int? {
        switch selector {
        case .version(let number): return number
        case .label(let label):
            guard let version = table.version(model, label: label) else { throw ServingError.notFound("model '\(model)' has no label '\(label)'") }
            return version
        case .latest: return table.version(model, label: Self.defaultLabel)
        }
    }

    /// A sticky key's bucket in 0..<100 (FNV-1a over its UTF-8): the same key always lands on the same arm for
    /// the same weights.
    static func bucket(for key: String) -> Int {
        var hash = FNV1a()
        hash.combine(key)
        return Int(hash.value % 100)
    }
}

/// Uniform buckets in 0..<100 for random splitting, without a system call per request: a Weyl sequence over an
/// atomic counter, finished with SplitMix64's mixer. Not for secrets; for traffic shares it is as good as random.
final class BucketSequence: Sendable {
    private let state = Atomic<UInt64>(UInt64(truncatingIfNeeded: Int(bitPattern: UInt(DispatchTime.now().uptimeNanoseconds))) | 1)

    func next() -> Int {
        var z = state.wrappingAdd(0x9E37_79B9_7F4A_7C15, ordering: .relaxed).newValue
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z ^= z >> 31
        return Int(z % 100)
    }
}

extension InferenceRequest {
    /// `parameters.routing_key` (v2): the key that keeps a caller on one arm of a traffic split.
    public var routingKey: String? {
        switch parameters["routing_key"] {
        case .string(let key)?: return key
        case .int(let key)?: return String(key)
        default: return nil
        }
    }
}
