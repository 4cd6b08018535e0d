import Foundation
import ServalTensor
import ServalWire

/// Runs one (merged) batch. `ServedModel` runs its session; tests inject executors they can hold and release.
public protocol BatchExecutor: Sendable {
    func execute(_ feeds: [String: Value]) async throws -> [String: Value]
}

/// Where one request's time went inside the batcher: queued from `enqueued` to `started`, its batch (of `rows`
/// rows from `requests` requests) computed from `computeStarted` to `computeEnded`. Traces are built from it.
public struct BatchTiming: Sendable {
    public let enqueued: ContinuousClock.Instant
    public let started: ContinuousClock.Instant
    public let computeStarted: ContinuousClock.Instant
    public let computeEnded: ContinuousClock.Instant
    public let rows: Int
    public let requests: Int
}

/// A request's outputs and how it was run.
struct BatchAnswer: Sendable {
    let outputs: [String: Value]
    let timing: BatchTiming
}

/// Triton-style dynamic batching for one model version: requests queue, batches form by *rows* (dimension 0)
/// up to `max_batch_size`, are dispatched to a free instance when full, at a preferred size, or once the oldest
/// request has waited `max_queue_delay_us` (default 0: dispatch whatever is queued the moment an instance is
/// free, so batches grow only under load). Requests whose non-batch dimensions differ are never merged.
actor DynamicBatcher {
    struct Settings: Sendable {
        /// Rows per batch; 0 runs every request on its own.
        var maxBatchSize: Int
        var preferredBatchSizes: [Int]
        var maxQueueDelay: Duration
        /// Waiting requests allowed before new ones are refused (0 = unbounded).
        var maxQueueSize: Int
        var defaultTimeout: Duration?
        var instances: Int
    }

    private final class Pending: Sendable {
        let id: Int
        let inputs: [String: Tensor]
        let rows: Int
        let signature: String
        let enqueued: ContinuousClock.Instant
        let deadline: ContinuousClock.Instant?
        let priority: RequestPriority
        let continuation: CheckedContinuation<BatchAnswer, Error>

        init(id: Int, inputs: [String: Tensor], rows: Int, signature: String, enqueued: ContinuousClock.Instant,
             deadline: ContinuousClock.Instant?, priority: RequestPriority, continuation: CheckedContinuation<BatchAnswer, Error>) {
            self.id = id
            self.priority = priority
            self.inputs = inputs
            self.rows = rows
            self.signature = signature
            self.enqueued = enqueued
            self.deadline = deadline
            self.continuation = continuation
        }
    }

    let model: String
    let settings: Settings
    let executor: any BatchExecutor
    let statistics: ModelStatistics
    private var queue: [Pending] = []
    private var busy = 0
    /// When the pending wake-up fires (nil: none armed). An earlier need replaces a later one.
    private var timerInstant: ContinuousClock.Instant?
    private var uniqueSignature = 0
    private var nextID = 0

    init(model: String, settings: Settings, executor: any BatchExecutor, statistics: ModelStatistics) {
        self.model = model
        self.settings = settings
        self.executor = executor
        self.statistics = statistics
    }

    /// Requests waiting plus requests running.
    var pending: Int { queue.count + busy }

    /// Queues a validated request and returns its outputs once its batch has run. A `.background` request (an
    /// async job) heads a batch only when no normal request is waiting, and fills rows a normal batch leaves free.
    func submit(_ inputs: [String: Tensor], timeout: Duration?, priority: RequestPriority = .normal) async throws -> BatchAnswer {
        let now = ContinuousClock.now
        if settings.maxQueueSize > 0 && queue.count >= settings.maxQueueSize {
            statistics.recordRequest(success: false, totalNs: 0, queueNs: 0, failure: "rejected")
            throw ServingError(.resourceExhausted, "model '\(model)' queue is full (max_queue_size \(settings.maxQueueSize)); retry later")
        }
        let rows: Int
        let signature: String
        if settings.maxBatchSize > 0 {
            rows = inputs.values.first?.shape.first ?? 1
            guard rows <= settings.maxBatchSize else {
                throw ServingError.invalidArgument(
                    "batch of \(rows) rows exceeds max_batch_size \(settings.maxBatchSize) of model '\(model)'; for bulk work submit it as an async job "
                        + "(POST /v2/models/\(model)/jobs, split into batches for you) or score a file with `serval batch`")
            }
            signature = inputs.keys.sorted().map { name in
                let tensor = inputs[name]!
                return "\(name):\(tensor.dtype):\(tensor.shape.dropFirst().map(String.init).joined(separator: "x"))"
            }.joined(separator: ";")
        } else {
            rows = 1
            uniqueSignature += 1
            signature = "#\(uniqueSignature)"
        }
        let deadline = (timeout ?? settings.defaultTimeout).map { now + $0 }
        nextID += 1
        let id = nextID
        // A caller that goes away (gRPC deadline, cancelled task) takes its request out of the queue; once its
        // batch is running it finishes, and the answer is dropped.
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                guard !Task.isCancelled else {
                    continuation.resume(throwing: ServingError(.cancelled, "request to model '\(model)' was cancelled"))
                    return
                }
                queue.append(Pending(id: id, inputs: inputs, rows: rows, signature: signature, enqueued: now, deadline: deadline,
                                     priority: priority, continuation: continuation))
                schedule()
                statistics.setPending(pending)
            }
        } onCancel: {
            Task { await self.cancel(id) }
        }
    }

    private func cancel(_ id: Int) {
        guard let index = queue.firstIndex(where: { $0.id == id }) else { return }
        let request = queue.remove(at: index)
        statistics.recordRequest(success: false, totalNs: nanoseconds(ContinuousClock.now - request.enqueued), queueNs: 0, failure: "cancelled")
        request.continuation.resume(throwing: ServingError(.cancelled, "request to model '\(model)' was cancelled while queued"))
        statistics.setPending(pending)
    }

    /// Forms and dispatches batches while instances are free.
    private func schedule() {
        let now = ContinuousClock.now
        failExpired(now)
        while busy < settings.instances, let head = queue.first(where: { $0.priority == .normal }) ?? queue.first {
            var picked: [Int] = []
            var rows = 0
            // Normal requests first, then background ones into the rows left.
            passes: for pass in 0..<2 {
                let priority: RequestPriority = pass == 0 ? .normal : .background
                for (index, candidate) in queue.enumerated() where candidate.priority == priority && candidate.signature == head.signature {
                    if settings.maxBatchSize == 0 && !picked.isEmpty { break passes }
                    if rows + candidate.rows > max(settings.maxBatchSize, 1) && !picked.isEmpty { continue }
                    picked.append(index)
                    rows += candidate.rows
                    if rows >= settings.maxBatchSize { break passes }
                }
            }
            picked.sort()
            let full = settings.maxBatchSize == 0 || rows >= settings.maxBatchSize
            let preferred = settings.preferredBatchSizes.contains(rows) || (settings.preferredBatchSizes.max().map { rows >= $0 } ?? false)
            let waited = now - head.enqueued >= settings.maxQueueDelay
            guard full || preferred || waited else {
                armTimer(at: head.enqueued + settings.maxQueueDelay)
                break
            }
            let batch = picked.map { queue[$0] }
            for index in picked.reversed() { queue.remove(at: index) }
            dispatch(batch, rows: rows, now: now)
        }
        // Queued requests time out on time even while every instance is busy.
        if let earliest = queue.lazy.compactMap(\.deadline).min() { armTimer(at: earliest) }
    }

    private func failExpired(_ now: ContinuousClock.Instant) {
        queue.removeAll { request in
            guard let deadline = request.deadline, deadline <= now else { return false }
            statistics.recordRequest(success: false, totalNs: nanoseconds(now - request.enqueued), queueNs: 0, failure: "timeout")
            request.continuation.resume(throwing: ServingError(.deadlineExceeded, "request to model '\(model)' timed out waiting in the queue"))
            return true
        }
    }

    private func armTimer(at instant: ContinuousClock.Instant) {
        if let armed = timerInstant, armed <= instant { return }
        timerInstant = instant
        Task {
            try? await Task.sleep(until: instant, clock: .continuous)
            self.timerFired(instant)
        }
    }

    private func timerFired(_ instant: ContinuousClock.Instant) {
        if timerInstant == instant { timerInstant = nil }
        schedule()
        statistics.setPending(pending)
    }

    private func dispatch(_ batch: [Pending], rows: Int, now: ContinuousClock.Instant) {
        busy += 1
        let executor = self.executor, statistics = self.statistics, model = self.model
        Task.detached {
            let started = ContinuousClock.now
            let outcome: Result<[String: Value], Error>
            let merged = Self.merge(batch)
            let merging = ContinuousClock.now
            do { outcome = .success(try await executor.execute(merged)) } catch { outcome = .failure(error) }
            let computed = ContinuousClock.now
            switch outcome {
            case .success(let results):
                let parts = Self.split(results, batch: batch, rows: rows, model: model)
                let finished = ContinuousClock.now
                statistics.recordBatch(size: rows, requests: batch.count, inputNs: nanoseconds(merging - started),
                                       inferNs: nanoseconds(computed - merging), outputNs: nanoseconds(finished - computed),
                                       nowMs: UInt64(Date().timeIntervalSince1970 * 1000))
                for (request, part) in zip(batch, parts) {
                    statistics.recordRequest(success: part != nil, totalNs: nanoseconds(finished - request.enqueued),
                                             queueNs: nanoseconds(started - request.enqueued))
                    let timing = BatchTiming(enqueued: request.enqueued, started: started, computeStarted: merging, computeEnded: computed,
                                             rows: rows, requests: batch.count)
                    if let part { request.continuation.resume(returning: BatchAnswer(outputs: part, timing: timing)) } else {
                        request.continuation.resume(throwing: ServingError(.internalError, "model '\(model)' returned outputs that do not split by rows"))
                    }
                }
            case .failure(let error):
                for request in batch {
                    statistics.recordRequest(success: false, totalNs: nanoseconds(computed - request.enqueued), queueNs: 0)
                    request.continuation.resume(throwing: error)
                }
            }
            await self.finished()
        }
    }

    private func finished() {
        busy -= 1
        schedule()
        statistics.setPending(pending)
    }

    private static func merge(_ batch: [Pending]) -> [String: Value] {
        guard batch.count > 1 else { return batch[0].inputs.mapValues { .tensor($0) } }
        var merged: [String: Value] = [:]
        for name in batch[0].inputs.keys {
            merged[name] = .tensor(Tensor.concatenatingRows(batch.map { $0.inputs[name]! }))
        }
        return merged
    }

    /// Each request's rows of every output; nil for a request when an output is not batch-major.
    private static func split(_ results: [String: Value], batch: [Pending], rows: Int, model: String) -> [[String: Value]?] {
        guard batch.count > 1 else { return [results] }
        var parts = [[String: Value]?](repeating: [:], count: batch.count)
        for (name, value) in results {
            var start = 0
            for (index, request) in batch.enumerated() {
                let range = start..<(start + request.rows)
                start += request.rows
                switch value {
                case .tensor(let tensor) where tensor.shape.first == rows: parts[index]?[name] = .tensor(tensor.rows(range))
                case .mapSequence(let maps) where maps.count == rows: parts[index]?[name] = .mapSequence(maps.rows(range))
                default: parts[index] = nil
                }
            }
        }
        return parts
    }
}

func nanoseconds(_ duration: Duration) -> UInt64 {
    let (seconds, attoseconds) = duration.components
    return UInt64(max(0, seconds)) * 1_000_000_000 + UInt64(max(0, attoseconds) / 1_000_000_000)
}
