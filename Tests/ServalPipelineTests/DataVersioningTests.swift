import Foundation
import ServalPipeline
import ServalStore
import ServalTestSupport
import Testing

/// `serval data`'s hashing, cache and records. Agreement with DVC itself is checked in CI by
/// scripts/e2e/dvc.py against the real `dvc`; these pin the behaviour that script relies on.
@Suite("Data versions in DVC's formats")
struct DataVersioningTests {
    static func project() throws -> (URL, DataVersioning) {
        let root = TestStores.temporaryDirectory()
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        return (root, DataVersioning(project: try DVCProject.locate(for: root, creatingIn: root)))
    }

    static func write(_ text: String, _ url: URL) throws {
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data(text.utf8).write(to: url)
    }

    @Test func aCRLFFileHashesItsBytesAsTheyAreAndAnEmptyFileHasTheEmptyDigest() throws {
        let (root, _) = try Self.project()
        try Self.write("a,b\r\n1,2\r\n", root.appendingPathComponent("crlf.csv"))
        try Self.write("a,b\n1,2\n", root.appendingPathComponent("lf.csv"))
        try Self.write("", root.appendingPathComponent("empty"))
        let crlf = try DVCHash.file(root.appendingPathComponent("crlf.csv"))
        #expect(crlf.size == 10)
        #expect(crlf.md5 != (try DVCHash.file(root.appendingPathComponent("lf.csv"))).md5, "DVC 3 does not normalise line ends")
        #expect(crlf.md5 == DVCHash.bytes(Data("a,b\r\n1,2\r\n".utf8)))
        #expect(try DVCHash.file(root.appendingPathComponent("empty")) == DVCHash.File(md5: DVCHash.bytes(Data()), size: 0))
    }

    @Test func aDirectoryManifestIsSortedByPathWithPythonsSeparatorsAndItsHashEndsInDir() throws {
        let (root, _) = try Self.project()
        let folder = root.appendingPathComponent("data")
        try Self.write("b", folder.appendingPathComponent("b.txt"))
        try Self.write("a", folder.appendingPathComponent("sub/a.txt"))
        try Self.write("A", folder.appendingPathComponent("B.txt"))
        try Self.write("é", folder.appendingPathComponent("é.txt"))
        try Self.write("ignored", folder.appendingPathComponent(".git/HEAD"))
        let hash = try DVCHash.directory(folder)
        #expect(hash.entries.map(\.relpath) == ["B.txt", "b.txt", "sub/a.txt", "é.txt"])  // code point order: uppercase first
        #expect(hash.size == 5)
        #expect(hash.nfiles == 4)
        let text = String(decoding: hash.manifest, as: UTF8.self)
        #expect(text.hasPrefix("[{\"md5\": \"\(DVCHash.bytes(Data("A".utf8)))\", \"relpath\": \"B.txt\"}, {\"md5\": "))
        #expect(text.hasSuffix("\"relpath\": \"\\u00e9.txt\"}]"))
        #expect(hash.md5 == DVCHash.bytes(hash.manifest) + ".dir")
    }

    @Test func addCachesTheContentWritesTheRecordAndStatusFollowsTheWorkspace() throws {
        let (root, versioning) = try Self.project()
        let file = root.appendingPathComponent("train.csv")
        try Self.write("x,y\n1,2\n3,4\n", file)
        let snapshot = try versioning.add(file, actor: "ana")
        #expect(snapshot.path == "train.csv")
        #expect(snapshot.rows == 2)
        let record = try String(contentsOf: root.appendingPathComponent("train.csv.dvc"), encoding: .utf8)
        #expect(record == "outs:\n- md5: \(snapshot.md5)\n  size: 12\n  hash: md5\n  path: train.csv\n")
        let object = versioning.project.object(snapshot.md5)
        #expect(object.path.hasSuffix(".dvc/cache/files/md5/\(snapshot.md5.prefix(2))/\(snapshot.md5.dropFirst(2))"))
        #expect(FileManager.default.contents(atPath: object.path) == Data("x,y\n1,2\n3,4\n".utf8))
        let tracked = try versioning.tracking(file)
        #expect(try versioning.status(tracked[0]).status == .unchanged)
        try Self.write("x,y\n1,2\n", file)
        #expect(try versioning.status(tracked[0]).status == .modified)
        // The changed content is not in the cache: checkout refuses to lose it without force, then restores.
        #expect(throws: DataVersionError.self) { try versioning.checkout(tracked[0], force: false) }
        try versioning.checkout(tracked[0], force: true)
        #expect(try versioning.status(tracked[0]).status == .unchanged)
        try FileManager.default.removeItem(at: file)
        #expect(try versioning.status(tracked[0]).status == .missing)
        try versioning.checkout(tracked[0], force: false)
        #expect(try String(contentsOf: file, encoding: .utf8) == "x,y\n1,2\n3,4\n")
    }

    @Test func aDirectoryIsRestoredFileByFileAndExtraFilesGoOnlyWithForce() throws {
        let (root, versioning) = try Self.project()
        let folder = root.appendingPathComponent("images")
        try Self.write("one", folder.appendingPathComponent("1.txt"))
        try Self.write("two", folder.appendingPathComponent("nested/2.txt"))
        let snapshot = try versioning.add(folder, actor: "ana")
        #expect(snapshot.nfiles == 2)
        #expect(try String(contentsOf: root.appendingPathComponent("images.dvc"), encoding: .utf8).contains("  nfiles: 2\n"))
        let tracked = try versioning.tracking(root.appendingPathComponent("images.dvc"))
        try FileManager.default.removeItem(at: folder.appendingPathComponent("nested"))
        try Self.write("three", folder.appendingPathComponent("3.txt"))
        #expect(try versioning.status(tracked[0]).status == .modified)
        #expect(throws: DataVersionError.self) { try versioning.checkout(tracked[0], force: false) }
        #expect(FileManager.default.fileExists(atPath: folder.appendingPathComponent("3.txt").path), "a refused checkout changes nothing")
        try versioning.checkout(tracked[0], force: true)
        #expect(try versioning.status(tracked[0]).status == .unchanged)
        #expect(!FileManager.default.fileExists(atPath: folder.appendingPathComponent("3.txt").path))
    }

    @Test func aProjectIsFoundFromAFolderOrAFileBelowItAndMadeOnlyWhenAsked() throws {
        let root = TestStores.temporaryDirectory()
        try Self.write("x", root.appendingPathComponent("data/deep/file.csv"))
        #expect(throws: DataVersionError.self) { try DVCProject.locate(for: root.appendingPathComponent("data/deep/file.csv")) }
        #expect(!FileManager.default.fileExists(atPath: root.appendingPathComponent(".dvc").path), "looking makes nothing")
        let made = try DVCProject.locate(for: root.appendingPathComponent("data/deep/file.csv"), creatingIn: root)
        #expect(made.root.path == root.standardizedFileURL.path)
        #expect(try String(contentsOf: root.appendingPathComponent(".dvc/config"), encoding: .utf8) == "[core]\n    no_scm = True\n")
        #expect(try DVCProject.locate(for: root.appendingPathComponent("data/deep")).root.path == made.root.path)
        #expect(try DVCProject.locate(for: root).root.path == made.root.path)
        #expect(made.relative(root.appendingPathComponent("data/deep/file.csv")) == "data/deep/file.csv")
        try Data("[cache]\n    dir = ../shared-cache\n".utf8).write(to: root.appendingPathComponent(".dvc/config"))
        #expect(try DVCProject.locate(for: root).cache.path == root.appendingPathComponent("shared-cache").standardizedFileURL.path)
    }

    @Test func dvcLockOutputsAreTrackedAsTheyAre() throws {
        let (root, versioning) = try Self.project()
        try Self.write("model", root.appendingPathComponent("out/model.bin"))
        let md5 = try DVCHash.file(root.appendingPathComponent("out/model.bin")).md5
        try Self.write("""
            schema: '2.0'
            stages:
              train:
                cmd: python train.py
                outs:
                - path: out/model.bin
                  hash: md5
                  md5: \(md5)
                  size: 5
            """, root.appendingPathComponent("dvc.lock"))
        let tracked = try versioning.tracking(root.appendingPathComponent("out/model.bin"))
        #expect(tracked.map(\.md5) == [md5])
        #expect(try versioning.status(tracked[0]).status == .unchanged)
        #expect(try versioning.allTracked().count == 1)
        #expect(throws: DataVersionError.self) { try versioning.tracking(root.appendingPathComponent("other.csv")) }
    }

    @Test(arguments: TestStores.backends)
    func theLogRecordsEachNewHashOfAPathNewestFirst(_ dialect: SQLDialect) async throws {
        let store = try await TestStores.make(dialect)
        let log = try await DataVersionLog(store: store)
        let time = Date(timeIntervalSince1970: 1_700_000_000)
        let first = DataSnapshot(path: "data/train.csv", md5: "a", size: 10, nfiles: nil, rows: 2, time: time, actor: "ana")
        #expect(try await log.record(first))
        #expect(!(try await log.record(first)), "the same hash again is not a new version")
        let second = DataSnapshot(path: "data/train.csv", md5: "b", size: 12, nfiles: nil, rows: 3, time: time.addingTimeInterval(60), actor: "ben")
        #expect(try await log.record(second))
        #expect(try await log.versions("data/train.csv") == [second, first])
        #expect(try await log.versions("other").isEmpty)
        await store.close()
    }
}
