import Foundation

/// Streams the lines of a text file in fixed-size reads, so memory stays flat whatever the file's size: JSON Lines
/// and the like. Accepts a UTF-8 byte-order mark, LF or CRLF line ends and a last line without a line end; lines
/// holding only whitespace are skipped. Each line comes with its physical line number (the first line is 1).
public struct LineReader {
    private let handle: FileHandle
    private var buffer: [UInt8] = []
    private var position = 0
    private var finished = false
    private var line = 0
    private var first = true
    private let chunk: Int

    public init(url: URL, chunkSize: Int = 1 << 20) throws {
        handle = try FileHandle(forReadingFrom: url)
        chunk = chunkSize
    }

    /// The next line that is not blank, without its line end, or nil at the end of the file.
    public mutating func next() throws -> (line: Int, bytes: [UInt8])? {
        while true {
            guard var bytes = try readLine() else { return nil }
            if bytes.last == 0x0D { bytes.removeLast() }
            if bytes.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) { continue }
            return (line, bytes)
        }
    }

    private mutating func fill() throws -> Bool {
        guard !finished else { return false }
        let data = try handle.read(upToCount: chunk) ?? Data()
        if data.isEmpty {
            finished = true
            return false
        }
        buffer.removeFirst(position)
        position = 0
        buffer += data
        if first {
            first = false
            if buffer.starts(with: [0xEF, 0xBB, 0xBF]) { buffer.removeFirst(3) }
        }
        return true
    }

    /// The next physical line; nil at the end of the file.
    private mutating func readLine() throws -> [UInt8]? {
        var searched = position
        while true {
            if let end = buffer[searched...].firstIndex(of: 0x0A) {
                let bytes = Array(buffer[position..<end])
                position = end + 1
                line += 1
                return bytes
            }
            searched = buffer.count
            let consumed = position
            guard try fill() else {
                guard position < buffer.count else { return nil }
                let bytes = Array(buffer[position...])
                position = buffer.count
                line += 1
                return bytes
            }
            searched -= consumed  // fill() dropped the consumed prefix
        }
    }
}
