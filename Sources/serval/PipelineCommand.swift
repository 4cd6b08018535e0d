import ArgumentParser
import Foundation
import ServalPipeline

/// `serval pipeline ...`: the retraining loop: run a pipeline against a server, read its runs, check a file,
/// and the evaluate step on its own.
struct PipelineCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pipeline", abstract: "Retraining pipelines: run one, read its runs, check a pipeline file, evaluate a model as the evaluate step does.",
        subcommands: [Run.self, History.self, Show.self, Check.self, Evaluate.self])

    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Parse and validate a pipeline file; errors name the line and field.")
        @Argument(help: "The pipeline's YAML file.") var file: String

        func run() throws {
            guard let text = try? String(contentsOfFile: file, encoding: .utf8) else { throw PipelineError("cannot read \(file)") }
            let pipeline = try PipelineDefinition.parse(text, file: file)
            print("pipeline \(pipeline.name): model \(pipeline.model), data \(pipeline.data.map(\.name).joined(separator: ", ")), "
                  + "\(pipeline.candidates.count) candidate(s), metrics \(pipeline.evaluate.metrics.map(\.rawValue).joined(separator: ", ")), "
                  + "deploy \(pipeline.deploy.strategy.rawValue)")
        }
    }

    struct Evaluate: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Score a model on an evaluation CSV with Serval's engine and print the metrics.")
        @Argument(help: "An ONNX model.") var model: String
        @Option(help: "The evaluation CSV (with a header line).") var data: String
        @Option(name: .customLong("label-column"), help: "The column holding the true label or value.") var labelColumn: String
        @Option(help: "Metrics, comma-separated: \(EvaluationMetric.allCases.map(\.rawValue).joined(separator: ", ")).") var metrics = "accuracy,f1_macro"
        @Option(help: "Input columns in order (default: every column but the label).") var columns: String?
        @Flag(help: "Print the metrics as a JSON object.") var json = false

        func run() throws {
            let wanted = try metrics.split(separator: ",").map { name in
                let text = name.trimmingCharacters(in: .whitespaces)
                guard let metric = EvaluationMetric(rawValue: text) else {
                    throw ValidationError("--metrics: unknown metric '\(text)'; expected \(EvaluationMetric.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                return metric
            }
            let scored = try Evaluation.score(model: URL(fileURLWithPath: model), data: URL(fileURLWithPath: data), labelColumn: labelColumn,
                                              columns: columns.map { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } })
            let values = try Evaluation.metrics(wanted, scored)
            if json {
                // Shortest round-trip digits, so a reader gets the exact doubles.
                print("{" + wanted.compactMap { metric in values[metric].map { "\"\(metric.rawValue)\": \($0.isFinite ? String($0) : "null")" } }.joined(separator: ", ") + "}")
            } else {
                for metric in wanted { print("\(metric.rawValue.padding(toLength: 16, withPad: " ", startingAt: 0)) \(values[metric].map { String($0) } ?? "-")") }
            }
        }
    }
}
