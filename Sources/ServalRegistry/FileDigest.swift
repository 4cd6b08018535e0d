import Crypto
import Foundation

/// Content hashes of model files.
public enum FileDigest {
    /// Hex SHA-256 and size of a file, read in 1 MiB pieces.
    public static func sha256(of url: URL) throws -> (hex: String, size: Int) {
        let handle = try FileHandle(forReadingFrom: url)
        defer { try? handle.close() }
        var hasher = SHA256()
        var size = 0
        while let chunk = try handle.read(upToCount: 1 << 20), !chunk.isEmpty {
            hasher.update(data: chunk)
            size += chunk.count
        }
        return (hex(hasher.finalize()), size)
    }

    public static func sha256(of data: Data) -> String { hex(SHA256.hash(data: data)) }

    /// Lower-case hex of a digest's bytes.
    public static func hex<D: Sequence>(_ digest: D) -> String where D.Element == UInt8 {
        digest.map { String(format: "%02x", $0) }.joined()
    }
}
