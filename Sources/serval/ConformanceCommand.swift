import ArgumentParser
import Foundation
import ServalEngine
import ServalONNX

/// `serval conformance DATA_DIR [--allow-list FILE]`: runs ONNX backend test cases.
struct ConformanceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "conformance",
        abstract: "Run ONNX backend test cases and compare with their expected outputs.",
        discussion: """
        Without --allow-list every case under DATA_DIR runs; cases using unsupported ops are skipped.
        With --allow-list only the listed cases run and each must pass; the rest count as skipped.
        The last line is 'N passed, N failed, N skipped'; the exit code is 1 if any case failed.
        """
    )

    @Argument(help: "Folder holding case folders (searched recursively for model.onnx).")
    var dataDirectory: String

    @Option(name: .long, help: "File with one case per line (path relative to DATA_DIR, e.g. node/test_add); '#' starts a comment.")
    var allowList: String?

    @Option(name: .long, help: "Write the names of the cases that passed to this file (to grow the allow-list).")
    var writePassing: String?

    @Flag(name: .long, help: "Print every case, not only failures.")
    var verbose = false

    /// Allow-list requirements (`NAME requires=CAPABILITY`): cases whose expected output only this hardware path
    /// reproduces, such as outputs that need every channel's sum rounded identically.
    static let capabilities: [String: Bool] = ["avx512-gemm": EngineCapabilities.packedFloatGEMM]

    func run() throws {
        let suite = ConformanceSuite(root: URL(fileURLWithPath: dataDirectory))
        let available = suite.caseNames()
        guard !available.isEmpty else { throw ValidationError("no test cases (model.onnx) under \(dataDirectory)") }
        var selected = available
        var listed = Set<String>()
        var unmet: [String: String] = [:]  // case → the requirement this machine lacks
        if let allowList {
            let text: String
            do { text = try String(contentsOfFile: allowList, encoding: .utf8) } catch { throw ValidationError("cannot read allow-list \(allowList)") }
            for line in text.split(separator: "\n") {
                let entry = line.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false)[0].trimmingCharacters(in: .whitespaces)
                let fields = entry.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
                guard let name = fields.first else { continue }
                for requirement in fields.dropFirst() {
                    guard requirement.hasPrefix("requires=") else { throw ValidationError("allow-list \(allowList): unknown field '\(requirement)' for \(name)") }
                    let capability = String(requirement.dropFirst("requires=".count))
                    guard let available = Self.capabilities[capability] else {
                        throw ValidationError("allow-list \(allowList): unknown requirement '\(capability)' for \(name); known: \(Self.capabilities.keys.sorted())")
                    }
                    if !available { unmet[name] = capability }
                }
                listed.insert(name)
            }
            selected = listed.filter { unmet[$0] == nil }.sorted()
            for (name, capability) in unmet.sorted(by: { $0.key < $1.key }) {
                print("SKIP \(name): requires \(capability), which this CPU lacks")
            }
        }
        let known = Set(available)
        var passed: [String] = []
        var failed = 0, skipped = available.count - selected.filter { known.contains($0) }.count
        for name in selected {
            let outcome: ConformanceSuite.Outcome = known.contains(name) ? suite.run(name) : .failed("listed but not found under \(dataDirectory)")
            switch outcome {
            case .passed:
                passed.append(name)
                if verbose { print("PASS \(name)") }
            case .failed(let reason):
                failed += 1
                print("FAIL \(name): \(reason)")
            case .skipped(let reason):
                if allowList != nil {
                    failed += 1
                    print("FAIL \(name): \(reason)")
                } else {
                    skipped += 1
                    if verbose { print("SKIP \(name): \(reason)") }
                }
            }
        }
        if let writePassing {
            try (passed.joined(separator: "\n") + "\n").write(toFile: writePassing, atomically: true, encoding: .utf8)
        }
        print("\(passed.count) passed, \(failed) failed, \(skipped) skipped")
        if failed > 0 { throw ExitCode(1) }
    }
}
