import ArgumentParser
import Foundation
import ServalPipeline
import ServalServer
import ServalStore

/// `serval data ...`: DVC 3-compatible data versions: `add` hashes and caches a file or directory and writes
/// `PATH.dvc`; `status`, `checkout` and `log` read them. DVC itself can read what it writes, and the other way round.
struct DataCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "data", abstract: "Version data files and directories in DVC's formats (.dvc files, the DVC cache).",
        subcommands: [Add.self, Status.self, Checkout.self, Log.self])

    /// Where the project and the version records are.
    struct Location: ParsableArguments {
        @Option(help: "The cache folder (default: the project's, from .dvc/config, else .dvc/cache).")
        var cache: String?

        @Option(name: .customLong("data-dir"), help: "Folder of the state store that records versions (SQLite). Default $SERVAL_DATA_DIR or ./serval-data.")
        var dataDir: String?

        @Option(name: .customLong("database-url"), help: "PostgreSQL URL of the state store; replaces --data-dir.")
        var databaseURL: String?

        /// The project `path` is in; `create`: make one in the working folder when there is none (`add`).
        func project(for path: URL, create: Bool = false) throws -> DataVersioning {
            let here = URL(fileURLWithPath: FileManager.default.currentDirectoryPath)
            return DataVersioning(project: try DVCProject.locate(for: path, creatingIn: create ? here : nil, cache: cache.map { URL(fileURLWithPath: $0) }))
        }

        /// Runs `body` with the version log, closing the store afterwards whether `body` succeeds or throws.
        func withLog<T>(_ body: (DataVersionLog) async throws -> T) async throws -> T {
            let store = try await StoreFactory.open(databaseURL: databaseURL, dataDirectory: dataDir.map { URL(fileURLWithPath: $0) } ?? ServerOptions.defaultDataDirectory)
            do {
                let result = try await body(try await DataVersionLog(store: store))
                await store.close()
                return result
            } catch {
                await store.close()
                throw error
            }
        }
    }

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Hash files or directories, copy them into the cache and write PATH.dvc for each.")
        @Argument(help: "Files or directories.") var paths: [String]
        @OptionGroup var location: Location
        @Option(help: "Who took the snapshot, recorded with it. Default: $USER.") var actor: String?

        func run() async throws {
            try await location.withLog { log in
                for path in paths {
                    let url = URL(fileURLWithPath: path)
                    let versioning = try location.project(for: url, create: true)
                    let snapshot = try versioning.add(url, actor: actor ?? ProcessInfo.processInfo.environment["USER"] ?? ProcessInfo.processInfo.userName)
                    let recorded = try await log.record(snapshot)
                    var line = "\(snapshot.md5)  \(snapshot.path)  \(snapshot.size) bytes"
                    if let nfiles = snapshot.nfiles { line += ", \(nfiles) files" }
                    if let rows = snapshot.rows { line += ", \(rows) rows" }
                    print(line + (recorded ? "" : "  (unchanged)"))
                }
            }
        }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Whether each tracked path is unchanged, modified or missing against its .dvc file or dvc.lock output.",
            discussion: "Exit 0 unless the command itself failed (a modified path is a status, not an error).")
        @Argument(help: "Data paths or .dvc files (default: everything the project tracks).") var paths: [String] = []
        @OptionGroup var location: Location
        @Flag(help: "Print {path: {\"status\", \"md5\"}} as JSON.") var json = false

        func run() async throws {
            let here = URL(fileURLWithPath: FileManager.default.currentDirectoryPath)
            let versioning = try location.project(for: paths.first.map { URL(fileURLWithPath: $0) } ?? here)
            var results: [(path: String, status: DataStatus, md5: String?)] = []
            let tracked = paths.isEmpty ? try versioning.allTracked() : try paths.flatMap { try versioning.tracking(URL(fileURLWithPath: $0)) }
            for item in tracked {
                let (status, md5) = try versioning.status(item)
                results.append((versioning.project.relative(item.path), status, md5))
            }
            if json {
                var object: [String: Any] = [:]
                for result in results { object[result.path] = ["status": result.status.rawValue, "md5": result.md5 as Any] }
                let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
                print(String(decoding: data, as: UTF8.self))
            } else {
                for result in results { print("\(result.status.rawValue.padding(toLength: 10, withPad: " ", startingAt: 0)) \(result.md5 ?? "-")  \(result.path)") }
            }
        }
    }

    struct Checkout: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Restore tracked data from the cache, as its .dvc file or dvc.lock records it.")
        @Argument(help: ".dvc files or data paths.") var paths: [String]
        @OptionGroup var location: Location
        @Flag(help: "Overwrite or remove workspace files whose content is not in the cache.") var force = false

        func run() async throws {
            for path in paths {
                let versioning = try location.project(for: URL(fileURLWithPath: path))
                for item in try versioning.tracking(URL(fileURLWithPath: path)) {
                    try versioning.checkout(item, force: force)
                    print("restored \(item.md5)  \(versioning.project.relative(item.path))")
                }
            }
        }
    }

    struct Log: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The versions `serval data add` recorded for a path, newest first.")
        @Argument(help: "A data path (or its .dvc file).") var path: String
        @OptionGroup var location: Location
        @Flag(help: "Print JSON lines.") var json = false

        func run() async throws {
            var url = URL(fileURLWithPath: path)
            if url.pathExtension == "dvc" { url = url.deletingPathExtension() }
            let relative = try location.project(for: url).project.relative(url)
            let versions = try await location.withLog { log in try await log.versions(relative) }
            if versions.isEmpty { throw DataVersionError("no versions of \(relative) are recorded in this store; `serval data add \(path)` records one") }
            for version in versions {
                if json {
                    var object: [String: Any] = ["path": version.path, "md5": version.md5, "size": version.size, "time": StoreClock.timestamp(version.time), "actor": version.actor]
                    if let nfiles = version.nfiles { object["nfiles"] = nfiles }
                    if let rows = version.rows { object["rows"] = rows }
                    print(String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self))
                } else {
                    print("\(StoreClock.timestamp(version.time))  \(version.md5)  \(version.size) bytes\(version.rows.map { ", \($0) rows" } ?? "")  \(version.actor)")
                }
            }
        }
    }
}
