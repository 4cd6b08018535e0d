import Foundation
import ServalWire

/// The model repository on disk (TF Serving / Triton layout): `ROOT/<model>/[config.yaml]` and
/// `ROOT/<model>/<version>/model.onnx`, versions being positive integers. It only reads the layout;
/// which versions to load is the manager's policy.
public struct ModelRepository: Sendable {
    public let root: URL

    /// One model folder as found on disk.
    public struct Entry: Sendable, Equatable {
        public let name: String
        public let directory: URL
        /// The parsed config, or the reason it could not be read.
        public let config: Result<ModelConfig, ServingError>
        /// Version number → model file, with a fingerprint that changes when the file does.
        public let versions: [Int: VersionFile]
        /// Fingerprint of config.yaml (empty when absent).
        public let configFingerprint: String
    }

    public struct VersionFile: Sendable, Equatable {
        public let url: URL
        public let fingerprint: String
    }

    public init(root: URL) { self.root = root }

    /// Where a version's model file is: `ROOT/<model>/<version>/model.onnx`.
    public func modelFile(_ model: String, version: Int) -> URL {
        root.appendingPathComponent(model).appendingPathComponent(String(version)).appendingPathComponent("model.onnx")
    }

    /// Reads the repository; a missing root is an error, a broken model folder is reported in its entry.
    public func scan() throws -> [Entry] {
        let manager = FileManager.default
        var isDirectory: ObjCBool = false
        guard manager.fileExists(atPath: root.path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw ServingError.invalidArgument("model repository \(root.path) is not a directory")
        }
        let names = try manager.contentsOfDirectory(atPath: root.path).filter { !$0.hasPrefix(".") }.sorted()
        return names.compactMap { name in
            let directory = root.appendingPathComponent(name)
            var isModelDirectory: ObjCBool = false
            guard manager.fileExists(atPath: directory.path, isDirectory: &isModelDirectory), isModelDirectory.boolValue else { return nil }
            return entry(name: name, directory: directory)
        }
    }

    /// The version numbers on disk for one model (without reading the rest of the repository).
    public func versionsOnDisk(_ name: String) -> Set<Int> {
        let directory = root.appendingPathComponent(name)
        return Set(((try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []).compactMap { Int($0) }.filter { $0 > 0 })
    }

    func entry(name: String, directory: URL) -> Entry {
        let manager = FileManager.default
        let configURL = directory.appendingPathComponent("config.yaml")
        var config: Result<ModelConfig, ServingError> = .success(ModelConfig())
        var configFingerprint = ""
        if let data = manager.contents(atPath: configURL.path) {
            configFingerprint = Self.fingerprint(configURL)
            do {
                config = .success(try ModelConfig.parse(String(decoding: data, as: UTF8.self), file: "\(name)/config.yaml"))
            } catch let error as ServingError {
                config = .failure(error)
            } catch {
                config = .failure(.invalidArgument("\(name)/config.yaml: \(error)"))
            }
        }
        var versions: [Int: VersionFile] = [:]
        for child in (try? manager.contentsOfDirectory(atPath: directory.path)) ?? [] {
            guard let version = Int(child), version > 0 else { continue }
            let file = directory.appendingPathComponent(child).appendingPathComponent("model.onnx")
            versions[version] = VersionFile(url: file, fingerprint: Self.fingerprint(file))
        }
        return Entry(name: name, directory: directory, config: config, versions: versions, configFingerprint: configFingerprint)
    }

    /// Size and modification time: enough to notice a replaced file when polling.
    static func fingerprint(_ url: URL) -> String {
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: url.path) else { return "missing" }
        let size = (attributes[.size] as? NSNumber)?.intValue ?? -1
        let modified = (attributes[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0
        return "\(size)@\(modified)"
    }
}
