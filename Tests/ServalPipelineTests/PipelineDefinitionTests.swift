import Foundation
import ServalPipeline
import Testing

/// Pipeline files: the documented example parses to what it says, and each mistake is named by file, line and
/// field before anything runs.
@Suite("Pipeline files")
struct PipelineDefinitionTests {
    static let example = """
        name: iris-retrain
        model: iris                          # the registry model it produces versions of
        data:
          train: data/train.csv
          eval: data/eval.csv
        params: {C: 1.0, max_iter: 200}
        deps: [train.py]
        train:
          run: python train.py --train ${data.train} --params ${params_file} --out ${outputs.model}
          matrix: {C: [0.1, 1.0, 10.0]}
        quantize: {enabled: true, calibration: "${data.train}", max_cosine_distance: 0.01}
        evaluate:
          label_column: species
          metrics: [accuracy, f1_macro]
          gates:
            accuracy: {min: 0.90, min_delta_vs_champion: 0.0}
            f1_macro: {min: 0.85}
        deploy:
          strategy: canary
          traffic: 10
          progressive: {steps: [10, 50, 100], interval_secs: 60}
          guard: {min_requests: 200, max_error_rate: 0.02, max_p99_latency_ratio: 2.0}
        triggers:
          on_alert: [dataset_drift, accuracy]
          every: 24h
          cooldown: 1h
        """

    static func error(_ text: String) -> String? {
        do {
            _ = try PipelineDefinition.parse(text, file: "p.yaml")
            return nil
        } catch {
            return "\(error)"
        }
    }

    @Test func theDocumentedExampleParsesToWhatItSays() throws {
        let pipeline = try PipelineDefinition.parse(Self.example, file: "p.yaml")
        #expect(pipeline.name == "iris-retrain")
        #expect(pipeline.model == "iris")
        #expect(pipeline.data.map(\.name) == ["train", "eval"])
        #expect(pipeline.dataPath("eval") == "data/eval.csv")
        #expect(pipeline.params.map(\.name) == ["C", "max_iter"])
        #expect(pipeline.param("C") == .double(1.0))
        #expect(pipeline.param("max_iter") == .int(200))
        #expect(pipeline.deps == ["train.py"])
        #expect(pipeline.candidates == [["C": .double(0.1)], ["C": .double(1.0)], ["C": .double(10.0)]])
        #expect(pipeline.quantize?.enabled == true)
        #expect(pipeline.quantize?.calibration == "${data.train}")
        #expect(pipeline.quantize?.maxCosineDistance == 0.01)
        #expect(pipeline.evaluate.metrics == [.accuracy, .f1Macro])
        #expect(pipeline.evaluate.gates[.accuracy]?.min == 0.9)
        #expect(pipeline.evaluate.gates[.accuracy]?.minDeltaVsChampion == 0)
        #expect(pipeline.evaluate.gates[.f1Macro]?.min == 0.85)
        #expect(pipeline.evaluate.gates[.f1Macro]?.minDeltaVsChampion == nil)
        #expect(pipeline.deploy.strategy == .canary)
        #expect(pipeline.deploy.progressiveSteps == [10, 50, 100])
        #expect(pipeline.deploy.guardMinRequests == 200)
        #expect(pipeline.triggers.onAlert == ["dataset_drift", "accuracy"])
        #expect(pipeline.triggers.everySeconds == 86400)
        #expect(pipeline.triggers.cooldownSeconds == 3600)
    }

    @Test(arguments: [
        ("python train.py --out ${outputs.modle}", "p.yaml:9: train.run: unknown variable ${outputs.modle}"),
        ("python train.py --c ${params.gamma}", "p.yaml:9: train.run: unknown variable ${params.gamma}"),
        ("python train.py --data ${data.test}", "p.yaml:9: train.run: unknown variable ${data.test}"),
    ])
    func anUnknownVariableIsNamedWithItsLine(_ command: String, _ expected: String) {
        let text = Self.example.replacingOccurrences(of: "python train.py --train ${data.train} --params ${params_file} --out ${outputs.model}", with: command)
        #expect(Self.error(text)?.hasPrefix(expected) == true, "\(Self.error(text) ?? "no error")")
    }

    @Test(arguments: [
        ("  strategy: canary", "  strategy: blue-green", "p.yaml:19: deploy.strategy: expected canary, shadow or direct"),
        ("  metrics: [accuracy, f1_macro]", "  metrics: [accuracy, f2]", "p.yaml:14: evaluate.metrics[1]: unknown metric 'f2'"),
        ("  on_alert: [dataset_drift, accuracy]", "  on_alert: [drift]", "p.yaml:24: triggers.on_alert[0]: unknown alert 'drift'"),
        ("  cooldown: 1h", "  cooldown: soon", "p.yaml:26: triggers.cooldown: expected a duration"),
        ("  traffic: 10", "  traffic: 150", "p.yaml:20: deploy.traffic: a percentage from 1 to 100"),
        ("  label_column: species", "  label: species", "p.yaml:13: evaluate.label: unknown field"),
        ("model: iris ", "modle: iris ", "p.yaml:2: modle: unknown field"),
        ("{steps: [10, 50, 100]", "{steps: [50, 10]", "p.yaml:21: deploy.progressive.steps: increasing percentages"),
    ])
    func eachMistakeNamesTheFileLineAndField(_ original: String, _ replacement: String, _ expected: String) {
        let text = Self.example.replacingOccurrences(of: original, with: replacement)
        #expect(text != Self.example)
        #expect(Self.error(text)?.hasPrefix(expected) == true, "\(Self.error(text) ?? "no error")")
    }

    @Test func requiredSectionsAreNamed() {
        #expect(Self.error("name: x\nmodel: m\n")?.contains("'data' is required") == true)
        #expect(Self.error("") != nil)
        #expect(Self.error("name: [1\n")?.contains("not YAML") == true)
    }

    @Test func substitutionReplacesKnownNamesKeepsEscapesAndRefusesUnknownOnes() throws {
        #expect(try Substitution.substitute("a ${x} b ${ y } $${z}", ["x": "1", "y": "2"]) == "a 1 b 2 ${z}")
        #expect(Substitution.references(in: "${a}${b.c} $${d}") == ["a", "b.c"])
        #expect(throws: PipelineError.self) { try Substitution.substitute("${nope}", [:]) }
        #expect(ParameterValue.mapping([.init(key: "b", value: .string("x")), .init(key: "a", value: .int(1))]).json == "{\"b\": \"x\", \"a\": 1}")
    }
}

/// The gates: absolute bounds, deltas against the champion, and what happens without one.
@Suite("Evaluation gates")
struct GateTests {
    static let gates = try! PipelineDefinition.parse(PipelineDefinitionTests.example, file: "p.yaml").evaluate.gates

    @Test func aCandidateBelowAMinimumOrBehindTheChampionFails() {
        let results = Gates.check(Self.gates, candidate: [.accuracy: 0.95, .f1Macro: 0.80], champion: [.accuracy: 0.96, .f1Macro: 0.9])
        #expect(results.map(\.rule) == ["min 0.9", "delta vs champion >= 0.0", "min 0.85"])
        #expect(results.map(\.outcome) == [.passed, .failed, .failed])
        #expect(Gates.table(results).contains("accuracy        delta vs champion >= 0.0      0.950000   0.960000   failed"))
    }

    @Test func withoutAChampionTheComparisonsAreSkippedAndTheBoundsStillHold() {
        let results = Gates.check(Self.gates, candidate: [.accuracy: 0.93, .f1Macro: 0.9], champion: nil)
        #expect(results.map(\.outcome) == [.passed, .skipped, .passed])
    }

    @Test func aMissingMetricFailsItsGate() {
        let results = Gates.check(Self.gates, candidate: [.accuracy: 0.99], champion: [.accuracy: 0.9])
        #expect(results.last?.outcome == .failed)
        #expect(results.map(\.outcome).filter { $0 == .passed }.count == 2)
    }
}

/// Triggers: one run at a time, the cooldown, the schedule, and alerts the pipeline does not watch.
@Suite("Pipeline triggers")
struct TriggerPolicyTests {
    static let triggers = try! PipelineDefinition.parse(PipelineDefinitionTests.example, file: "p.yaml").triggers  // accuracy/drift, 24h, cooldown 1h

    @Test func anAlertStartsARunAndASecondWithinTheCooldownIsIgnored() {
        var policy = TriggerPolicy(Self.triggers, now: 0)
        #expect(policy.decide(.alert("accuracy"), now: 100).start)
        #expect(policy.decide(.alert("dataset_drift"), now: 200).reason == "a run is in progress")
        policy.finished()
        let held = policy.decide(.alert("dataset_drift"), now: 1900)
        #expect(!held.start)
        #expect(held.reason == "within the cooldown: 1800 s left of 3600 s")
        #expect(policy.decide(.manual, now: 2000).start, "a person is not held by the cooldown")
        policy.finished()
        #expect(policy.decide(.alert("accuracy"), now: 2000 + 3600).start)
    }

    @Test func anAlertThePipelineDoesNotWatchStartsNothing() {
        var policy = TriggerPolicy(Self.triggers, now: 0)
        let decision = policy.decide(.alert("mae"), now: 10)
        #expect(!decision.start)
        #expect(decision.reason.hasPrefix("the pipeline does not watch mae"))
        #expect(policy.decide(.alert("accuracy"), now: 11).start, "an ignored alert leaves no cooldown behind")
    }

    @Test func theScheduleComesDueEveryPeriodAndSkipsWhatItMissed() {
        var policy = TriggerPolicy(Self.triggers, now: 0)
        #expect(policy.tick(now: 86_399) == nil)
        #expect(policy.tick(now: 86_400)?.start == true)
        policy.finished()
        #expect(policy.tick(now: 86_401) == nil)
        // Three days later: one run, not one per missed day.
        #expect(policy.tick(now: 4 * 86_400 + 5)?.start == true)
        #expect(policy.tick(now: 4 * 86_400 + 6) == nil)
    }
}
