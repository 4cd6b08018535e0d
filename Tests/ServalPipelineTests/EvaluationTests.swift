import Foundation
import ServalMonitor
import ServalPipeline
import Testing

/// The evaluate step on a real exported model; its agreement with scikit-learn on generated data is checked in CI
/// by scripts/golden/evaluate.py.
@Suite("Pipeline evaluation")
struct EvaluationTests {
    static let iris = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("examples/models/iris")

    @Test func logLossIsScikitLearnsOnItsDocumentedExample() throws {
        // sklearn.metrics.log_loss(["spam", "ham", "ham", "spam"], [[.1, .9], [.9, .1], [.8, .2], [.35, .65]]) == 0.21616...
        let loss = try #require(PerformanceMetrics.logLoss(truth: ["spam", "ham", "ham", "spam"], classes: ["ham", "spam"],
                                                           probabilities: [0.1, 0.9, 0.9, 0.1, 0.8, 0.2, 0.35, 0.65]))
        #expect(abs(loss - (-(log(0.9) + log(0.9) + log(0.8) + log(0.65)) / 4)) < 1e-15)
        #expect(String(format: "%.5f", loss) == "0.21616")
        #expect(PerformanceMetrics.logLoss(truth: ["other"], classes: ["ham", "spam"], probabilities: [0.5, 0.5]) == nil)
        // Clipped at Float's epsilon, not infinite, for a probability of 0.
        #expect(PerformanceMetrics.logLoss(truth: ["ham"], classes: ["ham", "spam"], probabilities: [0, 1]) == -log(Double(Float.ulpOfOne)))
    }

    @Test func theIrisModelIsScoredOnItsReferenceRowsAndMetricsItCannotGiveAreNamed() throws {
        let scored = try Evaluation.score(model: Self.iris.appendingPathComponent("1/model.onnx"), data: Self.iris.appendingPathComponent("reference.csv"),
                                          labelColumn: "species")
        #expect(scored.truth.count == 150)
        #expect(scored.predictions.labels?.count == 150)
        #expect(scored.predictions.classes == ["0", "1", "2"])
        let values = try Evaluation.metrics([.accuracy, .f1Macro, .logLoss], scored)
        let correct = zip(scored.truth, scored.predictions.labels ?? []).filter { LabelText.normalise($0) == $1 }.count
        #expect(values[.accuracy] == Double(correct) / 150)
        #expect(values[.logLoss].map { $0 > 0 && $0.isFinite } == true)
        #expect(throws: PipelineError.self) { try Evaluation.metrics([.rocAUC], scored) }  // three classes
        #expect(throws: PipelineError.self) { try Evaluation.metrics([.mae], scored) }  // a classifier
        let error = #expect(throws: PipelineError.self) {
            try Evaluation.score(model: Self.iris.appendingPathComponent("1/model.onnx"), data: Self.iris.appendingPathComponent("reference.csv"), labelColumn: "label")
        }
        #expect(error?.description.contains("evaluate.label_column 'label' is not a column") == true)
    }
}
