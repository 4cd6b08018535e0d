import Foundation

/// A DVC project: the folder holding `.dvc/`, and the content-addressed cache in DVC 3's layout
/// (`<cache>/files/md5/ab/cdef…`, read-only copies; a directory's manifest as `<md5>.dir`).
public struct DVCProject: Sendable {
    public let root: URL
    public let cache: URL

    /// The project `path` belongs to: the nearest folder holding `.dvc/`, from `path` (a folder) or its folder
    /// upwards. Without one, `fallback` (the working folder) gets a minimal project when given: `.dvc/config`,
    /// marked `no_scm` outside a git work tree, as `dvc init` would. `cache` overrides the project's cache folder.
    public static func locate(for path: URL, creatingIn fallback: URL? = nil, cache: URL? = nil) throws -> DVCProject {
        let path = path.standardizedFileURL
        var folder = isDirectory(path) ? path : path.deletingLastPathComponent()
        while true {
            if isDirectory(folder.appendingPathComponent(".dvc")) { return DVCProject(root: folder, cache: cache ?? configuredCache(folder)) }
            let parent = folder.deletingLastPathComponent()
            if parent.path == folder.path { break }
            folder = parent
        }
        guard let root = fallback?.standardizedFileURL else {
            throw DataVersionError("no folder from \(path.path) up holds a .dvc/ project (`serval data add` or `dvc init` makes one)")
        }
        guard path.path == root.path || path.path.hasPrefix(root.path.hasSuffix("/") ? root.path : root.path + "/") else {
            throw DataVersionError("\(path.path) is outside \(root.path) and no folder above it holds a .dvc/ project; run from the project folder")
        }
        let dvc = root.appendingPathComponent(".dvc")
        try FileManager.default.createDirectory(at: dvc, withIntermediateDirectories: true)
        let git = gitRoot(root) != nil
        try Data((git ? "" : "[core]\n    no_scm = True\n").utf8).write(to: dvc.appendingPathComponent("config"))
        if git { try Data("/config.local\n/tmp\n/cache\n".utf8).write(to: dvc.appendingPathComponent(".gitignore")) }
        return DVCProject(root: root, cache: cache ?? dvc.appendingPathComponent("cache"))
    }

    /// `[cache] dir` from `.dvc/config.local` or `.dvc/config` (relative to `.dvc/`), else `.dvc/cache`.
    static func configuredCache(_ root: URL) -> URL {
        let dvc = root.appendingPathComponent(".dvc")
        for name in ["config.local", "config"] {
            guard let text = try? String(contentsOf: dvc.appendingPathComponent(name), encoding: .utf8) else { continue }
            var section = ""
            for raw in text.split(whereSeparator: \.isNewline) {
                let line = raw.trimmingCharacters(in: .whitespaces)
                if line.hasPrefix("[") { section = line.trimmingCharacters(in: CharacterSet(charactersIn: "[] ")).lowercased(); continue }
                let parts = line.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
                if section == "cache", parts.count == 2, parts[0] == "dir" {
                    return parts[1].hasPrefix("/") ? URL(fileURLWithPath: parts[1]) : dvc.appendingPathComponent(parts[1]).standardizedFileURL
                }
            }
        }
        return dvc.appendingPathComponent("cache")
    }

    /// The git work tree `folder` is in, if any.
    public static func gitRoot(_ folder: URL) -> URL? {
        var folder = folder.standardizedFileURL
        while true {
            if FileManager.default.fileExists(atPath: folder.appendingPathComponent(".git").path) { return folder }
            let parent = folder.deletingLastPathComponent()
            if parent.path == folder.path { return nil }
            folder = parent
        }
    }

    static func isDirectory(_ url: URL) -> Bool {
        var folder: ObjCBool = false
        return FileManager.default.fileExists(atPath: url.path, isDirectory: &folder) && folder.boolValue
    }

    /// Where the cache keeps the object with hash `md5` (`…/files/md5/ab/cdef…`, `.dir` kept for a manifest).
    public func object(_ md5: String) -> URL {
        cache.appendingPathComponent("files/md5").appendingPathComponent(String(md5.prefix(2))).appendingPathComponent(String(md5.dropFirst(2)))
    }

    /// `path` relative to the project root, `/`-separated.
    public func relative(_ path: URL) -> String {
        let full = path.standardizedFileURL.path, base = root.path.hasSuffix("/") ? root.path : root.path + "/"
        return full.hasPrefix(base) ? String(full.dropFirst(base.count)) : full
    }

    /// Copies `source` into the cache as `md5` (once: an object present already is kept), read-only, through a
    /// temporary file and a rename, so a kill never leaves half an object under its hash.
    func save(_ source: URL, md5: String) throws {
        try save(md5: md5) { temporary in try FileManager.default.copyItem(at: source, to: temporary) }
    }

    func save(_ data: Data, md5: String) throws {
        try save(md5: md5) { temporary in try data.write(to: temporary) }
    }

    private func save(md5: String, _ write: (URL) throws -> Void) throws {
        let target = object(md5)
        if FileManager.default.fileExists(atPath: target.path) { return }
        try FileManager.default.createDirectory(at: target.deletingLastPathComponent(), withIntermediateDirectories: true)
        let temporary = target.deletingLastPathComponent().appendingPathComponent(".\(target.lastPathComponent).\(UUID().uuidString).tmp")
        try write(temporary)
        _ = chmod(temporary.path, 0o444)
        guard rename(temporary.path, target.path) == 0 else {
            try? FileManager.default.removeItem(at: temporary)
            throw DataVersionError("cannot move an object into the cache at \(target.path): errno \(errno)")
        }
    }
}
