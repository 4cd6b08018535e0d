import Foundation
import GRPCCore
@testable import ServalGRPC
import ServalServing
import ServalTestSupport
import Testing

/// Every RPC of `inference.GRPCInferenceService` and `grpc.health.v1.Health` against a live server.
@Suite(.serialized) struct InferenceServiceTests {
    @Test func healthAndServerMetadata() async throws {
        try await GRPCTestServer.with { server in
            #expect(try await server.inference.serverLive(.init()).live)
            #expect(try await server.inference.serverReady(.init()).ready)
            let metadata = try await server.inference.serverMetadata(.init())
            #expect(metadata.name == "serval")
            #expect(metadata.extensions.contains("model_repository"))
            #expect(try await server.health.check(.with { $0.service = "" }).status == .serving)
            #expect(try await server.health.check(.with { $0.service = "mlp" }).status == .serving)
            let unknown = await GRPCTestServer.status { _ = try await server.health.check(.with { $0.service = "nope" }) }
            #expect(unknown?.code == .notFound)

            // Draining: readiness and health turn false, liveness stays.
            server.state.beginDraining()
            #expect(try await server.inference.serverReady(.init()).ready == false)
            #expect(try await server.inference.modelReady(.with { $0.name = "mlp" }).ready == false)
            #expect(try await server.health.check(.init()).status == .notServing)
            #expect(try await server.inference.serverLive(.init()).live)
        }
    }

    @Test func modelMetadataAndReadiness() async throws {
        try await GRPCTestServer.with { server in
            let metadata = try await server.inference.modelMetadata(.with { $0.name = "mlp" })
            #expect(metadata.name == "mlp")
            #expect(metadata.versions == ["1"])
            #expect(metadata.platform == "onnx_onnxv1")
            #expect(metadata.inputs.map(\.name) == ["input"])
            #expect(metadata.inputs.first?.datatype == "FP32")
            #expect(metadata.inputs.first?.shape == [-1, 64])
            #expect(metadata.outputs.first?.shape == [-1, 10])
            #expect(try await server.inference.modelReady(.with { $0.name = "mlp"; $0.version = "1" }).ready)

            let unknownModel = await GRPCTestServer.status { _ = try await server.inference.modelMetadata(.with { $0.name = "nope" }) }
            #expect(unknownModel?.code == .notFound)
            #expect(unknownModel?.message.contains("nope") == true)
            let unknownVersion = await GRPCTestServer.status { _ = try await server.inference.modelReady(.with { $0.name = "mlp"; $0.version = "7" }) }
            #expect(unknownVersion?.code == .notFound)
            let noName = await GRPCTestServer.status { _ = try await server.inference.modelMetadata(.init()) }
            #expect(noName?.code == .invalidArgument)
        }
    }

    @Test func typedAndRawContentsGiveTheSameAnswer() async throws {
        try await GRPCTestServer.with { server in
            let typed = try await server.inference.modelInfer(Requests.mlp(rows: 3, id: "req-7"))
            #expect(typed.modelName == "mlp")
            #expect(typed.modelVersion == "1")
            #expect(typed.id == "req-7")
            #expect(typed.outputs.map(\.name) == ["probabilities"])
            #expect(typed.outputs.first?.datatype == "FP32")
            #expect(typed.outputs.first?.shape == [3, 10])
            #expect(typed.rawOutputContents.isEmpty)
            let typedValues = try #require(typed.outputs.first?.contents.fp32Contents)
            #expect(typedValues.count == 30)

            let raw = try await server.inference.modelInfer(Requests.raw(Requests.mlp(rows: 3, id: "req-8")))
            #expect(raw.id == "req-8")
            #expect(raw.outputs.first?.hasContents == false)
            #expect(raw.rawOutputContents.count == 1)
            let rawValues = raw.rawOutputContents[0].withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
            #expect(rawValues.map(\.bitPattern) == typedValues.map(\.bitPattern))
        }
    }

    @Test func requestedOutputsSelectAndOrder() async throws {
        try await GRPCTestServer.with { server in
            let all = try await server.inference.modelInfer(Requests.iris(rows: 2))
            #expect(all.outputs.map(\.name) == ["label", "probabilities"])
            var request = Requests.iris(rows: 2)
            request.outputs = [.with { $0.name = "probabilities" }]
            let one = try await server.inference.modelInfer(request)
            #expect(one.outputs.map(\.name) == ["probabilities"])
            #expect(one.outputs[0].contents.fp32Contents == all.outputs[1].contents.fp32Contents)
            request.outputs = [.with { $0.name = "nope" }]
            let unknown = await GRPCTestServer.status { _ = try await server.inference.modelInfer(request) }
            #expect(unknown?.code == .invalidArgument)
            #expect(unknown?.message.contains("'nope'") == true)
        }
    }

    /// Raw contents for all thirteen datatypes (FP16 has no typed field) through the identity model.
    @Test func everyDatatypeRoundTripsAsRawContents() async throws {
        let payloads: [(String, Data)] = [
            ("BOOL", Data([1, 0, 0, 1])), ("UINT8", Data([0, 1, 254, 255])), ("UINT16", bytes([UInt16](arrayLiteral: 0, 1, 65534, 65535))),
            ("UINT32", bytes([UInt32](arrayLiteral: 0, 7, .max - 1, .max))), ("UINT64", bytes([UInt64](arrayLiteral: 0, 9, .max - 1, .max))),
            ("INT8", bytes([Int8](arrayLiteral: -128, -1, 0, 127))), ("INT16", bytes([Int16](arrayLiteral: -32768, -1, 0, 32767))),
            ("INT32", bytes([Int32](arrayLiteral: .min, -1, 0, .max))), ("INT64", bytes([Int64](arrayLiteral: .min, -1, 0, .max))),
            ("FP16", bytes([Float16](arrayLiteral: -1.5, 0, 0.25, 65504))), ("FP32", bytes([Float](arrayLiteral: -1.5, 0, .pi, 3.4e38))),
            ("FP64", bytes([Double](arrayLiteral: -1.5, 0, .pi, 1e300))), ("BYTES", lengthPrefixed(["a", "", "héllo", "z"])),
        ]
        try await GRPCTestServer.with { server in
            var request = Inference_ModelInferRequest()
            request.modelName = "echo"
            for (datatype, payload) in payloads {
                request.inputs.append(Requests.input("x_\(datatype.lowercased())", datatype, [2, 2]))
                request.rawInputContents.append(payload)
            }
            let response = try await server.inference.modelInfer(request)
            #expect(response.outputs.map(\.name) == payloads.map { "y_\($0.0.lowercased())" })
            #expect(response.outputs.map(\.datatype) == payloads.map(\.0))
            #expect(response.outputs.allSatisfy { $0.shape == [2, 2] })
            #expect(response.rawOutputContents == payloads.map(\.1))
        }
    }

    @Test func invalidRequestsNameTheInput() async throws {
        try await GRPCTestServer.with { server in
            func expectInvalid(_ request: Inference_ModelInferRequest, mentions: String...) async {
                let failure = await GRPCTestServer.status { _ = try await server.inference.modelInfer(request) }
                #expect(failure?.code == .invalidArgument)
                for text in mentions { #expect(failure?.message.contains(text) == true, "\(failure?.message ?? "") should mention \(text)") }
            }
            var wrongType = Requests.mlp()
            wrongType.inputs[0].datatype = "FP64"
            wrongType.inputs[0].contents = .with { $0.fp64Contents = Array(repeating: 0, count: 128) }
            await expectInvalid(wrongType, mentions: "'input'", "FP64", "FP32")

            var wrongShape = Requests.mlp()
            wrongShape.inputs[0].shape = [4, 32]
            await expectInvalid(wrongShape, mentions: "'input'", "[4, 32]")

            var shortContents = Requests.mlp()
            shortContents.inputs[0].contents.fp32Contents.removeLast()
            await expectInvalid(shortContents, mentions: "'input'", "fp32_contents", "127")

            var wrongField = Requests.mlp()
            wrongField.inputs[0].contents = .with { $0.intContents = Array(repeating: 1, count: 128) }
            await expectInvalid(wrongField, mentions: "'input'", "fp32_contents")

            var missing = Requests.mlp()
            missing.inputs = []
            await expectInvalid(missing, mentions: "missing input 'input'")

            var unexpected = Requests.mlp()
            unexpected.inputs.append(Requests.input("extra", "FP32", [1], fp32: [1]))
            await expectInvalid(unexpected, mentions: "'extra'")

            var rawCount = Requests.raw(Requests.mlp())
            rawCount.rawInputContents.append(Data([1, 2, 3, 4]))
            await expectInvalid(rawCount, mentions: "raw_input_contents", "2 entries", "1 inputs")

            var rawSize = Requests.raw(Requests.mlp())
            rawSize.rawInputContents[0].removeLast(4)
            await expectInvalid(rawSize, mentions: "'input'", "raw_input_contents[0]", "508 bytes", "needs 512")

            var mixed = Requests.raw(Requests.mlp())
            mixed.inputs[0].contents.fp32Contents = [1]
            await expectInvalid(mixed, mentions: "'input'", "typed contents")

            var badType = Requests.mlp()
            badType.inputs[0].datatype = "FLOAT"
            await expectInvalid(badType, mentions: "'input'", "'FLOAT'")
        }
    }

    @Test func brokenModelIsUnavailableAndOthersServe() async throws {
        let repository = try GRPCTestServer.makeRepository(extra: ["broken/1/model.onnx": Data("not a model".utf8)])
        try await GRPCTestServer.with(repository: repository) { server in
            let failure = await GRPCTestServer.status { _ = try await server.inference.modelInfer(.with { $0.modelName = "broken" }) }
            #expect(failure?.code == .unavailable)
            #expect(failure?.message.contains("broken") == true)
            #expect(try await server.inference.serverReady(.init()).ready == false)
            let index = try await server.inference.repositoryIndex(.init())
            let broken = try #require(index.models.first { $0.name == "broken" })
            #expect(broken.state == "UNAVAILABLE")
            #expect(!broken.reason.isEmpty)
            #expect(try await server.inference.repositoryIndex(.with { $0.ready = true }).models.map(\.name) == ["echo", "iris", "mlp"])
            _ = try await server.inference.modelInfer(Requests.mlp())
        }
    }

    @Test func messagesOverTheLimitAreResourceExhaustedAndNameTheFlag() async throws {
        try await GRPCTestServer.with(maxMessageSize: 4096) { server in
            _ = try await server.inference.modelInfer(Requests.raw(Requests.mlp(rows: 2)))
            let failure = await GRPCTestServer.status { _ = try await server.inference.modelInfer(Requests.raw(Requests.mlp(rows: 20))) }
            #expect(failure?.code == .resourceExhausted)
            #expect(failure?.message.contains("--grpc-max-message-size") == true)
            // The connection stays usable.
            #expect(try await server.inference.serverLive(.init()).live)
        }
    }

    @Test func responsesOverTheLimitAreRefusedByTheSerializer() throws {
        let serializer = LimitedSerializer<Inference_ModelInferResponse>(limit: 64)
        let small: [UInt8] = try serializer.serialize(.with { $0.modelName = "mlp" })
        #expect(!small.isEmpty)
        let large = Inference_ModelInferResponse.with { $0.rawOutputContents = [Data(count: 100)] }
        #expect { let _: [UInt8] = try serializer.serialize(large) } throws: { error in
            guard let rpc = error as? RPCError else { return false }
            return rpc.code == .resourceExhausted && rpc.message.contains("--grpc-max-message-size (64 bytes)")
        }
    }

    @Test func fullQueueIsResourceExhaustedAndQueueTimeoutIsDeadlineExceeded() async throws {
        let gate = BatchGate()
        let repository = try GRPCTestServer.makeRepository(configs: ["iris": "max_batch_size: 1\ndynamic_batching:\n  max_queue_size: 1\n"])
        try await GRPCTestServer.with(repository: repository, executorWrapper: { GatedExecutor(inner: $0, gate: gate) }) { server in
            let iris = try await server.manager.resolve("iris", version: nil)
            let held = Task { try await server.inference.modelInfer(Requests.iris()) }
            await gate.waitUntilStarted()
            // Queued behind the held batch, with a 1 ms queue timeout.
            var timed = Requests.iris()
            timed.parameters["timeout"] = .with { $0.int64Param = 1000 }
            let expired = await GRPCTestServer.status { _ = try await server.inference.modelInfer(timed) }
            #expect(expired?.code == .deadlineExceeded)

            let queued = Task { try await server.inference.modelInfer(Requests.iris()) }
            while await iris.pendingRequests < 2 { await Task.yield() }
            let full = await GRPCTestServer.status { _ = try await server.inference.modelInfer(Requests.iris()) }
            #expect(full?.code == .resourceExhausted)
            #expect(full?.message.contains("iris") == true)

            await gate.release()
            #expect(try await held.value.outputs.count == 2)
            #expect(try await queued.value.outputs.count == 2)
        }
    }

    @Test func callPastItsDeadlineLeavesTheQueue() async throws {
        let gate = BatchGate()
        try await GRPCTestServer.with(executorWrapper: { GatedExecutor(inner: $0, gate: gate) }) { server in
            let mlp = try await server.manager.resolve("mlp", version: nil)
            let held = Task { try await server.inference.modelInfer(Requests.mlp(rows: 1)) }
            await gate.waitUntilStarted()
            var options = CallOptions.defaults
            // Long enough that the call is queued before its deadline even on a loaded machine (the test waits for
            // that), short enough that it expires while the gate holds the instance.
            options.timeout = .seconds(2)
            let call = Task {
                await GRPCTestServer.status { _ = try await server.inference.modelInfer(Requests.mlp(rows: 1), options: options) }
            }
            while await mlp.pendingRequests < 2 { await Task.yield() }
            let expired = await call.value
            #expect(expired?.code == .deadlineExceeded)
            // The server drops the queued request instead of running it later for nobody.
            while await mlp.pendingRequests > 1 { await Task.yield() }
            #expect(await mlp.pendingRequests == 1)
            await gate.release()
            _ = try await held.value
            #expect(mlp.statistics.snapshot.failures["cancelled"] == 1)
        }
    }

    @Test func inFlightCallFinishesAfterGracefulShutdownBegins() async throws {
        let gate = BatchGate()
        try await GRPCTestServer.with(executorWrapper: { GatedExecutor(inner: $0, gate: gate) }) { server in
            let inFlight = Task { try await server.inference.modelInfer(Requests.mlp(rows: 1, id: "in-flight")) }
            await gate.waitUntilStarted()
            await server.group.triggerGracefulShutdown()
            while !server.state.isDraining { await Task.yield() }
            await gate.release()
            let answer = try await inFlight.value
            #expect(answer.id == "in-flight")
            #expect(answer.outputs.first?.shape == [1, 10])
        }
    }

    @Test func streamAnswersEveryRequestAndReportsErrorsInBand() async throws {
        try await GRPCTestServer.with { server in
            let unary = try await server.inference.modelInfer(Requests.mlp(rows: 1))
            var bad = Requests.mlp(rows: 1, id: "bad")
            bad.inputs[0].shape = [1, 63]
            let requests = [Requests.mlp(rows: 1, id: "a"), bad, Requests.raw(Requests.mlp(rows: 1, id: "b")), Requests.mlp(rows: 1, id: "c")]
            let answers = try await server.inference.modelStreamInfer { writer in
                for request in requests { try await writer.write(request) }
            } onResponse: { response in
                var answers: [Inference_ModelStreamInferResponse] = []
                for try await answer in response.messages { answers.append(answer) }
                return answers
            }
            #expect(answers.count == 4)
            let byID = Dictionary(answers.filter { $0.errorMessage.isEmpty }.map { ($0.inferResponse.id, $0.inferResponse) }, uniquingKeysWith: { a, _ in a })
            #expect(Set(byID.keys) == ["a", "b", "c"])
            #expect(byID["a"]?.outputs.first?.contents.fp32Contents == unary.outputs.first?.contents.fp32Contents)
            let rawAnswer = try #require(byID["b"]?.rawOutputContents.first)
            #expect(rawAnswer.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) } == unary.outputs.first?.contents.fp32Contents)
            let errors = answers.map(\.errorMessage).filter { !$0.isEmpty }
            #expect(errors.count == 1)
            #expect(errors.first?.contains("[1, 63]") == true)
        }
    }

    @Test func configStatisticsAndRepositoryIndex() async throws {
        try await GRPCTestServer.with { server in
            let config = try await server.inference.modelConfig(.with { $0.name = "mlp" }).config
            #expect(config.name == "mlp")
            #expect(config.maxBatchSize == 64)
            #expect(config.input.map(\.name) == ["input"])
            #expect(config.input.first?.dataType == .typeFp32)
            #expect(config.input.first?.dims == [64])  // batch dimension left out, as in Triton
            #expect(config.output.first?.dims == [10])
            #expect(config.instanceGroup.first?.count == 1)
            #expect(config.versionPolicy.latest.numVersions == 1)

            let before = try await server.inference.modelStatistics(.with { $0.name = "mlp" }).modelStats
            #expect(before.map(\.name) == ["mlp"])
            _ = try await server.inference.modelInfer(Requests.mlp(rows: 3))
            let after = try #require(try await server.inference.modelStatistics(.with { $0.name = "mlp"; $0.version = "1" }).modelStats.first)
            #expect(after.inferenceCount == before[0].inferenceCount + 3)
            #expect(after.inferenceStats.success.count == before[0].inferenceStats.success.count + 1)
            #expect(after.memoryUsage.first?.byteSize ?? 0 > 0)
            #expect(try await server.inference.modelStatistics(.init()).modelStats.map(\.name) == ["echo", "iris", "mlp"])
            let unknown = await GRPCTestServer.status { _ = try await server.inference.modelStatistics(.with { $0.name = "nope" }) }
            #expect(unknown?.code == .notFound)

            let index = try await server.inference.repositoryIndex(.init())
            #expect(index.models.map(\.name) == ["echo", "iris", "mlp"])
            #expect(index.models.allSatisfy { $0.state == "READY" && $0.version == "1" })
            let otherRepository = await GRPCTestServer.status { _ = try await server.inference.repositoryIndex(.with { $0.repositoryName = "elsewhere" }) }
            #expect(otherRepository?.code == .invalidArgument)
            // Loading needs --model-control-mode explicit: UNIMPLEMENTED, as Triton answers.
            let load = await GRPCTestServer.status { _ = try await server.inference.repositoryModelLoad(.with { $0.modelName = "mlp" }) }
            #expect(load?.code == .unimplemented)
            #expect(load?.message.contains("explicit") == true)
        }
    }

    @Test func explicitModeLoadsAndUnloads() async throws {
        try await GRPCTestServer.with(mode: .explicit) { server in
            let notLoaded = await GRPCTestServer.status { _ = try await server.inference.modelInfer(Requests.mlp()) }
            #expect(notLoaded?.code == .notFound)
            _ = try await server.inference.repositoryModelLoad(.with { $0.modelName = "mlp" })
            #expect(try await server.inference.modelReady(.with { $0.name = "mlp" }).ready)
            _ = try await server.inference.modelInfer(Requests.mlp())
            _ = try await server.inference.repositoryModelUnload(.with { $0.modelName = "mlp" })
            let unloaded = await GRPCTestServer.status { _ = try await server.inference.modelMetadata(.with { $0.name = "mlp" }) }
            #expect(unloaded?.code == .notFound)
            let unknown = await GRPCTestServer.status { _ = try await server.inference.repositoryModelLoad(.with { $0.modelName = "nope" }) }
            #expect(unknown?.code == .notFound)
            let withConfig = await GRPCTestServer.status {
                _ = try await server.inference.repositoryModelLoad(.with {
                    $0.modelName = "mlp"
                    $0.parameters["config"] = .with { $0.stringParam = "{}" }
                })
            }
            #expect(withConfig?.code == .unimplemented)
            #expect(withConfig?.message.contains("'config'") == true)
        }
    }
}

func bytes<T>(_ values: [T]) -> Data { values.withUnsafeBufferPointer { Data(buffer: $0) } }

func lengthPrefixed(_ strings: [String]) -> Data {
    var data = Data()
    for string in strings {
        withUnsafeBytes(of: UInt32(string.utf8.count).littleEndian) { data.append(contentsOf: $0) }
        data.append(contentsOf: string.utf8)
    }
    return data
}
