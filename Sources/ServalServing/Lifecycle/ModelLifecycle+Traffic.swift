import Foundation
import Metrics
import ServalRegistry
import ServalWire

extension ModelLifecycle {
    /// One arm as `GET .../traffic` reports it.
    public struct ArmReport: Sendable {
        public let target: TrafficPolicy.Target
        public let version: Int?
        public let weight: Int
        public let figures: ArmFigures
    }

    /// Sets the model's traffic policy after checking it: weights sum to 100, none negative, every target a known
    /// label or a version on disk. Its targets are pinned, so they load before the policy routes to them.
    public func setTraffic(model: String, policy: TrafficPolicy, actor: String, reason: String?) async throws {
        try await requireModel(model)
        let labels = registry.table.labels(model)
        let onDisk = manager.repository.versionsOnDisk(model)
        do {
            try policy.validate { target in
                if let label = target.label { return labels[label] != nil }
                return target.version.flatMap(Int.init).map(onDisk.contains) ?? false
            }
        } catch let error as RegistryError {
            throw ServingError.invalidArgument(error.message)
        }
        try await mapped { try await self.registry.setTraffic(model, policy, actor: actor, reason: reason) }
        try await manager.reconcile(only: [model])
        publishPointers()
    }

    public func removeTraffic(model: String, actor: String, reason: String?) async throws {
        try await requireModel(model)
        guard registry.table.pointers(model)?.traffic != nil else { throw ServingError.notFound("model '\(model)' has no traffic policy") }
        try await mapped { try await self.registry.setTraffic(model, nil, actor: actor, reason: reason) }
        try await manager.reconcile(only: [model])
        publishPointers()
    }

    /// One shadow target as `GET .../traffic` reports it (cumulative since this process started).
    public struct ShadowReport: Sendable {
        public let target: TrafficPolicy.Target
        public let version: Int?
        public let percent: Double
        public let figures: ShadowRunner.Figures
    }

    public func shadows(model: String) -> [ShadowReport] {
        guard let pointers = registry.table.pointers(model), let policy = pointers.traffic else { return [] }
        return (policy.shadow ?? []).map {
            ShadowReport(target: $0.target, version: pointers.version(of: $0.target), percent: $0.percent,
                         figures: router.shadows.figures(model: model, target: $0.target.name))
        }
    }

    /// The policy in force with each arm's live figures over the guard window (60 s without a guard).
    public func traffic(model: String) async throws -> (policy: TrafficPolicy, arms: [ArmReport])? {
        try await requireModel(model)
        guard let pointers = registry.table.pointers(model), let policy = pointers.traffic else { return nil }
        let since = router.clock() - Double(policy.guard?.windowSecs ?? 60)
        let arms = policy.routes.map { route in
            ArmReport(target: route.target, version: pointers.version(of: route.target), weight: route.weight,
                      figures: router.statistics.figures(model: model, arm: route.target.name, since: since))
        }
        return (policy, arms)
    }

    /// One pass of the guard over every model with a policy: roll back a canary that trips it, advance a
    /// progressive rollout whose interval has passed, promote at 100. `now` is the wall clock the policy's
    /// timestamps are on.
    public func runTrafficGuard(now: Date = Date()) async throws {
        for (model, pointers) in registry.table.all {
            guard let policy = pointers.traffic, policy.guard != nil || policy.progressive != nil else { continue }
            let since = router.clock() - Double(policy.guard?.windowSecs ?? 60)
            let changed = pointers.trafficSince.flatMap { try? Date($0, strategy: .iso8601) } ?? now
            let decision = TrafficGuard.evaluate(
                policy, figures: { self.router.statistics.figures(model: model, arm: $0.name, since: since) },
                secondsSincePolicyChange: now.timeIntervalSince(changed))
            switch decision {
            case .hold:
                continue
            case .rollback(let arm, let reason, let figures):
                let receivers = policy.guard?.webhook.map { [WebhookOutbox.Webhook(url: $0, secret: guardWebhookSecret ?? "")] } ?? []
                try await registry.setTraffic(model, policy.reweighted(arm, to: 0), actor: Actor.guardian, reason: reason, action: .autoRollback,
                                              details: figures, notify: receivers)
                Counter(label: "serval_traffic_rollbacks_total", dimensions: [("model", model)]).increment()
            case .advance(let canary, let weight):
                try await registry.setTraffic(model, policy.reweighted(canary, to: weight), actor: Actor.guardian, reason: "progressive step",
                                              details: ["arm": .string(canary.name), "step": .number(Double(weight))])
            case .promote(let canary):
                guard let version = pointers.version(of: canary) else { continue }
                let promoted = TrafficPolicy(routes: [.init(label: TrafficPolicy.stableLabel, weight: 100)], guard: policy.guard)
                try await registry.promote(model, label: TrafficPolicy.stableLabel, to: version, policy: promoted, actor: Actor.guardian,
                                           details: ["arm": .string(canary.name)])
            }
            try await manager.reconcile(only: [model])
            publishPointers()
        }
    }
}
