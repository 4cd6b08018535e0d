import Foundation
import ServalEngine
import ServalTensor
import ServalWire

/// The file formats `serval batch` reads and writes; a run writes the format it reads.
public enum BatchFormat: String, Sendable, CaseIterable {
    /// A CSV file with a header line; the output is a CSV file.
    case csv
    /// One JSON object per line mapping input names to a row; the output has one object per line.
    case jsonl
    /// A folder with one `.npy` per input; the output is a folder with one `.npy` per output.
    case npy

    /// The format a path suggests: a folder is npy, `.jsonl`/`.ndjson` is jsonl, anything else csv.
    public static func guess(_ url: URL) -> BatchFormat {
        var folder: ObjCBool = false
        if FileManager.default.fileExists(atPath: url.path, isDirectory: &folder), folder.boolValue { return .npy }
        return ["jsonl", "ndjson"].contains(url.pathExtension.lowercased()) ? .jsonl : .csv
    }
}

/// What `serval batch` is asked to do with one input.
public struct BatchOptions: Sendable {
    public var input: URL
    public var output: URL
    public var format = BatchFormat.csv
    /// CSV: the columns of a single 2-D input, in order; nil: every numeric column.
    public var columns: [String]?
    /// CSV: each input's columns (`--input-map X=a,b;Y=c`) for a model with several.
    public var inputMap: [(input: String, columns: [String])]?
    /// CSV: copy the input columns into the output before the outputs.
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
    /// Called after each chunk with rows done and the shard's total (-1 when not known).
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

/// One row that could not be scored: where it is in the input (a physical line of a text file, or a row of an
/// array), the column or input at fault (if one), and why.
struct RowFailure: Sendable {
    enum Place: Sendable {
        case line(Int)
        case row(Int)
    }

    let place: Place
    let column: String?
    let reason: String
}

/// A chunk of rows read from the input and ready to run: the model's feeds, the input record each scored row came
/// from (0-based), the raw CSV fields kept for `--keep-columns`, the records it consumed (scored plus failed) and
/// the failures.
struct ParsedChunk: Sendable {
    var feeds: [String: Value] = [:]
    var recordIndices: [Int] = []
    var kept: [[String]] = []
    var records = 0
    var failures: [RowFailure] = []

    var rows: Int { recordIndices.count }
}

/// What one model input takes per row: its element type and, when the model fixes it, the shape of a row.
struct RowSpec: Sendable {
    let name: String
    let dtype: DType
    /// The dimensions after the first, when all are fixed; nil: taken from the first row read.
    let rowShape: [Int]?

    static func of(_ session: Session) -> [RowSpec] {
        session.inputs.map { input in
            guard case .tensor(let dtype, let shape) = input.type else { return RowSpec(name: input.name, dtype: .float32, rowShape: nil) }
            let dims = shape.map { Array($0.dropFirst()) }
            let fixed = dims.flatMap { dims in dims.allSatisfy { $0.value != nil } ? dims.map { $0.value! } : nil }
            return RowSpec(name: input.name, dtype: dtype ?? .float32, rowShape: fixed)
        }
    }
}

/// Appends each scored chunk as text to one file (CSV and JSON Lines): `format` gets the chunk, the results, and
/// whether nothing has been written yet (where a CSV header goes).
final class TextSink: BatchSink {
    private let handle: FileHandle
    private let format: (ParsedChunk, [String: Value], Bool) throws -> String
    private(set) var sizes: [Int]

    init(url: URL, keeping: [Int], format: @escaping (ParsedChunk, [String: Value], Bool) throws -> String) throws {
        sizes = [keeping.first ?? 0]
        handle = try BatchScorer.open(url, keeping: sizes[0])
        self.format = format
    }

    func write(_ chunk: ParsedChunk, results: [String: Value]) throws {
        sizes[0] += try BatchScorer.write(handle, try format(chunk, results, sizes[0] == 0))
    }

    func synchronize() throws { try handle.synchronize() }
    func finish() throws {}
    func close() { try? handle.close() }
}

/// An input of one format: its records (rows), counted, and read chunk by chunk over a range of them.
protocol BatchSource {
    /// The exact number of records (shard boundaries depend on it).
    func countRecords() throws -> Int
    /// A cheap estimate of the records, for the progress total.
    func estimateRecords() -> Int?
    /// A reader of `records`, in chunks of at most `chunkSize` records.
    func reader(records: Range<Int>, chunkSize: Int) throws -> ChunkReader
    /// The output of this format, cut back to `keeping` bytes per file (a resumed run).
    func sink(_ options: BatchOptions, outputs: [String], classLabels: [String]?, keeping: [Int]) throws -> BatchSink
}

/// Reads the next chunk; used by one task at a time (the run awaits each read before starting the next).
protocol ChunkReader: AnyObject, Sendable {
    /// Up to the chunk size of records (scored or failed), or nil when the range has none left.
    func read() throws -> ParsedChunk?
}

/// An output of one format: appends scored chunks to its files in order.
protocol BatchSink: AnyObject {
    /// Bytes in each output file so far: what a checkpoint records, and what a resumed run cuts the files back to.
    var sizes: [Int] { get }
    func write(_ chunk: ParsedChunk, results: [String: Value]) throws
    /// Flushes the files to disk (before a checkpoint claims their bytes).
    func synchronize() throws
    /// Completes the files once every chunk is written (an `.npy` header gets its final row count).
    func finish() throws
    func close()
}

/// Scores a file with a model in this process: the input is read in chunks of `batchSize` rows, each chunk
/// parsed (while the previous one runs), run on the session and appended to the output, so memory stays flat and
/// rows keep their input order. About once a second the output is fsynced and a checkpoint records how far it got,
/// so `resume` continues a killed run to a byte-identical file. Bad rows go to the errors file and are left out.
public final class BatchScorer: Sendable {
    let session: Session
    let classLabels: [String]?

    public init(session: Session, graph: Graph) {
        self.session = session
        self.classLabels = graph.classifierLabels
    }

    public func run(_ options: BatchOptions) throws -> BatchSummary {
        let started = Date()
        if options.format != .csv {
            if options.columns != nil || options.inputMap != nil {
                throw BatchError("--columns and --input-map choose CSV columns; \(options.format.rawValue) input names the model's inputs itself")
            }
            if options.keepColumns { throw BatchError("--keep-columns applies to CSV; \(options.format.rawValue) output keeps input order (jsonl carries each row's index as `row`)") }
        }
        var state = options.resume ? (Checkpoint.read(options.checkpoint) ?? Checkpoint()) : Checkpoint()
        let outputs = session.outputTypes.map(\.name)
        let source: BatchSource = switch options.format {
        case .csv: try CSVSource(url: options.input, session: session, options: options)
        case .jsonl: try JSONLSource(url: options.input, session: session)
        case .npy: try NPYSource(folder: options.input, session: session)
        }
        // The output is touched only once the input has been found good.
        let sink = try source.sink(options, outputs: outputs, classLabels: classLabels, keeping: state.outputs)
        defer { sink.close() }
        // The shard's records: a contiguous, deterministic part of the input.
        let sharded = options.shard.count > 1
        let total = sharded ? try source.countRecords() : (options.progress == nil ? nil : source.estimateRecords())
        let range: Range<Int> = sharded
            ? (total! * (options.shard.index - 1) / options.shard.count)..<(total! * options.shard.index / options.shard.count)
            : 0..<Int.max
        let errors = try options.errors.map { try Self.open($0, keeping: state.errorBytes) }
        defer { try? errors?.close() }
        // Skip the records a resumed run already wrote.
        let reader = try source.reader(records: min(range.upperBound, range.lowerBound + state.records)..<range.upperBound, chunkSize: options.batchSize)
        var chunks = 0
        var lastCheckpoint = Date()
        let shardTotal = sharded ? range.count : (total ?? -1)
        var pending = try reader.read()
        while let chunk = pending {
            // Parse the next chunk while this one runs.
            let nextChunk = DispatchGroup()
            nonisolated(unsafe) var parsed: Result<ParsedChunk?, Error> = .success(nil)
            nextChunk.enter()
            DispatchQueue.global().async {
                parsed = Result { try reader.read() }
                nextChunk.leave()
            }
            let results = chunk.rows > 0 ? try session.run(chunk.feeds) : [:]
            var errorText = JSONWriter()
            for failure in chunk.failures {
                switch failure.place {
                case .line(let line): errorText.raw("{\"line\":\(line),\"column\":")
                case .row(let row): errorText.raw("{\"row\":\(row),\"column\":")
                }
                if let column = failure.column { errorText.string(column) } else { errorText.raw("null") }
                errorText.raw(",\"reason\":")
                errorText.string(failure.reason)
                errorText.raw("}\n")
            }
            nextChunk.wait()
            if chunk.rows > 0 { try sink.write(chunk, results: results) }
            state.outputs = sink.sizes
            if let errors { state.errorBytes += try Self.write(errors, errorText.text) }
            state.rows += chunk.rows
            state.errors += chunk.failures.count
            state.records += chunk.records
            chunks += 1
            // A checkpoint about once a second: the output and errors are fsynced first, so the checkpoint never
            // claims bytes a crash or power loss could take back. A kill loses at most that second's work.
            let stopping = options.stopAfterChunks.map { chunks >= $0 } ?? false
            if stopping || Date().timeIntervalSince(lastCheckpoint) >= options.checkpointInterval {
                try sink.synchronize()
                try errors?.synchronize()
                try state.write(options.checkpoint)
                lastCheckpoint = Date()
            }
            options.progress?(state.rows + state.errors, shardTotal)
            if state.errors > options.maxErrors {
                try sink.synchronize()
                try errors?.synchronize()
                try state.write(options.checkpoint)  // so --resume with a higher --max-errors continues from here
                return BatchSummary(rows: state.rows, errors: state.errors, seconds: Date().timeIntervalSince(started), aborted: true)
            }
            if stopping { throw BatchInterrupted() }
            pending = try parsed.get()
        }
        try sink.finish()
        try sink.synchronize()
        try errors?.synchronize()
        try? FileManager.default.removeItem(at: options.checkpoint)
        return BatchSummary(rows: state.rows, errors: state.errors, seconds: Date().timeIntervalSince(started), aborted: false)
    }

    /// A file opened for appending after its first `bytes` (created when missing; anything past them cut off).
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

/// How far a run got: records consumed, bytes of each output file and of the errors written, rows scored and
/// failed.
struct Checkpoint: Codable {
    var records = 0
    var outputs: [Int] = []
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
