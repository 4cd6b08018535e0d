import Foundation
import ServalEngine
import ServalServing
import ServalTensor
import Testing
import ServalWire

/// Dynamic batching, driven with explicit synchronisation: an executor that reports each batch it starts
/// and holds it until the test releases it. No test waits on wall-clock time.
struct DynamicBatcherTests {
    static let model = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/scale_any_shape.onnx")

    /// Records the rows of every batch; optionally blocks each batch until `release()` is called.
    actor GatedExecutor: BatchExecutor {
        private(set) var batches: [[Int]] = []
        private var gateOpen: Bool
        private var waiting: [CheckedContinuation<Void, Never>] = []
        private var started: [CheckedContinuation<Void, Never>] = []

        init(open: Bool) { gateOpen = open }

        func execute(_ feeds: [String: Value]) async throws -> [String: Value] {
            let x = try #require(feeds["x"]?.tensor)
            batches.append(x.shape)
            started.forEach { $0.resume() }
            started.removeAll()
            if !gateOpen { await withCheckedContinuation { waiting.append($0) } }
            let values = x.scalars(as: Float.self).map { $0 * 2 }
            return ["y": .tensor(Tensor(shape: x.shape, scalars: values))]
        }

        /// Returns once `count` batches have started.
        func waitForBatches(_ count: Int) async {
            while batches.count < count { await withCheckedContinuation { started.append($0) } }
        }

        func release() {
            gateOpen = true
            waiting.forEach { $0.resume() }
            waiting.removeAll()
        }
    }

    static func serve(_ config: ModelConfig, executor: GatedExecutor) throws -> ServedModel {
        var config = config
        config.warmup = false
        return try ServedModel(name: "scale", version: 1, file: model, config: config, executor: executor)
    }

    static func request(rows: Int, width: Int = 3, start: Float = 0, timeoutMicros: Int64? = nil) -> InferenceRequest {
        let values = (0..<(rows * width)).map { start + Float($0) }
        var request = InferenceRequest(inputs: ["x": Tensor(shape: [rows, width], scalars: values)])
        if let timeoutMicros { request.parameters["timeout"] = .int(timeoutMicros) }
        return request
    }

    /// A batching model (max_batch_size 8, plus `configure`) whose only instance is busy with a held 1-row request.
    static func busyModel(
        _ configure: (inout ModelConfig) -> Void = { _ in }
    ) async throws -> (served: ServedModel, executor: GatedExecutor, running: Task<InferenceResponse, Error>) {
        var config = ModelConfig()
        config.maxBatchSize = 8
        configure(&config)
        let executor = GatedExecutor(open: false)
        let served = try serve(config, executor: executor)
        let running = Task { try await served.infer(request(rows: 1)) }
        await executor.waitForBatches(1)
        return (served, executor, running)
    }

    /// Returns once `count` requests are queued or running.
    static func waitForPending(_ served: ServedModel, _ count: Int) async {
        while await served.pendingRequests < count { await Task.yield() }
    }

    static func values(_ response: InferenceResponse) throws -> [Float] {
        try #require(response.outputs.first?.value.tensor).scalars(as: Float.self)
    }

    /// Async jobs run at background priority: a background request heads a batch only when no normal request waits,
    /// whatever the order they arrived in.
    @Test func aNormalRequestRunsBeforeABackgroundOneQueuedEarlier() async throws {
        let (served, executor, running) = try await Self.busyModel()
        // Different widths never share a batch, so the order of batches is the order of heads.
        let background = Task { try await served.infer(Self.request(rows: 1, width: 4), priority: .background) }
        await Self.waitForPending(served, 2)
        let normal = Task { try await served.infer(Self.request(rows: 1, width: 5)) }
        await Self.waitForPending(served, 3)
        await executor.release()
        _ = try await (running.value, background.value, normal.value)
        #expect(await executor.batches == [[1, 3], [1, 5], [1, 4]])
    }

    /// Background rows fill what a normal batch leaves free, and each caller still gets its own rows back.
    @Test func backgroundRowsFillANormalBatchAfterTheNormalRows() async throws {
        let (served, executor, running) = try await Self.busyModel()
        let background = Task { try await served.infer(Self.request(rows: 2, start: 100), priority: .background) }
        await Self.waitForPending(served, 2)
        let normal = Task { try await served.infer(Self.request(rows: 3, start: 0)) }
        await Self.waitForPending(served, 3)
        await executor.release()
        let (_, backgroundAnswer, normalAnswer) = try await (running.value, background.value, normal.value)
        #expect(await executor.batches == [[1, 3], [5, 3]])
        #expect(try Self.values(normalAnswer) == (0..<9).map { Float($0) * 2 })
        #expect(try Self.values(backgroundAnswer) == (0..<6).map { (100 + Float($0)) * 2 })
    }

    @Test func formsOneBatchAtPreferredSizeAndSplitsRowsBack() async throws {
        var config = ModelConfig()
        config.maxBatchSize = 8
        // A long delay: the batch leaves only when the preferred size (5 rows) is reached.
        config.dynamicBatching = .init(maxQueueDelayUs: 60_000_000, preferredBatchSizes: [5])
        let executor = GatedExecutor(open: true)
        let served = try Self.serve(config, executor: executor)
        async let first = served.infer(Self.request(rows: 2, start: 0))
        async let second = served.infer(Self.request(rows: 3, start: 100))
        let (a, b) = try await (first, second)
        #expect(await executor.batches == [[5, 3]])
        #expect(try Self.values(a) == (0..<6).map { Float($0) * 2 })
        #expect(try Self.values(b) == (0..<9).map { (100 + Float($0)) * 2 })
        let stats = served.statistics.snapshot
        #expect(stats.executionCount == 1)
        #expect(stats.inferenceCount == 5)
        #expect(stats.success.count == 2)
        #expect(stats.batches.keys.sorted() == [5])
    }

    @Test func requestsQueuedBehindABusyInstanceRunTogether() async throws {
        let (served, executor, first) = try await Self.busyModel()
        let second = Task { try await served.infer(Self.request(rows: 2)) }
        let third = Task { try await served.infer(Self.request(rows: 3)) }
        await Self.waitForPending(served, 3)
        await executor.release()
        _ = try await (first.value, second.value, third.value)
        #expect(await executor.batches == [[1, 3], [5, 3]])
    }

    @Test func neverMergesRequestsWithDifferentNonBatchDimensions() async throws {
        let (served, executor, first) = try await Self.busyModel()
        let narrow = Task { try await served.infer(Self.request(rows: 2, width: 3)) }
        let wide = Task { try await served.infer(Self.request(rows: 2, width: 4)) }
        await Self.waitForPending(served, 3)
        await executor.release()
        let widths = try await [narrow.value, wide.value].map { try #require($0.outputs.first?.value.tensor).shape }
        _ = try await first.value
        #expect(widths == [[2, 3], [2, 4]])
        #expect(await executor.batches.count == 3)
    }

    @Test func fullQueueRefusesWith503Kind() async throws {
        let (served, executor, running) = try await Self.busyModel { $0.dynamicBatching = .init(maxQueueSize: 1) }
        let queued = Task { try await served.infer(Self.request(rows: 1, width: 5)) }
        await Self.waitForPending(served, 2)
        await #expect { try await served.infer(Self.request(rows: 1)) } throws: { error in
            (error as? ServingError)?.kind == .resourceExhausted && "\(error)".contains("model 'scale' queue is full")
        }
        await executor.release()
        _ = try await (running.value, queued.value)
        #expect(served.statistics.snapshot.failures["rejected"] == 1)
    }

    @Test func requestTimeoutInQueueIsDeadlineExceeded() async throws {
        let (served, executor, running) = try await Self.busyModel()
        // Times out while the only instance is still busy: the queue does not wait for a free instance to notice.
        await #expect { try await served.infer(Self.request(rows: 1, width: 7, timeoutMicros: 1000)) } throws: { error in
            (error as? ServingError)?.kind == .deadlineExceeded
        }
        #expect(served.statistics.snapshot.failures["timeout"] == 1)
        #expect(await served.pendingRequests == 1)
        await executor.release()
        _ = try await running.value
    }

    @Test func cancelledCallerLeavesTheQueue() async throws {
        let (served, executor, running) = try await Self.busyModel()
        let queued = Task { try await served.infer(Self.request(rows: 1, width: 7)) }
        await Self.waitForPending(served, 2)
        queued.cancel()
        await #expect { try await queued.value } throws: { error in (error as? ServingError)?.kind == .cancelled }
        #expect(await served.pendingRequests == 1)
        #expect(served.statistics.snapshot.failures["cancelled"] == 1)
        await executor.release()
        _ = try await running.value
        #expect(await executor.batches.count == 1)  // the cancelled request never ran
    }

    @Test func rejectsBatchLargerThanMaxBatchSize() async throws {
        var config = ModelConfig()
        config.maxBatchSize = 4
        let served = try Self.serve(config, executor: GatedExecutor(open: true))
        await #expect { try await served.infer(Self.request(rows: 5)) } throws: { error in
            (error as? ServingError)?.kind == .invalidArgument && "\(error)".contains("exceeds max_batch_size 4")
        }
    }

    @Test func modelsWithoutVariableBatchDimensionCannotBatch() throws {
        var config = ModelConfig()
        config.maxBatchSize = 4
        let fixed = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/scale_fixed_batch.onnx")
        #expect { try ServedModel(name: "fixed", version: 1, file: fixed, config: config) } throws: { error in
            "\(error)".contains("max_batch_size 4 needs every input and output to have a variable first dimension")
        }
        // Without max_batch_size the same model loads, unbatched.
        let unbatched = try ServedModel(name: "fixed", version: 1, file: fixed, config: ModelConfig())
        #expect(unbatched.config.maxBatchSize == 0)
    }
}
