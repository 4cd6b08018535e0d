import Foundation
import ServalFuzzTargets
import Testing

/// Replays the fuzzing corpus through the same decoders the fuzzer drives: every committed seed (`Fuzz/corpus/T/`)
/// must decode, and every committed finding (`Fuzz/regressions/T/`: inputs that once crashed, hung or leaked) must
/// now be refused with an error (or, for a file named `decodes-*`, decoded), not crash.
struct FuzzRegressionTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fuzz")

    static func files(_ folder: String, _ target: String) -> [URL] {
        let directory = root.appendingPathComponent(folder).appendingPathComponent(target)
        return ((try? FileManager.default.contentsOfDirectory(at: directory, includingPropertiesForKeys: nil)) ?? [])
            .filter { !$0.lastPathComponent.hasPrefix(".") }.sorted { $0.path < $1.path }
    }

    @Test(arguments: FuzzTargets.all.keys.sorted())
    func everySeedDecodes(target: String) throws {
        let decode = try #require(FuzzTargets.all[target])
        let seeds = Self.files("corpus", target)
        #expect(!seeds.isEmpty, "Fuzz/corpus/\(target) holds no seeds")
        for seed in seeds {
            let bytes = try Data(contentsOf: seed)
            #expect(bytes.withUnsafeBytes { decode($0) }, "\(seed.lastPathComponent) no longer decodes")
        }
    }

    @Test(arguments: FuzzTargets.all.keys.sorted())
    func everyFindingIsHandled(target: String) throws {
        let decode = try #require(FuzzTargets.all[target])
        for finding in Self.files("regressions", target) {
            // These inputs trapped before their fix: returning is half the assertion, the verdict the other half.
            let bytes = try Data(contentsOf: finding)
            let decoded = bytes.withUnsafeBytes { decode($0) }
            #expect(decoded == finding.lastPathComponent.hasPrefix("decodes-"), "\(target)/\(finding.lastPathComponent): decoded \(decoded)")
        }
    }
}
