import Foundation
import ServalEngine
import ServalTensor
import ServalWire

/// The file name of an input's or output's `.npy` in a batch folder: the name with anything but letters, digits,
/// `.`, `_` and `-` replaced by `_`.
func npyFileName(_ name: String) -> String {
    String(name.map { $0.isASCII && ($0.isLetter || $0.isNumber || "._-".contains($0)) ? $0 : "_" }) + ".npy"
}

/// Reads the header of an `.npy` file.
func readNPYHeader(_ handle: FileHandle, _ url: URL) throws -> NPYFormat.Header {
    do {
        try handle.seek(toOffset: 0)
        let start = [UInt8](try handle.read(upToCount: 12) ?? Data())
        try handle.seek(toOffset: 0)
        return try NPYFormat.header([UInt8](try handle.read(upToCount: try NPYFormat.headerSize(start)) ?? Data()))
    } catch let error as NPYFormat.FormatError {
        throw BatchError("\(url.lastPathComponent): \(error)")
    }
}

/// A folder with one `.npy` per model input (`X.npy` for input `X`), all with the same number of rows.
struct NPYSource: BatchSource {
    struct Input {
        let spec: RowSpec
        let url: URL
        let header: NPYFormat.Header
    }

    let inputs: [Input]
    let rows: Int

    init(folder: URL, session: Session) throws {
        var inputs: [Input] = []
        for spec in RowSpec.of(session) {
            let url = folder.appendingPathComponent(npyFileName(spec.name))
            guard let handle = try? FileHandle(forReadingFrom: url) else {
                throw BatchError("\(folder.path) has no \(url.lastPathComponent) for the model's input '\(spec.name)' (one .npy per input is expected)")
            }
            defer { try? handle.close() }
            let header = try readNPYHeader(handle, url)
            guard !header.shape.isEmpty else { throw BatchError("\(url.lastPathComponent) holds a scalar; rows along its first dimension are expected") }
            let rowShape = Array(header.shape.dropFirst())
            if let expected = spec.rowShape, expected != rowShape {
                throw BatchError("\(url.lastPathComponent) has rows of shape \(rowShape); input '\(spec.name)' takes rows of shape \(expected)")
            }
            if (header.dtype == .string) != (spec.dtype == .string) {
                throw BatchError("\(url.lastPathComponent) holds \(header.dtype == .string ? "strings" : "numbers"); input '\(spec.name)' takes \(spec.dtype)")
            }
            let size = (try? FileManager.default.attributesOfItem(atPath: url.path)[.size] as? Int) ?? 0
            // The header's byte count cannot overflow (NPYFormat.header checks it); the data must be all there.
            guard size >= header.dataOffset, size - header.dataOffset >= header.shape[0] * header.rowSize else {
                throw BatchError("\(url.lastPathComponent) is truncated: its header says \(header.shape) but it has \(size) bytes")
            }
            inputs.append(Input(spec: spec, url: url, header: header))
        }
        if let first = inputs.first, let other = inputs.first(where: { $0.header.shape[0] != first.header.shape[0] }) {
            throw BatchError("\(first.url.lastPathComponent) has \(first.header.shape[0]) rows but \(other.url.lastPathComponent) has \(other.header.shape[0])")
        }
        self.inputs = inputs
        rows = inputs.first?.header.shape[0] ?? 0
    }

    func countRecords() throws -> Int { rows }
    func estimateRecords() -> Int? { rows }

    func sink(_ options: BatchOptions, outputs: [String], classLabels: [String]?, keeping: [Int]) throws -> BatchSink {
        try NPYSink(folder: options.output, outputs: outputs, classLabels: classLabels, keeping: keeping)
    }

    func reader(records: Range<Int>, chunkSize: Int) throws -> ChunkReader {
        try NPYChunkReader(inputs: inputs, records: records.clamped(to: 0..<rows), size: chunkSize)
    }
}

/// Reads chunks of rows from each input's `.npy`, converted to the input's type. Rows with a NaN or an infinity
/// in a floating-point input fail, as a CSV field "nan" would.
final class NPYChunkReader: ChunkReader, @unchecked Sendable {
    // @unchecked: `next` and the handles are touched only inside `read`, and the run never has two reads in flight.
    private let inputs: [NPYSource.Input]
    private let handles: [FileHandle]
    private var next: Int
    private let end: Int
    private let size: Int

    init(inputs: [NPYSource.Input], records: Range<Int>, size: Int) throws {
        self.inputs = inputs
        handles = try inputs.map { try FileHandle(forReadingFrom: $0.url) }
        next = records.lowerBound
        end = records.upperBound
        self.size = size
    }

    deinit { for handle in handles { try? handle.close() } }

    func read() throws -> ParsedChunk? {
        guard next < end else { return nil }
        let rows = next..<min(end, next + size)
        next = rows.upperBound
        var tensors: [Tensor] = []
        var bad: [Int: String] = [:]  // row in the chunk → the first input with a non-finite value in it
        for (input, handle) in zip(inputs, handles) {
            try handle.seek(toOffset: UInt64(input.header.dataOffset + rows.lowerBound * input.header.rowSize))
            let bytes = [UInt8](try handle.read(upToCount: rows.count * input.header.rowSize) ?? Data())
            let raw: Tensor
            do { raw = try NPYFormat.tensor(input.header, rows: rows.count, payload: bytes) } catch {
                throw BatchError("\(input.url.lastPathComponent): \(error)")
            }
            let tensor = raw.dtype == input.spec.dtype ? raw : try raw.converted(to: input.spec.dtype)
            if tensor.dtype.isFloatingPoint {
                let perRow = max(1, tensor.shape.dropFirst().reduce(1, *))
                func scan<T: BinaryFloatingPoint>(_ values: some Sequence<T>) {
                    for (index, value) in values.enumerated() where !value.isFinite && bad[index / perRow] == nil { bad[index / perRow] = input.spec.name }
                }
                // float32, the usual input, is scanned where it lies; other widths through one copy.
                if tensor.dtype == .float32 { tensor.withUnsafeBufferPointer(as: Float.self) { scan($0) } } else { scan(try tensor.doubles()) }
            }
            tensors.append(tensor)
        }
        var chunk = ParsedChunk()
        chunk.records = rows.count
        for index in bad.keys.sorted() {
            chunk.failures.append(RowFailure(place: .row(rows.lowerBound + index), column: bad[index], reason: "the row holds NaN or an infinity"))
        }
        let good = IndexSet(integersIn: 0..<rows.count).subtracting(IndexSet(bad.keys))
        chunk.recordIndices = good.map { rows.lowerBound + $0 }
        guard !good.isEmpty else { return chunk }
        for (input, tensor) in zip(inputs, tensors) {
            chunk.feeds[input.spec.name] = .tensor(bad.isEmpty ? tensor : Tensor.concatenatingRows(good.rangeView.map { tensor.rows($0) }))
        }
        return chunk
    }
}

/// Writes one `.npy` per output into a folder (`label.npy`, `probabilities.npy`...): a ZipMap as a 2-D float
/// array with one column per key in the map's order, strings as numpy unicode arrays as wide as the longest
/// class label. Each header is written with room for any row count, and given the final count by `finish()`.
final class NPYSink: BatchSink {
    private struct File {
        let url: URL
        let handle: FileHandle
        let header: NPYFormat.Header
        /// The header's length in the file, reserved for the largest row count.
        let headerLength: Int
    }

    private let folder: URL
    private let outputs: [String]
    private let classLabels: [String]?
    private var files: [File?]
    private(set) var sizes: [Int]

    init(folder: URL, outputs: [String], classLabels: [String]?, keeping: [Int]) throws {
        self.folder = folder
        self.outputs = outputs
        self.classLabels = classLabels
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        sizes = outputs.indices.map { $0 < keeping.count ? keeping[$0] : 0 }
        files = []
        for (index, output) in outputs.enumerated() {
            let url = folder.appendingPathComponent(npyFileName(output))
            guard sizes[index] > 0 else {
                try? FileManager.default.removeItem(at: url)
                files.append(nil)
                continue
            }
            // A resumed run: the header written before the interruption says what the file holds.
            let handle = try BatchScorer.open(url, keeping: sizes[index])
            let reading = try FileHandle(forReadingFrom: url)
            defer { try? reading.close() }
            let header = try readNPYHeader(reading, url)
            files.append(File(url: url, handle: handle, header: header, headerLength: header.dataOffset))
        }
    }

    /// The `.npy` element type and row shape of one output value.
    private func layout(_ name: String, _ value: Value) throws -> (dtype: DType, width: Int, rowShape: [Int], tensor: Tensor) {
        switch value {
        case .mapSequence(let maps):
            return (.float32, 0, [maps.keys.count], maps.values)
        case .tensor(let tensor) where tensor.dtype == .string:
            guard let labels = classLabels, !labels.isEmpty else {
                throw BatchError("output '\(name)' holds strings of no known width, which .npy cannot stream; use --format csv or jsonl")
            }
            return (.string, labels.map(\.unicodeScalars.count).max()!, Array(tensor.shape.dropFirst()), tensor)
        case .tensor(let tensor):
            return (tensor.dtype, 0, Array(tensor.shape.dropFirst()), tensor)
        }
    }

    func write(_ chunk: ParsedChunk, results: [String: Value]) throws {
        for (index, output) in outputs.enumerated() {
            guard let value = results[output] else { continue }
            let (dtype, width, rowShape, tensor) = try layout(output, value)
            guard tensor.rank > 0, tensor.shape[0] == chunk.rows else {
                throw BatchError("output '\(output)' has shape \(tensor.shape), not one row per input row")
            }
            if files[index] == nil {
                let url = folder.appendingPathComponent(npyFileName(output))
                let length = try NPYFormat.headerBytes(dtype: dtype, unicodeWidth: width, shape: [Int(Int32.max) * 1000] + rowShape).count
                let header = try NPYFormat.headerBytes(dtype: dtype, unicodeWidth: width, shape: [0] + rowShape, length: length)
                let handle = try BatchScorer.open(url, keeping: 0)
                try handle.write(contentsOf: header)
                sizes[index] = header.count
                files[index] = File(url: url, handle: handle,
                                    header: NPYFormat.Header(dtype: dtype, unicodeWidth: width, shape: [0] + rowShape, dataOffset: header.count),
                                    headerLength: header.count)
            }
            let file = files[index]!
            guard dtype == file.header.dtype, rowShape == Array(file.header.shape.dropFirst()) else {
                throw BatchError("output '\(output)' changed from \(file.header.dtype) rows of shape \(Array(file.header.shape.dropFirst())) to \(dtype) rows of shape \(rowShape)")
            }
            let data: Data
            do { data = try NPYFormat.payload(tensor, unicodeWidth: file.header.unicodeWidth) } catch { throw BatchError("output '\(output)': \(error)") }
            try file.handle.write(contentsOf: data)
            sizes[index] += data.count
        }
    }

    func synchronize() throws { for file in files.compactMap({ $0 }) { try file.handle.synchronize() } }

    /// Rewrites each header in place with the rows the file holds.
    func finish() throws {
        for (index, file) in files.enumerated() {
            guard let file else { continue }
            let rows = file.header.rowSize == 0 ? 0 : (sizes[index] - file.headerLength) / file.header.rowSize
            let header = try NPYFormat.headerBytes(dtype: file.header.dtype, unicodeWidth: file.header.unicodeWidth,
                                                   shape: [rows] + file.header.shape.dropFirst(), length: file.headerLength)
            guard header.count == file.headerLength else { throw BatchError("\(file.url.lastPathComponent): the header no longer fits its room") }
            try file.handle.seek(toOffset: 0)
            try file.handle.write(contentsOf: header)
            try file.handle.seekToEnd()
        }
    }

    func close() { for file in files.compactMap({ $0 }) { try? file.handle.close() } }
}
