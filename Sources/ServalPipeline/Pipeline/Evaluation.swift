import Foundation
import ServalEngine
import ServalMonitor
import ServalONNX
import ServalTensor
import ServalWire

/// The evaluate step: scores a model on an evaluation CSV with Serval's own engine and computes the pipeline's
/// metrics as scikit-learn does (the counting and ranking ones through `PerformanceMetrics`, shared with the
/// monitor). The inputs are every column but the label, in file order, or the columns named.
public enum Evaluation {
    /// A model's predictions on a file, beside the file's labels.
    public struct Scored: Sendable {
        public let truth: [String]
        public let predictions: RowPredictions
    }

    public static func score(model url: URL, data: URL, labelColumn: String, columns: [String]? = nil, batchSize: Int = 1024) throws -> Scored {
        let onnx: ONNXModel
        do { onnx = try ONNXModel(contentsOf: url) } catch { throw PipelineError("\(url.path): \(error)") }
        let session = try Session(graph: onnx.graph)
        guard session.inputs.count == 1, let input = session.inputs.first else {
            throw PipelineError("\(url.lastPathComponent) has \(session.inputs.count) inputs; evaluate feeds one 2-D input")
        }
        var dtype = DType.float32
        if case .tensor(let declared?, _) = input.type { dtype = declared }
        var reader = try CSVReader(url: data)
        guard let header = try reader.next()?.fields else { throw PipelineError("\(data.path) is empty; a CSV file with a header line is expected") }
        guard let label = header.firstIndex(of: labelColumn) else {
            throw PipelineError("\(data.lastPathComponent): evaluate.label_column '\(labelColumn)' is not a column (\(header.joined(separator: ", ")))")
        }
        let features: [Int] = try (columns ?? header.enumerated().filter { $0.offset != label }.map(\.element)).map { name in
            guard let index = header.firstIndex(of: name) else { throw PipelineError("\(data.lastPathComponent): evaluate.columns names '\(name)', which is not a column") }
            return index
        }
        var truth: [String] = []
        var merged = RowPredictions()
        var chunk: [Float] = []
        var rows = 0
        func run() throws {
            guard rows > 0 else { return }
            let feeds: [String: Value] = [input.name: .tensor(try Tensor(shape: [rows, features.count], scalars: chunk).converted(to: dtype))]
            let outputs = try session.run(feeds)
            let read = PredictionReader.read(session.outputTypes.compactMap { info in outputs[info.name].map { (info.name, $0) } }, rows: rows,
                                             classLabels: onnx.graph.classifierLabels)
            // What `metrics` reads: labels, values, and the class probabilities with their classes.
            merged.labels = read.labels.map { (merged.labels ?? []) + $0 }
            merged.values = read.values.map { (merged.values ?? []) + $0 }
            merged.probabilities = read.probabilities.map { (merged.probabilities ?? []) + $0 }
            merged.classes = read.classes ?? merged.classes
            chunk.removeAll(keepingCapacity: true)
            rows = 0
        }
        while let record = try reader.next() {
            guard record.fields.count == header.count else {
                throw PipelineError("\(data.lastPathComponent) line \(record.line): expected \(header.count) fields, found \(record.fields.count)")
            }
            for index in features {
                let field = record.fields[index].trimmingCharacters(in: .whitespaces)
                guard let value = Float(field), value.isFinite else {
                    throw PipelineError("\(data.lastPathComponent) line \(record.line), column '\(header[index])': '\(field)' is not a finite number")
                }
                chunk.append(value)
            }
            truth.append(record.fields[label].trimmingCharacters(in: .whitespaces))
            rows += 1
            if rows == batchSize { try run() }
        }
        try run()
        guard !truth.isEmpty else { throw PipelineError("\(data.lastPathComponent) has no data rows to evaluate on") }
        return Scored(truth: truth, predictions: merged)
    }

    /// The metrics asked for; one a model cannot give (roc_auc for more than two classes, log_loss without
    /// probabilities, mae for a classifier) is an error naming it.
    public static func metrics(_ wanted: [EvaluationMetric], _ scored: Scored) throws -> [EvaluationMetric: Double] {
        var result: [EvaluationMetric: Double] = [:]
        let predictions = scored.predictions
        let regression = wanted.contains { [.mae, .rmse, .r2].contains($0) }
        if regression {
            guard let values = predictions.values else { throw PipelineError("mae, rmse and r2 need a regression output (one number per row)") }
            let truth = try scored.truth.enumerated().map { index, cell in
                guard let value = Double(cell) else { throw PipelineError("row \(index + 1): the label '\(cell)' is not a number, as a regression needs") }
                return value
            }
            let figures = PerformanceMetrics.regression(truth: truth, predicted: values)
            for metric in wanted {
                switch metric {
                case .mae: result[metric] = figures["mae"]
                case .rmse: result[metric] = figures["rmse"]
                case .r2: result[metric] = figures["r2"]
                default: break
                }
            }
        }
        let classification = wanted.filter { ![.mae, .rmse, .r2].contains($0) }
        guard !classification.isEmpty else { return result }
        guard let labels = predictions.labels else { throw PipelineError("\(classification.map(\.rawValue).joined(separator: ", ")) need a classifier's label output") }
        let truth = scored.truth.map(LabelText.normalise)
        // ROC-AUC scores the greater label (scikit-learn's positive class) with its probability column.
        var scores: [Double]?
        let truthClasses = Set(truth).sorted(by: LabelOrder.less)
        if truthClasses.count == 2, let classes = predictions.classes, let probabilities = predictions.probabilities,
           let column = classes.map(LabelText.normalise).firstIndex(of: truthClasses[1]) {
            scores = (0..<truth.count).map { probabilities[$0 * classes.count + column] }
        }
        let figures = PerformanceMetrics.classification(truth: truth, predicted: labels.map(LabelText.normalise), scores: scores)
        for metric in classification {
            switch metric {
            case .accuracy: result[metric] = figures["accuracy"]
            case .f1Macro: result[metric] = figures["f1"]
            case .precisionMacro: result[metric] = figures["precision"]
            case .recallMacro: result[metric] = figures["recall"]
            case .rocAUC:
                guard let value = figures["roc_auc"] else {
                    throw PipelineError("roc_auc needs two classes in the labels (found \(truthClasses.count)) and the model's probabilities")
                }
                result[metric] = value
            case .logLoss:
                guard let classes = predictions.classes, let probabilities = predictions.probabilities,
                      let value = PerformanceMetrics.logLoss(truth: truth, classes: classes.map(LabelText.normalise), probabilities: probabilities) else {
                    throw PipelineError("log_loss needs the model's class probabilities, with every label of the data among its classes")
                }
                result[metric] = value
            default: break
            }
        }
        return result
    }
}

/// The metrics `evaluate` computes, as scikit-learn names them (the macro averages as `*_macro`).
public enum EvaluationMetric: String, Sendable, CaseIterable, Hashable {
    case accuracy, f1Macro = "f1_macro", precisionMacro = "precision_macro", recallMacro = "recall_macro", rocAUC = "roc_auc", logLoss = "log_loss"
    case mae, rmse, r2

    /// Larger is better, except for the error metrics.
    public var higherIsBetter: Bool { ![.logLoss, .mae, .rmse].contains(self) }
}
