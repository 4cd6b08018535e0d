import Foundation
import ServalRegistry

/// The automatic side of a traffic policy, as a pure decision over the policy and the arms' figures: roll back a
/// canary that is worse than stable, or advance (and finally promote) a progressive rollout that holds.
/// `ModelLifecycle.runTrafficGuard` applies what it decides.
public enum TrafficGuard {
    public enum Decision: Sendable, Equatable {
        case hold
        /// Set `arm`'s weight to 0 (the others rescaled), for `reason`, with the figures behind it.
        case rollback(arm: TrafficPolicy.Target, reason: String, figures: [String: JSONDocument])
        /// Move the canary to the next progressive step.
        case advance(canary: TrafficPolicy.Target, weight: Int)
        /// The last step: `stable` moves to the canary's version and the policy becomes stable 100.
        case promote(canary: TrafficPolicy.Target)
    }

    /// - Parameters:
    ///   - figures: each arm's figures over the guard window.
    ///   - secondsSincePolicyChange: how long the current weights have been in force (progressive steps wait
    ///     `interval_secs` between moves).
    public static func evaluate(
        _ policy: TrafficPolicy, figures: (TrafficPolicy.Target) -> ArmFigures, secondsSincePolicyChange: Double
    ) -> Decision {
        if let rule = policy.guard, let stableRoute = policy.routes.first(where: { $0.label == TrafficPolicy.stableLabel }) {
            let stable = figures(stableRoute.target)
            for canary in policy.canaryRoutes where canary.weight > 0 {
                let arm = figures(canary.target)
                guard arm.requests >= rule.minRequests else { continue }
                func evidence(_ extra: [String: JSONDocument]) -> [String: JSONDocument] {
                    var figures: [String: JSONDocument] = [
                        "arm": .string(canary.target.name), "requests": .number(Double(arm.requests)), "errors": .number(Double(arm.errors)),
                        "error_rate": .number(arm.errorRate), "p99_ms": .number(arm.p99Milliseconds),
                        "stable_requests": .number(Double(stable.requests)), "stable_p99_ms": .number(stable.p99Milliseconds),
                        "window_secs": .number(Double(rule.windowSecs)),
                    ]
                    figures.merge(extra) { $1 }
                    return figures
                }
                if let limit = rule.maxErrorRate, arm.errorRate > limit {
                    return .rollback(
                        arm: canary.target, reason: "error rate \(format(arm.errorRate)) over max_error_rate \(format(limit))",
                        figures: evidence(["max_error_rate": .number(limit)]))
                }
                if let ratio = rule.maxP99LatencyRatio, stable.requests >= rule.minRequests, stable.p99Milliseconds > 0,
                   arm.p99Milliseconds > ratio * stable.p99Milliseconds
                {
                    let measured = arm.p99Milliseconds / stable.p99Milliseconds
                    return .rollback(
                        arm: canary.target, reason: "p99 \(format(arm.p99Milliseconds)) ms is \(format(measured))x stable's \(format(stable.p99Milliseconds)) ms, over max_p99_latency_ratio \(format(ratio))",
                        figures: evidence(["max_p99_latency_ratio": .number(ratio), "p99_ratio": .number(measured)]))
                }
            }
        }
        guard let progressive = policy.progressive, let canary = policy.canaryRoutes.first, canary.weight > 0,
              secondsSincePolicyChange >= Double(progressive.intervalSecs)
        else { return .hold }
        guard let next = progressive.steps.first(where: { $0 > canary.weight }) else { return .promote(canary: canary.target) }
        return next >= 100 ? .promote(canary: canary.target) : .advance(canary: canary.target, weight: next)
    }

    static func format(_ value: Double) -> String { String(format: "%.3g", value) }
}
