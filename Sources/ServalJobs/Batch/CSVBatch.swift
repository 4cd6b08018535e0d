import Foundation
import ServalEngine
import ServalTensor
import ServalWire

/// Which CSV columns feed which model input, and how outputs become CSV columns.
struct CSVPlan: Sendable {
    struct Input: Sendable {
        let name: String
        let columns: [String]
        let indices: [Int]
    }

    let header: [String]
    let inputs: [Input]
    let keepColumns: Bool

    init(header: [String], firstRow: [String]?, session: Session, options: BatchOptions) throws {
        self.header = header
        keepColumns = options.keepColumns
        func index(_ column: String) throws -> Int {
            guard let index = header.firstIndex(of: column) else {
                throw BatchError("column '\(column)' is not in the header (\(header.joined(separator: ", ")))")
            }
            return index
        }
        let modelInputs = session.inputs
        if let map = options.inputMap {
            inputs = try map.map { entry in
                guard modelInputs.contains(where: { $0.name == entry.input }) else {
                    throw BatchError("--input-map names input '\(entry.input)'; the model's inputs are \(modelInputs.map(\.name).joined(separator: ", "))")
                }
                return Input(name: entry.input, columns: entry.columns, indices: try entry.columns.map(index))
            }
            for input in modelInputs where !inputs.contains(where: { $0.name == input.name }) {
                throw BatchError("--input-map does not give columns for the model's input '\(input.name)'")
            }
        } else {
            guard modelInputs.count == 1, let input = modelInputs.first else {
                throw BatchError("the model has \(modelInputs.count) inputs (\(modelInputs.map(\.name).joined(separator: ", "))): say which columns feed each with --input-map X=a,b;Y=c")
            }
            var width: Int?
            if case .tensor(_, let shape?) = input.type, shape.count == 2 { width = shape[1].value }
            let columns: [String]
            if let chosen = options.columns {
                columns = chosen
            } else if let width, width == header.count {
                columns = header  // as many columns as the input takes: all of them (a bad value fails its row)
            } else {
                // Every column whose first value is a number, in order.
                let row = firstRow ?? []
                columns = header.enumerated().filter { $0.offset < row.count && Float(row[$0.offset].trimmingCharacters(in: .whitespaces)) != nil }.map(\.element)
            }
            if let width, width != columns.count {
                throw BatchError("input '\(input.name)' takes \(width) columns per row; \(columns.count) were chosen (\(columns.joined(separator: ", "))); pick them with --columns")
            }
            inputs = [Input(name: input.name, columns: columns, indices: try columns.map(index))]
        }
    }

    /// Parses one record (the `index`-th data record) into the values of the chunk's inputs, or records why it
    /// cannot be scored.
    func parse(_ record: CSVRecord, index: Int, into values: inout [[Float]], chunk: inout ParsedChunk) {
        chunk.records += 1
        guard record.fields.count == header.count else {
            chunk.failures.append(RowFailure(place: .line(record.line), column: nil, reason: "expected \(header.count) fields, found \(record.fields.count)"))
            return
        }
        var parsed: [[Float]] = []
        parsed.reserveCapacity(inputs.count)
        for input in inputs {
            var row: [Float] = []
            row.reserveCapacity(input.indices.count)
            for (position, column) in input.indices.enumerated() {
                let field = record.fields[column]
                // Trimming allocates: only a field that does not parse as it is gets trimmed and tried again.
                guard let value = Float(field) ?? Float(field.trimmingCharacters(in: .whitespaces)) else {
                    let text = field.trimmingCharacters(in: .whitespaces)
                    chunk.failures.append(RowFailure(place: .line(record.line), column: input.columns[position], reason: "'\(text)' is not a number"))
                    return
                }
                guard value.isFinite else {
                    let text = field.trimmingCharacters(in: .whitespaces)
                    chunk.failures.append(RowFailure(place: .line(record.line), column: input.columns[position], reason: "'\(text)' is not a finite number"))
                    return
                }
                row.append(value)
            }
            parsed.append(row)
        }
        for (position, row) in parsed.enumerated() { values[position] += row }
        if keepColumns { chunk.kept.append(record.fields) }
        chunk.recordIndices.append(index)
    }

    /// Output column names of one output value, from its shape.
    static func columns(_ name: String, _ value: Value, classLabels: [String]?) -> [String] {
        switch value {
        case .tensor(let tensor) where tensor.rank <= 1:
            return [name]
        case .tensor(let tensor):
            let width = tensor.count / max(1, tensor.shape[0])
            if tensor.dtype == .float32, let labels = classLabels, labels.count == width { return labels.map { "probability_\($0)" } }
            return (0..<width).map { "\(name)_\($0)" }
        case .mapSequence(let maps):
            return cells(maps.keys).map { "probability_\($0)" }
        }
    }

    /// The CSV rows of one scored chunk, after the header line when `withHeader` (the first chunk of the file: the
    /// outputs' widths, and a ZipMap's keys, are known from results). The header is the input columns (with
    /// `--keep-columns`), then one column per output value.
    func format(_ chunk: ParsedChunk, results: [String: Value], outputs: [String], classLabels: [String]?, withHeader: Bool) throws -> String {
        var text = ""
        if withHeader {
            var names = keepColumns ? header : []
            for output in outputs { if let value = results[output] { names += Self.columns(output, value, classLabels: classLabels) } }
            text += names.map(Self.quote).joined(separator: ",") + "\n"
        }
        // Each output's cells as text once per chunk, then laid out row by row.
        var columns: [(cells: [String], width: Int)] = []
        for output in outputs {
            guard let value = results[output] else { continue }
            switch value {
            case .tensor(let tensor):
                guard tensor.shape.first == chunk.rows || (tensor.rank == 0 && chunk.rows == 1) else {
                    throw BatchError("output '\(output)' has shape \(tensor.shape), not one row per input row")
                }
                columns.append((Self.cells(tensor), tensor.count / max(1, chunk.rows)))
            case .mapSequence(let maps):
                columns.append((Self.cells(maps.values), maps.keys.count))
            }
        }
        text.reserveCapacity(text.utf8.count + chunk.rows * 16 * max(1, columns.reduce(0) { $0 + $1.width }))
        for row in 0..<chunk.rows {
            var first = true
            if keepColumns {
                for field in chunk.kept[row] {
                    if !first { text += "," }
                    text += Self.quote(field)
                    first = false
                }
            }
            for column in columns {
                for index in (row * column.width)..<((row + 1) * column.width) {
                    if !first { text += "," }
                    text += column.cells[index]
                    first = false
                }
            }
            text += "\n"
        }
        return text
    }

    /// Every element as CSV text: integers as such, floats in their shortest round-trip form, strings quoted.
    static func cells(_ tensor: Tensor) -> [String] {
        switch tensor.dtype {
        case .float32: return tensor.scalars(as: Float.self).map { String($0) }
        case .float64: return tensor.scalars(as: Double.self).map { String($0) }
        case .int64: return tensor.scalars(as: Int64.self).map { String($0) }
        case .int32: return tensor.scalars(as: Int32.self).map { String($0) }
        case .string: return tensor.strings.map(quote)
        default: return ((try? tensor.converted(to: .float64).scalars(as: Double.self)) ?? []).map { String($0) }
        }
    }

    /// A field as CSV writes it: quoted when it holds a comma, a quote or a line break.
    static func quote(_ field: String) -> String {
        guard field.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else { return field }
        return "\"" + field.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }
}

/// A CSV file with a header line: its data records feed the model through a `CSVPlan`.
struct CSVSource: BatchSource {
    let url: URL
    let plan: CSVPlan

    init(url: URL, session: Session, options: BatchOptions) throws {
        self.url = url
        var reader = try CSVReader(url: url)
        guard let names = try reader.next() else { throw BatchError("\(url.path) is empty: a CSV file with a header line is expected") }
        plan = try CSVPlan(header: names.fields, firstRow: try reader.next()?.fields, session: session, options: options)
    }

    func countRecords() throws -> Int { try CSVReader.dataRecords(url) }

    /// Only the first shard writes the header line.
    func sink(_ options: BatchOptions, outputs: [String], classLabels: [String]?, keeping: [Int]) throws -> BatchSink {
        let plan = self.plan, header = options.shard.index == 1
        return try TextSink(url: options.output, keeping: keeping) { chunk, results, atStart in
            try plan.format(chunk, results: results, outputs: outputs, classLabels: classLabels, withHeader: header && atStart)
        }
    }

    func estimateRecords() -> Int? { (try? LineCount.lines(url)).map { max(0, $0 - 1) } }

    func reader(records: Range<Int>, chunkSize: Int) throws -> ChunkReader {
        var reader = try CSVReader(url: url)
        _ = try reader.next()  // the header
        var skipped = 0
        while skipped < records.lowerBound, try reader.next() != nil { skipped += 1 }
        return CSVChunkReader(reader: reader, next: skipped, end: records.upperBound, size: chunkSize, plan: plan)
    }
}

/// Reads chunks of CSV records.
final class CSVChunkReader: ChunkReader, @unchecked Sendable {
    // @unchecked: `reader` and `next` are touched only inside `read`, and the run never has two reads in flight.
    private var reader: CSVReader
    private var next: Int
    private let end: Int
    private let size: Int
    private let plan: CSVPlan

    init(reader: CSVReader, next: Int, end: Int, size: Int, plan: CSVPlan) {
        self.reader = reader
        self.next = next
        self.end = end
        self.size = size
        self.plan = plan
    }

    func read() throws -> ParsedChunk? {
        var chunk = ParsedChunk()
        var values = plan.inputs.map { input -> [Float] in
            var values: [Float] = []
            values.reserveCapacity(size * input.columns.count)
            return values
        }
        while chunk.records < size, next < end, let record = try reader.next() {
            plan.parse(record, index: next, into: &values, chunk: &chunk)
            next += 1
        }
        guard chunk.records > 0 else { return nil }
        for (index, input) in plan.inputs.enumerated() {
            chunk.feeds[input.name] = .tensor(Tensor(shape: [chunk.rows, input.columns.count], scalars: values[index]))
        }
        return chunk
    }
}

/// Counts a file's lines cheaply (line ends, plus a last line without one), for progress totals.
enum LineCount {
    static func lines(_ url: URL) throws -> Int {
        let handle = try FileHandle(forReadingFrom: url)
        defer { try? handle.close() }
        var count = 0
        var last: UInt8 = 0x0A
        while let data = try handle.read(upToCount: 1 << 20), !data.isEmpty {
            data.withUnsafeBytes { bytes in
                for byte in bytes where byte == 0x0A { count += 1 }
            }
            last = data.last!
        }
        return count + (last == 0x0A ? 0 : 1)
    }
}
