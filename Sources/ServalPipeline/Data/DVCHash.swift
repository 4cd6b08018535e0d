import Crypto
import Foundation
import ServalRegistry

/// DVC 3's content hashes (`hash: md5` in a `.dvc` file): the md5 of a file's bytes exactly as they are (DVC 3
/// no longer turns CRLF into LF first), and for a directory the md5 of its `.dir` manifest, with `.dir` appended.
public enum DVCHash {
    /// A file's hash and size.
    public struct File: Sendable, Equatable {
        public let md5: String
        public let size: Int

        public init(md5: String, size: Int) {
            self.md5 = md5
            self.size = size
        }
    }

    /// One file of a directory, as its manifest lists it.
    public struct Entry: Sendable, Equatable {
        /// The path below the directory, `/`-separated.
        public let relpath: String
        public let md5: String
        public let size: Int
    }

    /// A directory's hash (`<md5>.dir`), its total size, its files and the manifest bytes the hash is of.
    public struct Directory: Sendable {
        public let md5: String
        public let size: Int
        public let entries: [Entry]
        public let manifest: Data
        public var nfiles: Int { entries.count }
    }

    /// The md5 and size of a file's content, read in 1 MiB pieces.
    public static func file(_ url: URL) throws -> File {
        let handle = try FileHandle(forReadingFrom: url)
        defer { try? handle.close() }
        var hasher = Insecure.MD5()
        var size = 0
        while let data = try handle.read(upToCount: 1 << 20), !data.isEmpty {
            hasher.update(data: data)
            size += data.count
        }
        return File(md5: FileDigest.hex(hasher.finalize()), size: size)
    }

    /// The md5 of `data`, as 32 hex digits.
    public static func bytes(_ data: Data) -> String {
        FileDigest.hex(Insecure.MD5.hash(data: data))
    }

    /// Every regular file below `url` (following links to files; skipping `.git`, `.hg` and `.dvc` folders, as DVC
    /// does), hashed and listed in DVC's manifest order: by relative path, compared code point by code point.
    public static func directory(_ url: URL) throws -> Directory {
        let base = url.standardizedFileURL.resolvingSymlinksInPath()
        var entries: [Entry] = []
        guard let walker = FileManager.default.enumerator(at: base, includingPropertiesForKeys: [.isDirectoryKey, .isRegularFileKey], options: []) else {
            throw DataVersionError("cannot read the directory \(url.path)")
        }
        let prefix = base.path.hasSuffix("/") ? base.path : base.path + "/"
        for case let item as URL in walker {
            let values = try item.resourceValues(forKeys: [.isDirectoryKey, .isRegularFileKey])
            if values.isDirectory == true {
                if [".git", ".hg", ".dvc"].contains(item.lastPathComponent) { walker.skipDescendants() }
                continue
            }
            let target = item.resolvingSymlinksInPath()
            guard (try? target.resourceValues(forKeys: [.isRegularFileKey]))?.isRegularFile == true else { continue }
            let path = item.standardizedFileURL.path
            guard path.hasPrefix(prefix) else { continue }
            let hash = try file(target)
            entries.append(Entry(relpath: String(path.dropFirst(prefix.count)), md5: hash.md5, size: hash.size))
        }
        entries.sort { $0.relpath.unicodeScalars.lexicographicallyPrecedes($1.relpath.unicodeScalars) }
        let manifest = manifest(entries)
        return Directory(md5: bytes(manifest) + ".dir", size: entries.reduce(0) { $0 + $1.size }, entries: entries, manifest: manifest)
    }

    /// The manifest as DVC writes it: a JSON list of `{"md5": ..., "relpath": ...}` objects, with Python's default
    /// separators (`", "` and `": "`) and non-ASCII characters escaped as `\uXXXX`.
    public static func manifest(_ entries: [Entry]) -> Data {
        var text = "["
        for (index, entry) in entries.enumerated() {
            if index > 0 { text += ", " }
            text += "{\"md5\": \(pythonJSON(entry.md5)), \"relpath\": \(pythonJSON(entry.relpath))}"
        }
        return Data((text + "]").utf8)
    }

    /// The entries of a manifest (DVC's, or ours).
    public static func entries(ofManifest data: Data) throws -> [(relpath: String, md5: String)] {
        guard let list = try JSONSerialization.jsonObject(with: data) as? [[String: Any]] else { throw DataVersionError("not a .dir manifest") }
        return try list.map { item in
            guard let relpath = item["relpath"] as? String, let md5 = item["md5"] as? String else { throw DataVersionError("a .dir manifest entry lacks relpath or md5") }
            return (relpath, md5)
        }
    }

    /// A string as Python's `json.dumps` writes it with `ensure_ascii`.
    static func pythonJSON(_ string: String) -> String {
        var text = "\""
        for unit in string.utf16 {
            switch unit {
            case 0x22: text += "\\\""
            case 0x5C: text += "\\\\"
            case 0x0A: text += "\\n"
            case 0x0D: text += "\\r"
            case 0x09: text += "\\t"
            case 0x08: text += "\\b"
            case 0x0C: text += "\\f"
            case 0x20..<0x7F: text.unicodeScalars.append(Unicode.Scalar(UInt8(unit)))
            default:
                let digits = String(unit, radix: 16)
                text += "\\u" + String(repeating: "0", count: 4 - digits.count) + digits
            }
        }
        return text + "\""
    }
}

/// A data-versioning failure, with the reason for the user.
public struct DataVersionError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
