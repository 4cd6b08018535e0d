import ArgumentParser

/// The `serval` command line: inspect, run, benchmark and check ONNX models.
@main
struct Serval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serval: ONNX model serving on CPU.",
        subcommands: [InspectCommand.self, RunCommand.self, BenchCommand.self, ConformanceCommand.self]
    )
}
