import Crypto
import Foundation
import ServalRegistry

/// What a pipeline's steps produced, keyed by the hash of everything each step reads, as `dvc repro`'s run cache
/// does: a step whose inputs (data hashes, params, deps hashes, its command, upstream outputs) hash to a key seen
/// before is not rerun. Entries live under `<pipeline folder>/.serval/cache/<pipeline>/<step>/<key>/`.
public struct StepCache: Sendable {
    public let root: URL

    public init(root: URL) { self.root = root }

    /// The key of a step's inputs: SHA-256 over the named parts in the order given.
    public static func key(_ parts: [(String, String)]) -> String {
        var hasher = SHA256()
        for (name, value) in parts {
            // Length-prefixed, so no two different part lists hash the same text.
            hasher.update(data: Data("\(name.utf8.count):\(name)\(value.utf8.count):\(value)".utf8))
        }
        return FileDigest.hex(hasher.finalize())
    }

    public func folder(_ step: String, _ key: String) -> URL {
        root.appendingPathComponent(step).appendingPathComponent(key)
    }

    /// The cached model file of `step` for `key`, when there is one.
    public func model(_ step: String, _ key: String) -> URL? {
        let file = folder(step, key).appendingPathComponent("model.onnx")
        return FileManager.default.fileExists(atPath: file.path) ? file : nil
    }

    /// Keeps `file` as the model `step` produced for `key` (copied in, then renamed, so a half-written entry is
    /// never found).
    @discardableResult
    public func storeModel(_ step: String, _ key: String, from file: URL) throws -> URL {
        let target = folder(step, key)
        let staging = root.appendingPathComponent(".tmp-\(UUID().uuidString)")
        let fileManager = FileManager.default
        try fileManager.createDirectory(at: staging, withIntermediateDirectories: true)
        try fileManager.copyItem(at: file, to: staging.appendingPathComponent("model.onnx"))
        try fileManager.createDirectory(at: target.deletingLastPathComponent(), withIntermediateDirectories: true)
        try? fileManager.removeItem(at: target)
        try fileManager.moveItem(at: staging, to: target)
        return target.appendingPathComponent("model.onnx")
    }

    /// A cached JSON value of `step` for `key`.
    public func value<T: Decodable>(_ type: T.Type, _ step: String, _ key: String) -> T? {
        guard let data = FileManager.default.contents(atPath: folder(step, key).appendingPathComponent("value.json").path) else { return nil }
        return try? JSONDecoder().decode(type, from: data)
    }

    public func storeValue<T: Encodable>(_ value: T, _ step: String, _ key: String) throws {
        let target = folder(step, key)
        try FileManager.default.createDirectory(at: target, withIntermediateDirectories: true)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        try encoder.encode(value).write(to: target.appendingPathComponent("value.json"), options: .atomic)
    }
}
