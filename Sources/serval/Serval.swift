import ArgumentParser

/// The `serval` command line: serve models, and inspect, run, benchmark and check ONNX models.
@main
struct Serval: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serval: ONNX model serving on CPU.",
        subcommands: [ServeCommand.self, WorkerCommand.self, BatchCommand.self, ModelsCommand.self, DataCommand.self, PipelineCommand.self, InspectCommand.self, RunCommand.self, BenchCommand.self, TuneCommand.self, AuthCommand.self, QuantizeCommand.self, ConformanceCommand.self]
    )
}
