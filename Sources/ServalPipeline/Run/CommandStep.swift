import Foundation
import Synchronization

/// Runs one external command of a pipeline (`/bin/sh -c`, in the pipeline's folder, with extra environment
/// variables). Its stdout and stderr are streamed line by line, prefixed with the step's name, to `echo` and kept
/// whole in a log file; the last lines come back for error messages. Waiting does not hold a thread. Each command
/// runs in a process group of its own (Foundation's `Process` makes the child a group leader), so `terminateAll`
/// stops it with everything it started.
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
        // A pipe of our own, close-on-exec, whose write end the parent closes exactly once after the spawn (the child
        // gets it as stdout and stderr). Foundation's Pipe closes its write end in the parent too, and a second close
        // of that number under concurrent spawns can close another command's pipe, leaving a read with no end.
        var ends: [Int32] = [0, 0]
        guard pipe(&ends) == 0 else { throw PipelineError("cannot create a pipe for the command's output: errno \(errno)") }
        let (reader, writer) = (ends[0], ends[1])
        _ = fcntl(reader, F_SETFD, FD_CLOEXEC)
        _ = fcntl(writer, F_SETFD, FD_CLOEXEC)
        process.standardOutput = FileHandle(fileDescriptor: writer, closeOnDealloc: false)
        process.standardError = FileHandle(fileDescriptor: writer, closeOnDealloc: false)
        process.standardInput = FileHandle.nullDevice
        let lines = LineCollector(prefix: prefix, log: logHandle, echo: echo)
        let finished = Mutex<CheckedContinuation<Int32, Never>?>(nil)
        let drained = Mutex<Bool>(false)
        let exited = Mutex<Int32?>(nil)
        // The process may exit before its output is drained (a background child still writing): finish only once
        // both have happened.
        @Sendable func finishIfDone() {
            guard drained.withLock({ $0 }), let status = exited.withLock({ $0 }) else { return }
            finished.withLock { continuation in
                continuation?.resume(returning: status)
                continuation = nil
            }
        }
        let status: Int32 = await withCheckedContinuation { continuation in
            finished.withLock { $0 = continuation }
            process.terminationHandler = { process in
                Self.running.withLock { _ = $0.removeValue(forKey: process.processIdentifier) }
                exited.withLock { $0 = process.terminationStatus }
                finishIfDone()
            }
            do {
                try process.run()
                Self.running.withLock { [log] in $0[process.processIdentifier] = log }
            } catch {
                lines.append(Data("cannot start /bin/sh: \(error)\n".utf8))
                exited.withLock { $0 = 127 }
            }
            close(writer)
            // A thread of its own blocks in read() until every writer is gone (the pool's threads never block).
            let thread = Thread {
                var buffer = [UInt8](repeating: 0, count: 65_536)
                while true {
                    let count = buffer.withUnsafeMutableBytes { read(reader, $0.baseAddress, $0.count) }
                    if count > 0 {
                        lines.append(Data(buffer[0..<count]))
                    } else if count < 0 && errno == EINTR {
                        continue
                    } else {
                        break
                    }
                }
                close(reader)
                lines.finish()
                drained.withLock { $0 = true }
                finishIfDone()
            }
            thread.start()
        }
        try? logHandle.close()
        return Outcome(status: status, tail: lines.tail)
    }

    /// Process-group leaders of the commands running now, with their log files.
    static let running = Mutex<[Int32: URL]>([:])

    /// Kills every running command's process group (the run is being stopped), or only the one writing `log`.
    /// SIGKILL, because a caller that handles SIGTERM itself ignores it, and its children inherit that.
    public static func terminateAll(logging log: URL? = nil) {
        for (leader, file) in running.withLock({ $0 }) where log == nil || file == log { kill(-leader, SIGKILL) }
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
