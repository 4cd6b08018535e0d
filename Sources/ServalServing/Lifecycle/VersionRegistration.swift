import Foundation
import ServalRegistry

/// The record written next to a registered version's `model.onnx` before the folder is renamed into place. If the
/// process dies after the rename but before the store commit, the next start registers the version from it, with
/// its lineage and actor: a registered version is never lost, and a half-written one never appears.
struct VersionRegistration: Codable, Sendable {
    static let fileName = "registration.json"

    var actor: String
    var sha256: String
    var size: Int
    var metadata: VersionMetadata?

    static func read(versionDirectory: URL) -> VersionRegistration? {
        guard let data = FileManager.default.contents(atPath: versionDirectory.appendingPathComponent(fileName).path) else { return nil }
        return try? JSONDecoder().decode(VersionRegistration.self, from: data)
    }

    func write(to versionDirectory: URL) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        try encoder.encode(self).write(to: versionDirectory.appendingPathComponent(Self.fileName), options: .atomic)
    }
}
