import Foundation
import ServalEngine
import ServalTensor
import ServalWire

/// What `serval batch` is asked to do with one CSV file.
public struct BatchOptions: Sendable {
    public var input: URL
    public var output: URL
    /// The columns of a single 2-D input, in order; nil: every numeric column.
    public var columns: [String]?
    /// Several inputs: each input's columns (`--input-map X=a,b;Y=c`).
    public var inputMap: [(input: String, columns: [String])]?
    /// Copy the input columns into the output before the outputs.
    public var keepColumns = false
    /// Rows per inference; independent of any server's `max_batch_size`.
    public var batchSize = 1024
    /// `(k, n)`: process the k-th (1-based) of n contiguous parts.
    public var shard = (index: 1, count: 1)
    /// Continue from the checkpoint beside the output.
    public var resume = false
    /// Abort (exit 1) once more rows than this have failed.
    public var maxErrors = 100
    /// JSONL file for rows that did not parse; nil: not written.
    public var errors: URL?
    /// Called after each chunk with rows done and the shard's total.
    public var progress: (@Sendable (_ done: Int, _ total: Int) -> Void)?
    /// Tests: stop as a crash would, after this many chunks are written and checkpointed.
    public var stopAfterChunks: Int?
    /// Seconds between checkpoints (each one fsyncs the output first).
    public var checkpointInterval: Double = 1

    public init(input: URL, output: URL) {
        self.input = input
        self.output = output
    }

    /// The checkpoint file beside the output.
    public var checkpoint: URL { URL(fileURLWithPath: output.path + ".serval-checkpoint") }
}

/// What a run did.
public struct BatchSummary: Sendable, Equatable {
    public var rows: Int
    public var errors: Int
    public var seconds: Double
    /// Stopped because more than `maxErrors` rows failed.
    public var aborted: Bool
}

/// Thrown by a run stopped with `stopAfterChunks` (tests of resume).
public struct BatchInterrupted: Error {}

/// Scores a CSV file with a model in this process: the file is read in chunks of `batchSize` rows, each chunk
/// parsed (while the previous one runs), run on the session and appended to the output, so memory stays flat and
/// rows keep their input order. About once a second the output is fsynced and a checkpoint records how far it got,
/// so `resume` continues a killed run to a byte-identical file. Bad rows go to the errors file and are left out.
public final class BatchScorer: Sendable {
    let session: Session
    let classLabels: [String]?

    public init(session: Session, graph: Graph) {
        self.session = session
        self.classLabels = Self.classLabels(graph)
    }

    /// The class labels of the model's classifier node (scikit-learn exports), for `probability_<label>` columns.
    static func classLabels(_ graph: Graph) -> [String]? {
        for node in graph.nodes where node.opType.hasSuffix("Classifier") {
            if case .ints(let labels)? = node.attributes["classlabels_int64s"] ?? node.attributes["classlabels_ints"] { return labels.map(String.init) }
            if case .strings(let labels)? = node.attributes["classlabels_strings"] { return labels }
        }
        return nil
    }

    public func run(_ options: BatchOptions) throws -> BatchSummary {
        let started = Date()
        var header = try CSVReader(url: options.input)
        guard let names = try header.next() else { throw BatchError("\(options.input.path) is empty: a CSV file with a header line is expected") }
        let plan = try BatchPlan(header: names.fields, firstRow: try header.next()?.fields, session: session, options: options)
        // The shard's rows: a contiguous, deterministic part of the data records.
        let total = options.shard.count > 1 ? try Self.countRecords(options.input) : -1
        let range: Range<Int> = options.shard.count > 1
            ? (total * (options.shard.index - 1) / options.shard.count)..<(total * options.shard.index / options.shard.count)
            : 0..<Int.max
        var state = options.resume ? (Checkpoint.read(options.checkpoint) ?? Checkpoint()) : Checkpoint()
        let output = try Self.open(options.output, keeping: state.outputBytes)
        defer { try? output.close() }
        let errors = try options.errors.map { try Self.open($0, keeping: state.errorBytes) }
        defer { try? errors?.close() }
        var reader = try CSVReader(url: options.input)
        _ = try reader.next()  // the header
        var record = 0
        // Skip the records before this shard and those a resumed run already wrote.
        let skipUntil = min(range.upperBound, range.lowerBound + state.records)
        while record < skipUntil, try reader.next() != nil { record += 1 }
        var chunks = 0
        var lastCheckpoint = Date()
        var rowsDone = state.rows
        var errorCount = state.errors
        let shardTotal = total < 0 ? -1 : range.count
        let source = ChunkSource(reader: reader, next: record, end: range.upperBound, size: options.batchSize, plan: plan)
        var pending = try source.read()
        while let chunk = pending {
            // Parse the next chunk while this one runs.
            let nextChunk = DispatchGroup()
            nonisolated(unsafe) var parsed: Result<ParsedChunk?, Error> = .success(nil)
            nextChunk.enter()
            DispatchQueue.global().async {
                parsed = Result { try source.read() }
                nextChunk.leave()
            }
            var text = ""
            if chunk.rows > 0 {
                let results = try session.run(chunk.feeds(plan))
                text = try plan.format(chunk, results: results, outputs: session.outputTypes.map(\.name), classLabels: classLabels,
                                       withHeader: options.shard.index == 1 && state.outputBytes == 0)
            }
            var errorText = JSONWriter()
            for failure in chunk.failures {
                errorText.raw("{\"line\":\(failure.line),\"column\":")
                if let column = failure.column { errorText.string(column) } else { errorText.raw("null") }
                errorText.raw(",\"reason\":")
                errorText.string(failure.reason)
                errorText.raw("}\n")
            }
            nextChunk.wait()
            state.outputBytes += try Self.write(output, text)
            if let errors { state.errorBytes += try Self.write(errors, errorText.text) }
            rowsDone += chunk.rows
            errorCount += chunk.failures.count
            state.records += chunk.records
            state.rows = rowsDone
            state.errors = errorCount
            chunks += 1
            // A checkpoint about once a second: the output and errors are fsynced first, so the checkpoint never
            // claims bytes a crash or power loss could take back. A kill loses at most that second's work.
            let stopping = options.stopAfterChunks.map { chunks >= $0 } ?? false
            if stopping || Date().timeIntervalSince(lastCheckpoint) >= options.checkpointInterval {
                try output.synchronize()
                try errors?.synchronize()
                try state.write(options.checkpoint)
                lastCheckpoint = Date()
            }
            options.progress?(rowsDone + errorCount, shardTotal)
            if errorCount > options.maxErrors {
                try output.synchronize()
                try errors?.synchronize()
                try state.write(options.checkpoint)  // so --resume with a higher --max-errors continues from here
                return BatchSummary(rows: rowsDone, errors: errorCount, seconds: Date().timeIntervalSince(started), aborted: true)
            }
            if stopping { throw BatchInterrupted() }
            pending = try parsed.get()
        }
        try output.synchronize()
        try errors?.synchronize()
        try? FileManager.default.removeItem(at: options.checkpoint)
        return BatchSummary(rows: rowsDone, errors: errorCount, seconds: Date().timeIntervalSince(started), aborted: false)
    }

    /// Data records in a file (the header not counted), for shard boundaries and the progress total.
    public static func countRecords(_ url: URL) throws -> Int {
        var reader = try CSVReader(url: url)
        var count = -1
        while try reader.next() != nil { count += 1 }
        return max(0, count)
    }

    static func open(_ url: URL, keeping bytes: Int) throws -> FileHandle {
        if !FileManager.default.fileExists(atPath: url.path) { _ = FileManager.default.createFile(atPath: url.path, contents: nil) }
        let handle = try FileHandle(forWritingTo: url)
        try handle.truncate(atOffset: UInt64(bytes))
        try handle.seekToEnd()
        return handle
    }

    static func write(_ handle: FileHandle, _ text: String) throws -> Int {
        let data = Data(text.utf8)
        try handle.write(contentsOf: data)
        return data.count
    }
}

/// How far a run got: records consumed, bytes of output and errors written, rows scored and failed.
struct Checkpoint: Codable {
    var records = 0
    var outputBytes = 0
    var errorBytes = 0
    var rows = 0
    var errors = 0

    static func read(_ url: URL) -> Checkpoint? {
        guard let data = try? Data(contentsOf: url) else { return nil }
        return try? JSONDecoder().decode(Checkpoint.self, from: data)
    }

    /// Written to a temporary file and renamed, so a kill leaves the old or the new checkpoint, never half of one.
    func write(_ url: URL) throws {
        let temporary = URL(fileURLWithPath: url.path + ".tmp")
        try JSONEncoder().encode(self).write(to: temporary)
        guard rename(temporary.path, url.path) == 0 else { throw BatchError("cannot write the checkpoint \(url.path): errno \(errno)") }
    }
}

/// A `serval batch` failure with the reason for the user.
public struct BatchError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
