import Foundation
import ServalServing
import ServalWire

/// Triton's statistics extension body: `{"model_stats": [...]}` with `{"count", "ns"}` per duration.
enum StatisticsJSON {
    static func encode(_ models: [ServedModel]) -> String {
        var json = JSONWriter()
        json.raw("{\"model_stats\":[")
        for (index, model) in models.enumerated() {
            if index > 0 { json.raw(",") }
            let s = model.statistics.snapshot
            json.raw("{\"name\":")
            json.string(model.name)
            json.raw(",\"version\":\"\(model.version)\",\"last_inference\":\(s.lastInferenceMilliseconds)")
            json.raw(",\"inference_count\":\(s.inferenceCount),\"execution_count\":\(s.executionCount),\"inference_stats\":{")
            duration("success", s.success, &json, first: true)
            duration("fail", s.fail, &json)
            duration("queue", s.queue, &json)
            duration("compute_input", s.computeInput, &json)
            duration("compute_infer", s.computeInfer, &json)
            duration("compute_output", s.computeOutput, &json)
            duration("cache_hit", .init(), &json)
            duration("cache_miss", .init(), &json)
            json.raw("},\"batch_stats\":[")
            for (position, size) in s.batches.keys.sorted().enumerated() {
                let batch = s.batches[size]!
                if position > 0 { json.raw(",") }
                json.raw("{\"batch_size\":\(size)")
                duration("compute_input", batch.computeInput, &json)
                duration("compute_infer", batch.computeInfer, &json)
                duration("compute_output", batch.computeOutput, &json)
                json.raw("}")
            }
            json.raw("],\"memory_usage\":[{\"type\":\"CPU\",\"id\":0,\"byte_size\":\(model.weightBytes)}]}")
        }
        json.raw("]}")
        return json.text
    }

    private static func duration(_ name: String, _ value: ModelStatistics.Duration, _ json: inout JSONWriter, first: Bool = false) {
        json.raw((first ? "" : ",") + "\"\(name)\":{\"count\":\(value.count),\"ns\":\(value.nanoseconds)}")
    }
}
