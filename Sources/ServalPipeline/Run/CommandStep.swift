import Foundation
import Synchronization

/// Runs one external command of a pipeline (`/bin/sh -c`, in the pipeline's folder, with extra environment
/// variables). Its stdout and stderr are streamed line by line, prefixed with the step's name, to `echo` and kept
/// whole in a log file; the last lines come back for error messages. Waiting does not hold a thread.
public struct CommandStep: Sendable {
    public let command: String
    public let folder: URL
    public let environment: [String: String]
    public let log: URL
    public let prefix: String

    public init(command: String, folder: URL, environment: [String: String], log: URL, prefix: String) {
        self.command = command
        self.folder = folder
        self.environment = environment
        self.log = log
        self.prefix = prefix
    }

    /// How the command ended.
    public struct Outcome: Sendable {
        public let status: Int32
        /// The last lines of its output (stdout and stderr interleaved as they arrived).
        public let tail: [String]
    }

    public func run(echo: @escaping @Sendable (String) -> Void) async throws -> Outcome {
        try FileManager.default.createDirectory(at: log.deletingLastPathComponent(), withIntermediateDirectories: true)
        guard FileManager.default.createFile(atPath: log.path, contents: nil) else { throw PipelineError("cannot write the log \(log.path)") }
        let logHandle = try FileHandle(forWritingTo: log)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", command]
        process.currentDirectoryURL = folder
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        process.standardInput = FileHandle.nullDevice
        let lines = LineCollector(prefix: prefix, log: logHandle, echo: echo)
        let finished = Mutex<CheckedContinuation<Int32, Never>?>(nil)
        let drained = Mutex<Bool>(false)
        let exited = Mutex<Int32?>(nil)
        // The process may exit before its pipe is drained: finish only once both have happened.
        @Sendable func finishIfDone() {
            guard drained.withLock({ $0 }), let status = exited.withLock({ $0 }) else { return }
            finished.withLock { continuation in
                continuation?.resume(returning: status)
                continuation = nil
            }
        }
        let status: Int32 = await withCheckedContinuation { continuation in
            finished.withLock { $0 = continuation }
            output.fileHandleForReading.readabilityHandler = { handle in
                let chunk = handle.availableData
                if chunk.isEmpty {
                    handle.readabilityHandler = nil
                    lines.finish()
                    drained.withLock { $0 = true }
                    finishIfDone()
                } else {
                    lines.append(chunk)
                }
            }
            process.terminationHandler = { process in
                exited.withLock { $0 = process.terminationStatus }
                finishIfDone()
            }
            do {
                try process.run()
            } catch {
                lines.append(Data("cannot start /bin/sh: \(error)\n".utf8))
                lines.finish()
                output.fileHandleForReading.readabilityHandler = nil
                finished.withLock { continuation in
                    continuation?.resume(returning: 127)
                    continuation = nil
                }
            }
            // Our copy of the write end must close, or the read end never sees end of file.
            try? output.fileHandleForWriting.close()
        }
        try? logHandle.close()
        return Outcome(status: status, tail: lines.tail)
    }
}

/// Splits a command's output into lines, echoing each with a prefix and writing it to the log.
private final class LineCollector: Sendable {
    private struct State {
        var pending = Data()
        var tail: [String] = []
    }

    private let state = Mutex(State())
    private let prefix: String
    private let log: FileHandle
    private let echo: @Sendable (String) -> Void
    static let tailLength = 20

    init(prefix: String, log: FileHandle, echo: @escaping @Sendable (String) -> Void) {
        self.prefix = prefix
        self.log = log
        self.echo = echo
    }

    func append(_ chunk: Data) {
        log.write(chunk)
        let complete: [String] = state.withLock { state in
            state.pending.append(chunk)
            var lines: [String] = []
            while let newline = state.pending.firstIndex(of: UInt8(ascii: "\n")) {
                lines.append(String(decoding: state.pending[state.pending.startIndex..<newline], as: UTF8.self))
                state.pending.removeSubrange(state.pending.startIndex...newline)
            }
            remember(lines, in: &state)
            return lines
        }
        for line in complete { echo("[\(prefix)] \(line)") }
    }

    func finish() {
        let last: String? = state.withLock { state in
            guard !state.pending.isEmpty else { return nil }
            let line = String(decoding: state.pending, as: UTF8.self)
            state.pending.removeAll()
            remember([line], in: &state)
            return line
        }
        if let last { echo("[\(prefix)] \(last)") }
    }

    var tail: [String] { state.withLock { $0.tail } }

    private func remember(_ lines: [String], in state: inout State) {
        state.tail.append(contentsOf: lines)
        if state.tail.count > Self.tailLength { state.tail.removeFirst(state.tail.count - Self.tailLength) }
    }
}
