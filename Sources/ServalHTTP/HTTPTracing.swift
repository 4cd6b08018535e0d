import HTTPTypes
import Hummingbird
import Logging
import ServalServing
import Tracing

/// Request traces on REST: the caller's W3C `traceparent` (and `tracestate`) header is honoured, so Serval's span
/// joins the caller's trace.
enum HTTPTracing {
    struct HeaderExtractor: Extractor {
        func extract(key: String, from headers: HTTPFields) -> String? {
            HTTPField.Name(key).flatMap { headers[$0] }
        }
    }

    static func start(_ tracer: (any Tracer)?, _ operation: String, request: Request, started: ContinuousClock.Instant) -> RequestTrace? {
        guard let tracer else { return nil }
        let parent = RequestTrace.parent(from: request.headers, using: HeaderExtractor(), tracer: tracer)
        return RequestTrace(tracer: tracer, operation: operation, parent: parent, started: started)
    }
}

/// With `--access-log`, one line per answered inference carrying Serval's request id (the key for feedback and the
/// `serval.request_id` of its trace), the model version and the time taken.
enum AccessLog {
    static func inference(_ logger: Logger, _ response: Response, started: ContinuousClock.Instant) {
        let elapsed = started.duration(to: .now)
        let milliseconds = Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15
        logger.info("inference", metadata: [
            "request_id": "\(response.headers[HTTPHeaders.requestID] ?? "-")", "model_version": "\(response.headers[HTTPHeaders.modelVersion] ?? "-")",
            "ms": "\((milliseconds * 1000).rounded() / 1000)",
        ])
    }
}
