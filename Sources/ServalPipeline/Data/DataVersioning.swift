import Foundation
import ServalWire
import Yams

/// Something DVC tracks: a file or directory with the hash a `.dvc` file or a `dvc.lock` output records for it.
public struct TrackedData: Sendable, Equatable {
    /// The data's location.
    public let path: URL
    public let md5: String
    public let size: Int?
    public let nfiles: Int?
    /// The `.dvc` file or `dvc.lock` that records it.
    public let record: URL

    public var isDirectory: Bool { md5.hasSuffix(".dir") }
}

/// What a data path looks like against its record.
public enum DataStatus: String, Sendable {
    case unchanged, modified, missing
}

/// One version of a data path: its hash and size (and, for a CSV file, its data rows), when it was taken and by
/// whom.
public struct DataSnapshot: Sendable, Equatable {
    /// Relative to the DVC project's root.
    public let path: String
    public let md5: String
    public let size: Int
    public let nfiles: Int?
    public let rows: Int?
    public let time: Date
    public let actor: String

    public init(path: String, md5: String, size: Int, nfiles: Int?, rows: Int?, time: Date, actor: String) {
        self.path = path
        self.md5 = md5
        self.size = size
        self.nfiles = nfiles
        self.rows = rows
        self.time = time
        self.actor = actor
    }
}

/// `serval data`: DVC 3-compatible data versions in a DVC project, so a repository works with both tools. `add`
/// hashes a file or directory, stores the content in the cache and writes `PATH.dvc`; `status` compares the
/// workspace with the `.dvc` files and `dvc.lock` outputs; `checkout` restores content from the cache.
public struct DataVersioning: Sendable {
    public let project: DVCProject

    public init(project: DVCProject) { self.project = project }

    // MARK: - add

    /// Hashes `path`, saves its content (and a directory's manifest) in the cache, and writes `PATH.dvc` beside it.
    public func add(_ path: URL, actor: String, now: Date = Date()) throws -> DataSnapshot {
        let path = path.standardizedFileURL
        guard FileManager.default.fileExists(atPath: path.path) else { throw DataVersionError("\(path.path) does not exist") }
        let md5: String, size: Int, nfiles: Int?
        if DVCProject.isDirectory(path) {
            let hash = try DVCHash.directory(path)
            for entry in hash.entries { try project.save(path.appendingPathComponent(entry.relpath), md5: entry.md5) }
            try project.save(hash.manifest, md5: hash.md5)
            (md5, size, nfiles) = (hash.md5, hash.size, hash.nfiles)
        } else {
            let hash = try DVCHash.file(path)
            try project.save(path, md5: hash.md5)
            (md5, size, nfiles) = (hash.md5, hash.size, nil)
        }
        try Self.writeRecord(path: path, md5: md5, size: size, nfiles: nfiles)
        try ignoreInGit(path)
        let rows = path.pathExtension.lowercased() == "csv" ? try CSVReader.dataRecords(path) : nil
        return DataSnapshot(path: project.relative(path), md5: md5, size: size, nfiles: nfiles, rows: rows, time: now, actor: actor)
    }

    /// `PATH.dvc` as DVC 3 writes it.
    static func writeRecord(path: URL, md5: String, size: Int, nfiles: Int?) throws {
        var text = "outs:\n- md5: \(md5)\n  size: \(size)\n"
        if let nfiles { text += "  nfiles: \(nfiles)\n" }
        text += "  hash: md5\n  path: \(try Yams.dump(object: path.lastPathComponent).trimmingCharacters(in: .newlines))\n"
        try Data(text.utf8).write(to: URL(fileURLWithPath: path.path + ".dvc"), options: .atomic)
    }

    /// In a git work tree, the data itself stays out of git, as `dvc add` arranges: `/NAME` in the folder's
    /// `.gitignore`.
    func ignoreInGit(_ path: URL) throws {
        guard DVCProject.gitRoot(path.deletingLastPathComponent()) != nil else { return }
        let ignore = path.deletingLastPathComponent().appendingPathComponent(".gitignore")
        let line = "/" + path.lastPathComponent
        let existing = (try? String(contentsOf: ignore, encoding: .utf8)) ?? ""
        guard !existing.split(whereSeparator: \.isNewline).contains(where: { $0 == line }) else { return }
        try Data((existing + (existing.isEmpty || existing.hasSuffix("\n") ? "" : "\n") + line + "\n").utf8).write(to: ignore, options: .atomic)
    }

    // MARK: - What is tracked

    /// The outputs a `.dvc` file or a `dvc.lock` records.
    public static func tracked(in record: URL) throws -> [TrackedData] {
        let text: String
        do { text = try String(contentsOf: record, encoding: .utf8) } catch { throw DataVersionError("cannot read \(record.path)") }
        let document: Any?
        do { document = try Yams.load(yaml: text) } catch { throw DataVersionError("\(record.lastPathComponent): not YAML: \(error)") }
        let folder = record.deletingLastPathComponent()
        func outputs(_ list: Any?, _ place: String) throws -> [TrackedData] {
            guard let list = list as? [[String: Any]] else { throw DataVersionError("\(record.lastPathComponent): \(place) must be a list of outputs") }
            return try list.enumerated().compactMap { index, out in
                guard let path = out["path"] as? String else { throw DataVersionError("\(record.lastPathComponent): \(place)[\(index)] has no path") }
                guard let md5 = (out["md5"] as? String) else { return nil }  // not computed yet (dvc.yaml-only stage)
                return TrackedData(path: folder.appendingPathComponent(path).standardizedFileURL, md5: md5, size: out["size"] as? Int,
                                   nfiles: out["nfiles"] as? Int, record: record)
            }
        }
        guard let top = document as? [String: Any] else { throw DataVersionError("\(record.lastPathComponent): expected a mapping") }
        if record.lastPathComponent == "dvc.lock" {
            guard let stages = top["stages"] as? [String: Any] else { return [] }
            return try stages.keys.sorted().flatMap { name in
                try outputs((stages[name] as? [String: Any])?["outs"] ?? [[String: Any]](), "stages.\(name).outs")
            }
        }
        return try outputs(top["outs"], "outs")
    }

    /// Every `.dvc` file's and every `dvc.lock`'s outputs in the project (`.git`, `.dvc` and the cache skipped).
    public func allTracked() throws -> [TrackedData] {
        var records: [URL] = []
        let walker = FileManager.default.enumerator(at: project.root, includingPropertiesForKeys: [.isDirectoryKey])
        while let item = walker?.nextObject() as? URL {
            if [".git", ".dvc", ".hg"].contains(item.lastPathComponent) { walker?.skipDescendants(); continue }
            if item.pathExtension == "dvc" || item.lastPathComponent == "dvc.lock", !DVCProject.isDirectory(item) { records.append(item) }
        }
        return try records.sorted { $0.path < $1.path }.flatMap(Self.tracked(in:))
    }

    /// What records `path`: `path` itself when it is a `.dvc` file, else `PATH.dvc`, else a `dvc.lock` output.
    public func tracking(_ path: URL) throws -> [TrackedData] {
        let path = path.standardizedFileURL
        if path.pathExtension == "dvc" || path.lastPathComponent == "dvc.lock" { return try Self.tracked(in: path) }
        let record = URL(fileURLWithPath: path.path + ".dvc")
        if FileManager.default.fileExists(atPath: record.path) { return try Self.tracked(in: record).filter { $0.path == path } }
        let outs = try allTracked().filter { $0.path == path }
        guard !outs.isEmpty else { throw DataVersionError("\(project.relative(path)) is not tracked: no \(record.lastPathComponent) and no dvc.lock output; add it with `serval data add`") }
        return outs
    }

    // MARK: - status and checkout

    /// Whether the data is as recorded, and its hash now (nil when missing).
    public func status(_ tracked: TrackedData) throws -> (status: DataStatus, md5: String?) {
        guard FileManager.default.fileExists(atPath: tracked.path.path) else { return (.missing, nil) }
        let md5 = DVCProject.isDirectory(tracked.path) ? try DVCHash.directory(tracked.path).md5 : try DVCHash.file(tracked.path).md5
        return (md5 == tracked.md5 ? .unchanged : .modified, md5)
    }

    /// Makes the workspace hold the recorded content, from the cache. Content that would be lost (a changed file,
    /// or a file in a tracked directory that the record does not list, when the cache lacks it) stops the
    /// checkout unless `force`.
    public func checkout(_ tracked: TrackedData, force: Bool) throws {
        let wanted: [(relpath: String, md5: String)]
        if tracked.isDirectory {
            let manifest = project.object(tracked.md5)
            guard let data = FileManager.default.contents(atPath: manifest.path) else {
                throw DataVersionError("the cache has no \(tracked.md5) for \(project.relative(tracked.path)) (looked in \(project.cache.path))")
            }
            wanted = try DVCHash.entries(ofManifest: data)
        } else {
            wanted = [("", tracked.md5)]
        }
        for entry in wanted where !FileManager.default.fileExists(atPath: project.object(entry.md5).path) {
            throw DataVersionError("the cache has no \(entry.md5) for \(project.relative(target(tracked, entry.relpath))); nothing was changed")
        }
        // What is there now and would go: files whose content is not in the cache.
        var present: [String: String] = [:]
        if tracked.isDirectory, DVCProject.isDirectory(tracked.path) {
            for entry in try DVCHash.directory(tracked.path).entries { present[entry.relpath] = entry.md5 }
        } else if !tracked.isDirectory, FileManager.default.fileExists(atPath: tracked.path.path) {
            present[""] = try DVCHash.file(tracked.path).md5
        }
        let listed = Dictionary(wanted.map { ($0.relpath, $0.md5) }, uniquingKeysWith: { first, _ in first })
        let lost = present.filter { relpath, md5 in listed[relpath] != md5 && !FileManager.default.fileExists(atPath: project.object(md5).path) }.keys.sorted()
        if !lost.isEmpty && !force {
            throw DataVersionError("checkout would lose \(lost.map { project.relative(target(tracked, $0)) }.joined(separator: ", ")) (not in the cache); add them first, or pass --force")
        }
        for relpath in present.keys where listed[relpath] == nil { try FileManager.default.removeItem(at: target(tracked, relpath)) }
        for entry in wanted where present[entry.relpath] != entry.md5 {
            let destination = target(tracked, entry.relpath)
            try FileManager.default.createDirectory(at: destination.deletingLastPathComponent(), withIntermediateDirectories: true)
            let temporary = destination.deletingLastPathComponent().appendingPathComponent(".\(destination.lastPathComponent).serval-checkout")
            try? FileManager.default.removeItem(at: temporary)
            try FileManager.default.copyItem(at: project.object(entry.md5), to: temporary)
            _ = chmod(temporary.path, 0o644)
            guard rename(temporary.path, destination.path) == 0 else { throw DataVersionError("cannot write \(destination.path): errno \(errno)") }
        }
    }

    private func target(_ tracked: TrackedData, _ relpath: String) -> URL {
        relpath.isEmpty ? tracked.path : tracked.path.appendingPathComponent(relpath)
    }
}
