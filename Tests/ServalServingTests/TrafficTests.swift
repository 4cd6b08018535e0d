import Foundation
import ServalRegistry
import ServalTensor
@testable import ServalServing
import Testing
import ServalWire

/// Traffic policies: validation, splitting, stickiness, rescaling, and the guard's decisions over injected figures.
struct TrafficTests {
    static let stable = TrafficPolicy.Target(label: "stable")
    static let canary = TrafficPolicy.Target(label: "canary")

    static func policy(_ stable: Int, _ canary: Int, guard rule: TrafficPolicy.Guard? = nil, progressive: TrafficPolicy.Progressive? = nil) -> TrafficPolicy {
        TrafficPolicy(routes: [.init(label: "stable", weight: stable), .init(label: "canary", weight: canary)], guard: rule, progressive: progressive)
    }

    static func validationError(_ policy: TrafficPolicy) -> String? {
        do {
            try policy.validate { $0.label == "stable" || $0.label == "canary" || $0.version == "3" }
            return nil
        } catch let error as RegistryError {
            return error.message
        } catch {
            return "\(error)"
        }
    }

    @Test func validationNamesTheField() {
        #expect(Self.validationError(Self.policy(90, 10)) == nil)
        #expect(Self.validationError(Self.policy(90, 20)) == "field 'routes': weights must sum to 100, they sum to 110")
        #expect(Self.validationError(Self.policy(110, -10)) == "routes[1].weight must be a non-negative integer, got -10")
        #expect(Self.validationError(TrafficPolicy(routes: [.init(label: "stable", weight: 50), .init(label: "nope", weight: 50)])) == "routes[1] names an unknown target 'nope'")
        #expect(Self.validationError(TrafficPolicy(routes: [.init(label: "stable", version: "3", weight: 100)])) == "routes[0] must name exactly one of 'label' or 'version'")
        #expect(Self.validationError(TrafficPolicy(routes: [.init(label: "stable", weight: 50), .init(version: "3", weight: 50)])) == nil)
        #expect(Self.validationError(Self.policy(90, 10, progressive: .init(steps: [10, 50], intervalSecs: 60)))?.contains("end at 100") == true)
        #expect(Self.validationError(Self.policy(90, 10, progressive: .init(steps: [10, 100], intervalSecs: 0))) == "progressive.interval_secs must be at least 1")
        #expect(Self.validationError(Self.policy(90, 10, guard: .init(minRequests: 10))) == "guard needs max_error_rate or max_p99_latency_ratio")
    }

    @Test func bucketsFallInEachRoutesShare() {
        let policy = Self.policy(80, 20)
        #expect((0..<80).allSatisfy { policy.route(forBucket: $0).label == "stable" })
        #expect((80..<100).allSatisfy { policy.route(forBucket: $0).label == "canary" })
        let onlyCanary = Self.policy(0, 100)
        #expect(onlyCanary.route(forBucket: 0).label == "canary")
    }

    @Test func stickyKeysAlwaysLandInTheSameBucketAndSpreadOverAll() {
        #expect(Router.bucket(for: "user-42") == Router.bucket(for: "user-42"))
        let buckets = Set((0..<2000).map { Router.bucket(for: "user-\($0)") })
        #expect(buckets.count == 100)
    }

    @Test func reweightingKeepsTheSumAt100() {
        #expect(Self.policy(90, 10).reweighted(Self.canary, to: 0).weights == ["stable": 100, "canary": 0])
        #expect(Self.policy(90, 10).reweighted(Self.canary, to: 25).weights == ["stable": 75, "canary": 25])
        let three = TrafficPolicy(routes: [.init(label: "stable", weight: 50), .init(label: "a", weight: 30), .init(label: "b", weight: 20)])
        let rescaled = three.reweighted(.init(label: "b"), to: 0)
        #expect(rescaled.routes.map(\.weight).reduce(0, +) == 100)
        #expect(rescaled.weights == ["stable": 63, "a": 37, "b": 0])
    }

    static let rule = TrafficPolicy.Guard(minRequests: 100, maxErrorRate: 0.02, maxP99LatencyRatio: 2.0, windowSecs: 60)

    static func figures(stable: ArmFigures, canary: ArmFigures) -> (TrafficPolicy.Target) -> ArmFigures {
        { $0 == Self.stable ? stable : canary }
    }

    @Test func guardRollsBackACanaryWithTooManyErrors() {
        let decision = TrafficGuard.evaluate(
            Self.policy(90, 10, guard: Self.rule),
            figures: Self.figures(stable: .init(requests: 900, errors: 0, p99Milliseconds: 5), canary: .init(requests: 100, errors: 3, p99Milliseconds: 5)),
            secondsSincePolicyChange: 0)
        guard case .rollback(let arm, let reason, let evidence) = decision else { Issue.record("expected a rollback, got \(decision)"); return }
        #expect(arm == Self.canary)
        #expect(reason.contains("error rate 0.03"))
        #expect(evidence["errors"] == .number(3) && evidence["requests"] == .number(100))
    }

    @Test func guardRollsBackACanaryMuchSlowerThanStable() {
        let decision = TrafficGuard.evaluate(
            Self.policy(90, 10, guard: Self.rule),
            figures: Self.figures(stable: .init(requests: 900, p99Milliseconds: 4), canary: .init(requests: 150, p99Milliseconds: 9)),
            secondsSincePolicyChange: 0)
        guard case .rollback(_, let reason, let evidence) = decision else { Issue.record("expected a rollback, got \(decision)"); return }
        #expect(reason.contains("2.25x"))
        #expect(evidence["p99_ratio"] == .number(2.25))
    }

    @Test func guardWaitsForMinRequestsAndHoldsAHealthyCanary() {
        let few = TrafficGuard.evaluate(
            Self.policy(90, 10, guard: Self.rule),
            figures: Self.figures(stable: .init(requests: 900, p99Milliseconds: 4), canary: .init(requests: 99, errors: 50, p99Milliseconds: 90)),
            secondsSincePolicyChange: 0)
        #expect(few == .hold)
        let healthy = TrafficGuard.evaluate(
            Self.policy(90, 10, guard: Self.rule),
            figures: Self.figures(stable: .init(requests: 900, errors: 1, p99Milliseconds: 4), canary: .init(requests: 100, errors: 2, p99Milliseconds: 7.9)),
            secondsSincePolicyChange: 0)
        #expect(healthy == .hold)
    }

    @Test func progressiveAdvancesOnlyAfterTheIntervalAndPromotesAtTheEnd() {
        let steps = TrafficPolicy.Progressive(steps: [10, 25, 50, 100], intervalSecs: 60)
        let quiet = Self.figures(stable: .init(), canary: .init())
        #expect(TrafficGuard.evaluate(Self.policy(90, 10, progressive: steps), figures: quiet, secondsSincePolicyChange: 59) == .hold)
        #expect(TrafficGuard.evaluate(Self.policy(90, 10, progressive: steps), figures: quiet, secondsSincePolicyChange: 60) == .advance(canary: Self.canary, weight: 25))
        #expect(TrafficGuard.evaluate(Self.policy(75, 25, progressive: steps), figures: quiet, secondsSincePolicyChange: 61) == .advance(canary: Self.canary, weight: 50))
        #expect(TrafficGuard.evaluate(Self.policy(50, 50, progressive: steps), figures: quiet, secondsSincePolicyChange: 61) == .promote(canary: Self.canary))
        // A rolled-back canary (weight 0) never advances again.
        #expect(TrafficGuard.evaluate(Self.policy(100, 0, progressive: steps), figures: quiet, secondsSincePolicyChange: 600) == .hold)
    }

    @Test func aTrippedGuardWinsOverAProgressiveStep() {
        let decision = TrafficGuard.evaluate(
            Self.policy(75, 25, guard: Self.rule, progressive: .init(steps: [25, 50, 100], intervalSecs: 1)),
            figures: Self.figures(stable: .init(requests: 300, p99Milliseconds: 1), canary: .init(requests: 100, errors: 10, p99Milliseconds: 1)),
            secondsSincePolicyChange: 100)
        guard case .rollback = decision else { Issue.record("expected a rollback, got \(decision)"); return }
    }

    @Test func armFiguresUseNearestRankQuantilesOverTheWindow() {
        let statistics = TrafficStatistics(capacity: 1000)
        for index in 1...100 { statistics.record(model: "m", arm: "a", time: Double(index), milliseconds: Double(index), failed: index % 10 == 0) }
        let all = statistics.figures(model: "m", arm: "a", since: 0)
        #expect(all == ArmFigures(requests: 100, errors: 10, p50Milliseconds: 50, p99Milliseconds: 99))
        let recent = statistics.figures(model: "m", arm: "a", since: 91)
        #expect(recent.requests == 10 && recent.errors == 1 && recent.p50Milliseconds == 95)
    }
}

/// How shadow rows are judged to agree.
struct ShadowComparisonTests {
    static func response(_ outputs: [(String, Tensor)]) -> InferenceResponse {
        InferenceResponse(modelName: "m", modelVersion: "1", id: nil, outputs: outputs.map { ($0.0, .tensor($0.1)) })
    }

    @Test func classifierRowsDisagreeOnLabelOrArgmax() {
        let primary = Self.response([("label", Tensor(shape: [3], scalars: [Int64(0), 1, 2])), ("probabilities", Tensor(shape: [3, 2], scalars: [Float(0.9), 0.1, 0.2, 0.8, 0.6, 0.4]))])
        let shadow = Self.response([("label", Tensor(shape: [3], scalars: [Int64(0), 1, 1])), ("probabilities", Tensor(shape: [3, 2], scalars: [Float(0.7), 0.3, 0.4, 0.6, 0.6, 0.4]))])
        // Row 0 and 1: same label and argmax despite different scores; row 2: label differs.
        #expect(ShadowComparison.compare(primary: primary, shadow: shadow) == .init(rows: 3, disagreeing: 1))
    }

    @Test func regressionRowsDisagreeOverTheRelativeTolerance() {
        let primary = Self.response([("y", Tensor(shape: [3, 1], scalars: [Float(100), 1, -5]))])
        let shadow = Self.response([("y", Tensor(shape: [3, 1], scalars: [Float(100.05), 1.01, -5]))])
        #expect(ShadowComparison.compare(primary: primary, shadow: shadow) == .init(rows: 3, disagreeing: 1))
    }
}
