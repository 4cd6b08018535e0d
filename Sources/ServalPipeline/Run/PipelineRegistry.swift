import Foundation
import ServalRegistry

/// The registry as a pipeline run sees it: the champion to beat, registering the winner with its lineage, setting
/// its traffic, and keeping the run's record. `serval pipeline run` talks to a running server's REST API through
/// it, so the run changes nothing the server would not audit.
public protocol PipelineRegistry: Sendable {
    /// The version labelled `stable` and its ONNX file, or nil when the model has none yet.
    func champion(_ model: String) async throws -> (version: Int, file: Data)?
    /// The registered version whose file has this SHA-256, if any.
    func version(_ model: String, sha256: String) async throws -> Int?
    /// Registers `file` as the model's next version; returns its number.
    func register(_ model: String, file: Data, metadata: VersionMetadata) async throws -> Int
    /// Applies a deployment.
    func apply(_ model: String, _ deployment: Deployment) async throws
    /// Saves the run's record (called as the run starts and after each step).
    func save(_ run: PipelineRunRecord) async throws
}

/// What deploying a registered version does: move `stable` to it, or set a traffic policy that sends it a
/// canary share (with the guard and progressive promotion) or mirrors traffic to it.
public enum Deployment: Sendable, Equatable {
    case label(String, version: Int)
    case traffic(TrafficPolicy)

    /// The deployment the pipeline's `deploy` block asks for `version`; without a champion the first version is
    /// labelled `stable` directly, whatever the strategy.
    public static func plan(_ deploy: PipelineDefinition.Deploy, version: Int, hasChampion: Bool) -> Deployment {
        guard hasChampion, deploy.strategy != .direct else { return .label(TrafficPolicy.stableLabel, version: version) }
        let stable = TrafficPolicy.stableLabel
        switch deploy.strategy {
        case .shadow:
            return .traffic(TrafficPolicy(routes: [.init(label: stable, weight: 100)],
                                          shadow: [.init(label: nil, version: String(version), percent: Double(deploy.traffic))]))
        case .canary, .direct:
            var policy = TrafficPolicy(routes: [.init(label: stable, weight: 100 - deploy.traffic), .init(version: String(version), weight: deploy.traffic)])
            if deploy.guardMinRequests != nil || deploy.guardMaxErrorRate != nil || deploy.guardMaxP99LatencyRatio != nil || deploy.progressiveSteps != nil {
                // Progressive promotion advances through the guard; without thresholds of its own it uses a 5% error ceiling.
                let noThreshold = deploy.guardMaxErrorRate == nil && deploy.guardMaxP99LatencyRatio == nil
                policy.guard = TrafficPolicy.Guard(minRequests: deploy.guardMinRequests ?? 200, maxErrorRate: noThreshold ? 0.05 : deploy.guardMaxErrorRate,
                                                   maxP99LatencyRatio: deploy.guardMaxP99LatencyRatio)
            }
            if let steps = deploy.progressiveSteps {
                policy.progressive = TrafficPolicy.Progressive(steps: steps.last == 100 ? steps : steps + [100],
                                                               intervalSecs: max(1, Int((deploy.progressiveIntervalSeconds ?? 60).rounded())))
            }
            return .traffic(policy)
        }
    }

    public var description: String {
        switch self {
        case .label(let label, let version): return "label \(label) -> v\(version)"
        case .traffic(let policy):
            var parts = [policy.routes.map { "\($0.target.name) \($0.weight)%" }.joined(separator: ", ")]
            if let shadow = policy.shadow, !shadow.isEmpty { parts.append("shadow " + shadow.map { "\($0.target.name) \($0.percent)%" }.joined(separator: ", ")) }
            if let progressive = policy.progressive { parts.append("progressive \(progressive.steps.map(String.init).joined(separator: "/")) every \(progressive.intervalSecs) s") }
            if policy.guard != nil { parts.append("guarded") }
            return "traffic " + parts.joined(separator: "; ")
        }
    }
}
