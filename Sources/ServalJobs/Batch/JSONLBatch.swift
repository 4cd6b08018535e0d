import Foundation
import ServalEngine
import ServalTensor
import ServalWire

/// A JSON Lines file: each line an object mapping the model's input names to one row (a number, or nested arrays
/// of the row's shape; strings for string inputs). Keys that are not inputs are ignored, so a line may carry an id.
struct JSONLSource: BatchSource {
    let url: URL
    let specs: [RowSpec]

    init(url: URL, session: Session) throws {
        guard FileManager.default.isReadableFile(atPath: url.path) else { throw BatchError("cannot read \(url.path)") }
        self.url = url
        specs = RowSpec.of(session)
    }

    func countRecords() throws -> Int {
        var reader = try LineReader(url: url)
        var count = 0
        while try reader.next() != nil { count += 1 }
        return count
    }

    func estimateRecords() -> Int? { try? LineCount.lines(url) }

    func sink(_ options: BatchOptions, outputs: [String], classLabels: [String]?, keeping: [Int]) throws -> BatchSink {
        try TextSink(url: options.output, keeping: keeping) { chunk, results, _ in try Self.format(chunk, results: results, outputs: outputs) }
    }

    func reader(records: Range<Int>, chunkSize: Int) throws -> ChunkReader {
        var reader = try LineReader(url: url)
        var skipped = 0
        while skipped < records.lowerBound, try reader.next() != nil { skipped += 1 }
        return JSONLChunkReader(reader: reader, next: skipped, end: records.upperBound, size: chunkSize, specs: specs)
    }
}

/// Reads chunks of JSON lines into feeds.
final class JSONLChunkReader: ChunkReader, @unchecked Sendable {
    // @unchecked: the mutable state is touched only inside `read`, and the run never has two reads in flight.
    private var reader: LineReader
    private var next: Int
    private let end: Int
    private let size: Int
    private let specs: [RowSpec]
    /// Each input's row shape: the model's, or the first row's when the model leaves it open.
    private var rowShapes: [[Int]?]

    init(reader: LineReader, next: Int, end: Int, size: Int, specs: [RowSpec]) {
        self.reader = reader
        self.next = next
        self.end = end
        self.size = size
        self.specs = specs
        rowShapes = specs.map(\.rowShape)
    }

    /// One input's column of the chunk: numbers (converted to the input's type at the end) or strings.
    private struct Column {
        var numbers: [Double] = []
        var strings: [String] = []
    }

    func read() throws -> ParsedChunk? {
        var chunk = ParsedChunk()
        var columns = specs.map { _ in Column() }
        var row = Column()
        while chunk.records < size, next < end, let (line, bytes) = try reader.next() {
            chunk.records += 1
            defer { next += 1 }
            let value: JSONValue
            do { value = try bytes.withUnsafeBytes { try JSONParser.parse($0) } } catch {
                chunk.failures.append(RowFailure(place: .line(line), column: nil, reason: "\(error)"))
                continue
            }
            guard let object = value.object else {
                chunk.failures.append(RowFailure(place: .line(line), column: nil, reason: "expected an object mapping input names to a row"))
                continue
            }
            var parsed: [Column] = []
            var failure: RowFailure?
            for (index, spec) in specs.enumerated() {
                guard let cell = object[spec.name] else {
                    failure = RowFailure(place: .line(line), column: spec.name, reason: "no value for input '\(spec.name)'")
                    break
                }
                row.numbers.removeAll(keepingCapacity: true)
                row.strings.removeAll(keepingCapacity: true)
                if let reason = Self.flatten(cell, spec.dtype == .string, into: &row) {
                    failure = RowFailure(place: .line(line), column: spec.name, reason: reason)
                    break
                }
                let shape = rowShapes[index] ?? Self.shape(of: cell)
                let count = spec.dtype == .string ? row.strings.count : row.numbers.count
                guard count == shape.reduce(1, *) else {
                    failure = RowFailure(place: .line(line), column: spec.name, reason: "input '\(spec.name)' takes rows of shape \(shape) (\(shape.reduce(1, *)) values); found \(count)")
                    break
                }
                rowShapes[index] = shape
                parsed.append(row)
            }
            if let failure {
                chunk.failures.append(failure)
                continue
            }
            for (index, column) in parsed.enumerated() {
                columns[index].numbers += column.numbers
                columns[index].strings += column.strings
            }
            chunk.recordIndices.append(next)
        }
        guard chunk.records > 0 else { return nil }
        for (index, spec) in specs.enumerated() where chunk.rows > 0 {
            let shape = [chunk.rows] + (rowShapes[index] ?? [])
            chunk.feeds[spec.name] = .tensor(spec.dtype == .string
                ? Tensor(shape: shape, strings: columns[index].strings)
                : try Tensor(shape: shape, scalars: columns[index].numbers).converted(to: spec.dtype))
        }
        return chunk
    }

    /// A row's values in order (nested arrays flattened), or why they cannot feed the input.
    private static func flatten(_ value: JSONValue, _ strings: Bool, into row: inout Column) -> String? {
        switch value {
        case .number(let number) where !strings: row.numbers.append(number)
        case .bool(let flag) where !strings: row.numbers.append(flag ? 1 : 0)
        case .numbers(let numbers) where !strings: row.numbers += numbers
        case .string(let text) where strings: row.strings.append(text)
        case .array(let values):
            for value in values { if let reason = flatten(value, strings, into: &row) { return reason } }
        case .string(let text): return "'\(text)' is not a number"
        case .null: return strings ? "null is not a string" : "null is not a number"
        case .object: return "an object is not a row value"
        default: return strings ? "expected strings" : "expected numbers"
        }
        return nil
    }

    /// The shape nested arrays describe (a number has shape []).
    private static func shape(of value: JSONValue) -> [Int] {
        switch value {
        case .numbers(let numbers): return [numbers.count]
        case .array(let values): return [values.count] + (values.first.map(shape) ?? [])
        default: return []
        }
    }
}

extension JSONLSource {
    /// One JSON object per scored row: `row` (its 0-based index among the input's non-blank lines), then each
    /// output: a scalar, the row's nested arrays, or a ZipMap's `{label: probability}`.
    static func format(_ chunk: ParsedChunk, results: [String: Value], outputs: [String]) throws -> String {
        let values = try outputs.compactMap { name -> (key: String, value: Value)? in
            guard let value = results[name] else { return nil }
            let rows: Int = switch value {
            case .tensor(let tensor): tensor.rank == 0 ? 1 : tensor.shape[0]
            case .mapSequence(let maps): maps.count
            }
            guard rows == chunk.rows else { throw BatchError("output '\(name)' has \(rows) rows for \(chunk.rows) input rows") }
            var key = JSONWriter(capacity: name.utf8.count + 4)
            key.raw(",")
            key.string(name)
            key.raw(":")
            return (key.text, value)
        }
        var text = JSONWriter(capacity: chunk.rows * 64)
        for row in 0..<chunk.rows {
            text.raw("{\"row\":\(chunk.recordIndices[row])")
            for (key, value) in values {
                text.raw(key)
                switch value {
                case .tensor(let tensor) where tensor.rank <= 1:
                    text.elements(tensor, row..<(row + 1))
                case .tensor(let tensor):
                    let width = tensor.shape.dropFirst().reduce(1, *)
                    text.nested(tensor, dims: tensor.shape.dropFirst(), offset: row * width)
                case .mapSequence(let maps):
                    text.maps(maps, rows: row..<(row + 1))
                }
            }
            text.raw("}\n")
        }
        return text.text
    }
}
