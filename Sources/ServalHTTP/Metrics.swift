import Foundation
import Metrics
import Prometheus

/// Prometheus wiring: the metrics factory serving uses, and the scrape text for `GET /metrics`.
public enum ServalMetrics {
    /// A factory backed by `registry`, with batch-size buckets in rows and latency buckets from 100 µs to 10 s.
    public static func factory(registry: PrometheusCollectorRegistry) -> PrometheusMetricsFactory {
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.valueHistogramBuckets["serval_inference_batch_size"] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]
        factory.defaultDurationHistogramBuckets = [
            .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2.5), .milliseconds(5),
            .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500),
            .seconds(1), .seconds(2.5), .seconds(10),
        ]
        return factory
    }

    /// The Prometheus text exposition, after refreshing process-level gauges.
    static func scrape(_ registry: PrometheusCollectorRegistry) -> String {
        if let statm = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8),
           let pages = statm.split(separator: " ").dropFirst().first.flatMap({ Int($0) }) {
            Gauge(label: "serval_process_resident_memory_bytes").record(pages * Int(sysconf(Int32(_SC_PAGESIZE))))
        }
        return registry.emitToString()
    }
}
