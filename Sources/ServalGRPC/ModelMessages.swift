import ServalServing
import ServalTensor
import ServalWire

/// Builds the descriptive gRPC messages (metadata, configuration, statistics, repository index) from the
/// same `ServedModel` and `ModelManager` state the REST routes read.
enum ModelMessages {
    static func metadata(_ model: ServedModel, versions: [Int]) -> Inference_ModelMetadataResponse {
        func tensors(_ list: [TensorMetadata]) -> [Inference_ModelMetadataResponse.TensorMetadata] {
            list.map { tensor in
                var message = Inference_ModelMetadataResponse.TensorMetadata()
                message.name = tensor.name
                message.datatype = tensor.datatype
                message.shape = tensor.shape.map { Int64($0) }
                return message
            }
        }
        var message = Inference_ModelMetadataResponse()
        message.name = model.name
        message.versions = versions.map(String.init)
        message.platform = model.platform
        message.inputs = tensors(model.inputs)
        message.outputs = tensors(model.outputs)
        return message
    }

    /// Triton's ModelConfig for the effective configuration. As in Triton, `dims` leave out the batch
    /// dimension when `max_batch_size` > 0.
    static func config(_ model: ServedModel) -> Inference_ModelConfig {
        let config = model.config
        let maxBatchSize = config.maxBatchSize ?? 0
        func dims(_ tensor: TensorMetadata) -> [Int64] {
            (maxBatchSize > 0 ? Array(tensor.shape.dropFirst()) : tensor.shape).map { Int64($0) }
        }
        var message = Inference_ModelConfig()
        message.name = model.name
        message.platform = model.platform
        message.backend = "serval"
        message.maxBatchSize = Int32(clamping: maxBatchSize)
        message.defaultModelFilename = "model.onnx"
        message.input = (config.inputs ?? model.inputs).map { tensor in
            var input = Inference_ModelInput()
            input.name = tensor.name
            input.dataType = dataType(tensor.datatype)
            input.dims = dims(tensor)
            return input
        }
        message.output = (config.outputs ?? model.outputs).map { tensor in
            var output = Inference_ModelOutput()
            output.name = tensor.name
            output.dataType = dataType(tensor.datatype)
            output.dims = dims(tensor)
            return output
        }
        var policy = Inference_ModelVersionPolicy()
        switch config.versionPolicy ?? .latest(1) {
        case .latest(let count): policy.latest = .with { $0.numVersions = UInt32(clamping: count) }
        case .all: policy.all = .init()
        case .specific(let versions): policy.specific = .with { $0.versions = versions.map { Int64($0) } }
        }
        message.versionPolicy = policy
        var group = Inference_ModelInstanceGroup()
        group.name = model.name
        group.kind = .cpu
        group.count = Int32(clamping: config.instanceCount ?? 1)
        message.instanceGroup = [group]
        if maxBatchSize > 0 {
            let batching = config.dynamicBatching
            var dynamic = Inference_ModelDynamicBatching()
            dynamic.preferredBatchSize = (batching?.preferredBatchSizes ?? []).map { Int32(clamping: $0) }
            dynamic.maxQueueDelayMicroseconds = UInt64(max(0, batching?.maxQueueDelayUs ?? 0))
            var queue = Inference_ModelQueuePolicy()
            queue.maxQueueSize = UInt32(clamping: batching?.maxQueueSize ?? 0)
            queue.defaultTimeoutMicroseconds = UInt64(max(0, batching?.queueTimeoutUs ?? 0))
            queue.allowTimeoutOverride = true
            dynamic.defaultQueuePolicy = queue
            message.dynamicBatching = dynamic
        }
        func parameter(_ value: String) -> Inference_ModelParameter { .with { $0.stringValue = value } }
        message.parameters["threads_per_instance"] = parameter(String(config.threadsPerInstance ?? 1))
        message.parameters["weight_bytes"] = parameter(String(model.weightBytes))
        message.parameters["warmup_batch_sizes"] = parameter((config.warmupBatchSizes ?? []).map(String.init).joined(separator: ","))
        for (label, version) in config.versionLabels ?? [:] {
            message.parameters["version_label:\(label)"] = parameter(String(version))
        }
        return message
    }

    /// Triton config type names (`TYPE_FP32`…) for KServe datatype names; TYPE_STRING is BYTES.
    static func dataType(_ datatype: String) -> Inference_DataType {
        switch datatype {
        case "BOOL": return .typeBool
        case "UINT8": return .typeUint8
        case "UINT16": return .typeUint16
        case "UINT32": return .typeUint32
        case "UINT64": return .typeUint64
        case "INT8": return .typeInt8
        case "INT16": return .typeInt16
        case "INT32": return .typeInt32
        case "INT64": return .typeInt64
        case "FP16": return .typeFp16
        case "FP32": return .typeFp32
        case "FP64": return .typeFp64
        case "BF16": return .typeBf16
        case "BYTES": return .typeString
        default: return .typeInvalid
        }
    }

    static func statistics(_ models: [ServedModel]) -> Inference_ModelStatisticsResponse {
        func duration(_ value: ModelStatistics.Duration) -> Inference_StatisticDuration {
            .with {
                $0.count = UInt64(value.count)
                $0.ns = value.nanoseconds
            }
        }
        var response = Inference_ModelStatisticsResponse()
        response.modelStats = models.map { model in
            let s = model.statistics.snapshot
            var stats = Inference_ModelStatistics()
            stats.name = model.name
            stats.version = String(model.version)
            stats.lastInference = s.lastInferenceMilliseconds
            stats.inferenceCount = UInt64(s.inferenceCount)
            stats.executionCount = UInt64(s.executionCount)
            stats.inferenceStats = .with {
                $0.success = duration(s.success)
                $0.fail = duration(s.fail)
                $0.queue = duration(s.queue)
                $0.computeInput = duration(s.computeInput)
                $0.computeInfer = duration(s.computeInfer)
                $0.computeOutput = duration(s.computeOutput)
                $0.cacheHit = duration(.init())
                $0.cacheMiss = duration(.init())
            }
            stats.batchStats = s.batches.keys.sorted().map { size in
                let batch = s.batches[size]!
                return .with {
                    $0.batchSize = UInt64(size)
                    $0.computeInput = duration(batch.computeInput)
                    $0.computeInfer = duration(batch.computeInfer)
                    $0.computeOutput = duration(batch.computeOutput)
                }
            }
            stats.memoryUsage = [.with {
                $0.type = "CPU"
                $0.id = 0
                $0.byteSize = UInt64(model.weightBytes)
            }]
            return stats
        }
        return response
    }

    static func index(_ entries: [ModelManager.IndexEntry], readyOnly: Bool) -> Inference_RepositoryIndexResponse {
        var response = Inference_RepositoryIndexResponse()
        response.models = entries.filter { !readyOnly || $0.state == .ready }.map { entry in
            .with {
                $0.name = entry.name
                $0.version = entry.version
                $0.state = entry.state.rawValue
                $0.reason = entry.reason
            }
        }
        return response
    }
}
