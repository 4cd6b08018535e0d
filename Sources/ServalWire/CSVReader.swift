import Foundation

/// One CSV record: its fields and the physical line it starts on (the header is line 1).
public struct CSVRecord: Sendable, Equatable {
    public var line: Int
    public var fields: [String]

    public init(line: Int, fields: [String]) {
        self.line = line
        self.fields = fields
    }
}

/// Streams RFC 4180 records from a file in fixed-size reads, so memory stays flat whatever the file's size.
/// Accepts a UTF-8 byte-order mark, LF or CRLF line ends, quoted fields (with `""` for a quote, and commas or
/// line breaks inside), and a last record without a line end. Empty lines are skipped.
public struct CSVReader {
    private let handle: FileHandle
    private var buffer: [UInt8] = []
    private var position = 0
    private var finished = false
    private var line = 1
    private var first = true
    private let chunk: Int

    public init(url: URL, chunkSize: Int = 1 << 20) throws {
        handle = try FileHandle(forReadingFrom: url)
        chunk = chunkSize
    }

    /// The data records of a file: every record after the header line.
    public static func dataRecords(_ url: URL) throws -> Int {
        var reader = try CSVReader(url: url)
        var count = -1
        while try reader.next() != nil { count += 1 }
        return max(0, count)
    }

    /// The next record, or nil at the end of the file.
    public mutating func next() throws -> CSVRecord? {
        while true {
            guard let record = try readRecord() else { return nil }
            if record.fields.count == 1 && record.fields[0].isEmpty && !record.quoted { continue }  // an empty line
            return CSVRecord(line: record.line, fields: record.fields)
        }
    }

    private mutating func byte() throws -> UInt8? {
        if position == buffer.count {
            guard !finished else { return nil }
            let data = try handle.read(upToCount: chunk) ?? Data()
            if data.isEmpty {
                finished = true
                return nil
            }
            buffer = Array(data)
            position = 0
            if first {
                first = false
                if buffer.starts(with: [0xEF, 0xBB, 0xBF]) { position = 3 }
                if position == buffer.count { return try byte() }
            }
        }
        defer { position += 1 }
        return buffer[position]
    }

    private mutating func peek() throws -> UInt8? {
        guard let next = try byte() else { return nil }
        position -= 1
        return next
    }

    private mutating func readRecord() throws -> (line: Int, fields: [String], quoted: Bool)? {
        var fields: [String] = []
        var field: [UInt8] = []
        var quoted = false, inQuotes = false, sawAny = false
        let start = line
        while let byte = try byte() {
            sawAny = true
            if inQuotes {
                if byte == UInt8(ascii: "\"") {
                    if try peek() == UInt8(ascii: "\"") {
                        _ = try self.byte()
                        field.append(byte)
                    } else {
                        inQuotes = false
                    }
                } else {
                    if byte == UInt8(ascii: "\n") { line += 1 }
                    field.append(byte)
                }
                continue
            }
            switch byte {
            case UInt8(ascii: "\"") where field.isEmpty:
                inQuotes = true
                quoted = true
            case UInt8(ascii: ","):
                fields.append(String(decoding: field, as: UTF8.self))
                field.removeAll(keepingCapacity: true)
            case UInt8(ascii: "\r") where try peek() == UInt8(ascii: "\n"):
                continue
            case UInt8(ascii: "\n"):
                line += 1
                fields.append(String(decoding: field, as: UTF8.self))
                return (start, fields, quoted)
            default:
                field.append(byte)
            }
        }
        guard sawAny else { return nil }
        fields.append(String(decoding: field, as: UTF8.self))
        return (start, fields, quoted)
    }
}
