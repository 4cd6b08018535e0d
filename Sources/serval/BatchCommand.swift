import ArgumentParser
import Foundation
import ServalEngine
import ServalJobs
import ServalONNX

/// `serval batch`: scores a CSV file, a JSON Lines file or a folder of `.npy` arrays with a model in this process,
/// streaming, in input order, with shards and resume. Exit 0 when every row was scored, 2 when some rows failed (see --errors), 1 on abort or error.
struct BatchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "batch", abstract: "Score a CSV, JSON Lines or .npy input with a model (streaming; shards and resume).",
        discussion: "Exit 0 when every row was scored, 2 when some rows failed (they go to --errors), 1 when --max-errors was exceeded or the run failed.")

    @Option(name: .customLong("model-repository"), help: "Model repository (with --model).")
    var modelRepository: String?

    @Option(help: "NAME or NAME:VERSION in --model-repository (default: its latest version).")
    var model: String?

    @Option(name: .customLong("model-file"), help: "An ONNX file (instead of --model-repository and --model).")
    var modelFile: String?

    @Option(help: "What to score: a CSV file with a header line, a JSON Lines file (one {\"input\": row} object per line), or a folder with one INPUT.npy per model input.")
    var input: String

    @Option(help: "Where the scores go, in the input's format (for npy, a folder that gets one OUTPUT.npy per model output).")
    var output: String

    @Option(help: "csv, jsonl or npy (default: npy for a folder, jsonl for .jsonl/.ndjson, else csv).")
    var format: String?

    @Option(help: "CSV: columns of the model's 2-D input, in order (default: every numeric column).")
    var columns: String?

    @Option(name: .customLong("input-map"), help: "CSV: columns per input for models with several: X=a,b,c;Y=d.")
    var inputMap: String?

    @Flag(name: .customLong("keep-columns"), help: "CSV: copy the input columns into the output before the outputs.")
    var keepColumns = false

    @Option(name: .customLong("batch-size"), help: "Rows per inference.")
    var batchSize = 1024

    @Option(help: "Intra-op threads.")
    var threads = 1

    @Option(help: "K/N: process the K-th of N contiguous parts (only part 1 writes the header); 'auto' reads JOB_COMPLETION_INDEX and needs --shards.")
    var shard: String?

    @Option(help: "Number of shards with --shard auto (Kubernetes Indexed Jobs).")
    var shards: Int?

    @Flag(help: "Continue from OUTPUT.serval-checkpoint after an interrupted run.")
    var resume = false

    @Option(name: .customLong("max-errors"), help: "Abort (exit 1) once more rows than this have failed.")
    var maxErrors = 100

    @Option(help: "JSONL file for rows that failed: {\"line\",\"column\",\"reason\"}.")
    var errors: String?

    func validate() throws {
        if let format, BatchFormat(rawValue: format) == nil { throw ValidationError("--format must be csv, jsonl or npy; got '\(format)'") }
        guard (modelFile == nil) != (modelRepository == nil && model == nil) else {
            throw ValidationError("give either --model-file or --model-repository with --model")
        }
        if modelFile == nil, modelRepository == nil || model == nil { throw ValidationError("--model-repository and --model go together") }
        guard batchSize > 0, threads > 0, maxErrors >= 0 else { throw ValidationError("--batch-size and --threads must be positive, --max-errors 0 or more") }
        guard columns == nil || inputMap == nil else { throw ValidationError("--columns and --input-map exclude each other") }
        _ = try shardPosition()
    }

    func shardPosition() throws -> (index: Int, count: Int) {
        guard let shard else { return (1, 1) }
        if shard == "auto" {
            guard let shards, shards > 0 else { throw ValidationError("--shard auto needs --shards N") }
            guard let text = ProcessInfo.processInfo.environment["JOB_COMPLETION_INDEX"], let index = Int(text), index >= 0, index < shards else {
                throw ValidationError("--shard auto needs JOB_COMPLETION_INDEX (0 to \(shards - 1)) in the environment, as a Kubernetes Indexed Job sets it")
            }
            return (index + 1, shards)
        }
        let parts = shard.split(separator: "/")
        guard parts.count == 2, let index = Int(parts[0]), let count = Int(parts[1]), count > 0, (1...count).contains(index) else {
            throw ValidationError("--shard must be K/N with 1 ≤ K ≤ N, or auto; got '\(shard)'")
        }
        return (index, count)
    }

    func modelURL() throws -> URL {
        if let modelFile { return URL(fileURLWithPath: modelFile) }
        let parts = model!.split(separator: ":", maxSplits: 1).map(String.init)
        let folder = URL(fileURLWithPath: modelRepository!).appendingPathComponent(parts[0])
        if parts.count == 2 {
            guard let version = Int(parts[1]), version > 0 else { throw ValidationError("--model \(model!): the version must be a positive number") }
            return folder.appendingPathComponent("\(version)/model.onnx")
        }
        let versions = ((try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []).compactMap(Int.init)
        guard let latest = versions.max() else { throw ValidationError("model '\(parts[0])' has no versions under \(folder.path)") }
        return folder.appendingPathComponent("\(latest)/model.onnx")
    }

    func run() throws {
        let file = try modelURL()
        let onnx: ONNXModel
        do { onnx = try ONNXModel(contentsOf: file) } catch { throw ValidationError("\(file.path): \(error)") }
        let session = try Session(graph: onnx.graph, options: SessionOptions(intraOpThreads: threads))
        var options = BatchOptions(input: URL(fileURLWithPath: input), output: URL(fileURLWithPath: output))
        options.format = format.flatMap(BatchFormat.init(rawValue:)) ?? BatchFormat.guess(options.input)
        options.columns = columns.map { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } }
        if let inputMap {
            options.inputMap = try inputMap.split(separator: ";").map { entry in
                let pair = entry.split(separator: "=", maxSplits: 1)
                guard pair.count == 2 else { throw ValidationError("--input-map entries are INPUT=col,col; got '\(entry)'") }
                return (String(pair[0]), pair[1].split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) })
            }
        }
        options.keepColumns = keepColumns
        options.batchSize = batchSize
        options.shard = try shardPosition()
        options.resume = resume
        options.maxErrors = maxErrors
        options.errors = errors.map { URL(fileURLWithPath: $0) }
        let progress = Progress(tty: isatty(STDERR_FILENO) != 0)
        options.progress = { done, total in progress.update(done: done, total: total) }
        let summary: BatchSummary
        do { summary = try BatchScorer(session: session, graph: onnx.graph).run(options) } catch let error as BatchError {
            throw ValidationError(error.description)
        }
        progress.finish()
        let rate = summary.seconds > 0 ? Double(summary.rows) / summary.seconds : 0
        FileHandle.standardError.write(Data(String(format: "rows %d, errors %d, %.1f s, %.0f rows/s\n", summary.rows, summary.errors, summary.seconds, rate).utf8))
        if summary.aborted {
            FileHandle.standardError.write(Data("Error: more than --max-errors \(maxErrors) rows failed; stopped (rerun with --resume to continue)\n".utf8))
            throw ExitCode(1)
        }
        if summary.errors > 0 { throw ExitCode(2) }
    }
}

/// Progress on stderr: a live line on a terminal, else one line every 5 s.
final class Progress: @unchecked Sendable {
    // @unchecked: called from the scoring loop only, one chunk at a time.
    private let tty: Bool
    private let started = Date()
    private var lastLine = Date.distantPast

    init(tty: Bool) { self.tty = tty }

    func update(done: Int, total: Int) {
        let now = Date()
        guard tty || now.timeIntervalSince(lastLine) >= 5 else { return }
        lastLine = now
        let elapsed = max(now.timeIntervalSince(started), 1e-9)
        let rate = Double(done) / elapsed
        var line = "\(done) rows, \(Int(rate)) rows/s"
        if total > 0 {
            let eta = rate > 0 ? Double(total - done) / rate : 0
            let filled = Int(30 * Double(done) / Double(total))
            line = "[" + String(repeating: "#", count: min(30, filled)) + String(repeating: ".", count: max(0, 30 - filled)) + "] "
                + "\(done)/\(total) rows, \(Int(rate)) rows/s, ETA \(Int(eta)) s"
        }
        FileHandle.standardError.write(Data((tty ? "\r" + line : line + "\n").utf8))
    }

    func finish() {
        if tty { FileHandle.standardError.write(Data("\n".utf8)) }
    }
}
