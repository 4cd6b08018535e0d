import Foundation
import ServalWire
#if canImport(Glibc)
import Glibc
#endif

/// A closed-loop load generator inside the process: `concurrency` clients each send the next request as soon as
/// the last one was answered, straight into a loaded version's batcher, for a fixed time. What `serval tune`
/// measures each configuration with.
public enum ClosedLoopLoad {
    public struct Outcome: Sendable {
        public let requests: Int
        public let failures: Int
        public let seconds: Double
        /// Sorted latencies of the answered requests, in milliseconds.
        public let latencies: [Double]
        /// User plus system CPU seconds the process used meanwhile.
        public let cpuSeconds: Double

        public var throughput: Double { seconds > 0 ? Double(requests) / seconds : 0 }

        /// The `fraction` quantile (nearest rank) of the latencies.
        public func percentile(_ fraction: Double) -> Double {
            guard !latencies.isEmpty else { return 0 }
            let rank = Int((fraction * Double(latencies.count)).rounded(.up)) - 1
            return latencies[min(max(rank, 0), latencies.count - 1)]
        }
    }

    /// Drives `model` with `request` from `concurrency` clients for `seconds` (after `warmup` requests per client).
    public static func run(_ model: ServedModel, request: InferenceRequest, concurrency: Int, seconds: Double, warmup: Int = 20) async -> Outcome {
        let clients = max(1, concurrency)
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<clients { group.addTask { for _ in 0..<warmup { _ = try? await model.infer(request) } } }
        }
        let clock = ContinuousClock()
        let cpuBefore = processCPUSeconds()
        let started = clock.now
        let deadline = started + .nanoseconds(Int64(seconds * 1e9))
        let perClient = await withTaskGroup(of: (latencies: [Double], failures: Int).self) { group in
            for _ in 0..<clients {
                group.addTask {
                    var latencies: [Double] = []
                    latencies.reserveCapacity(4096)
                    var failures = 0
                    while clock.now < deadline {
                        let sent = clock.now
                        do {
                            _ = try await model.infer(request)
                            latencies.append((clock.now - sent) / .milliseconds(1))
                        } catch {
                            failures += 1
                        }
                    }
                    return (latencies, failures)
                }
            }
            var all: [(latencies: [Double], failures: Int)] = []
            for await client in group { all.append(client) }
            return all
        }
        let elapsed = (clock.now - started) / .seconds(1)
        let latencies = perClient.flatMap(\.latencies).sorted()
        return Outcome(
            requests: latencies.count, failures: perClient.reduce(0) { $0 + $1.failures }, seconds: elapsed, latencies: latencies,
            cpuSeconds: processCPUSeconds() - cpuBefore)
    }

    /// User plus system CPU time of this process so far.
    public static func processCPUSeconds() -> Double {
        var usage = rusage()
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
        func seconds(_ time: timeval) -> Double { Double(time.tv_sec) + Double(time.tv_usec) / 1e6 }
        return seconds(usage.ru_utime) + seconds(usage.ru_stime)
    }
}
