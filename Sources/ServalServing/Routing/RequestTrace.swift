import Foundation
import Tracing

/// The trace of one inference request: a server span named after the call, carrying model, version, arm, request
/// id and batch size, with child spans `decode`, `queue`, `compute` and `encode` placed at the times they took.
/// Children are recorded after the fact from measured instants (the batcher runs many requests in one
/// computation), so tracing adds no work inside the batcher. Nil everywhere when no tracer is configured.
public final class RequestTrace: Sendable {
    private let tracer: any Tracer
    private let root: any Span
    /// Wall-clock nanoseconds at `anchor`, to place monotonic instants on the trace's clock.
    private let wall: UInt64
    private let anchor: ContinuousClock.Instant

    /// Starts the request's span as a child of the caller's context (W3C `traceparent`, already extracted into
    /// `parent`), at `started`.
    public init(tracer: any Tracer, operation: String, parent: ServiceContext, started: ContinuousClock.Instant) {
        self.tracer = tracer
        let now = ContinuousClock.now
        wall = DefaultTracerClock.now.nanosecondsSinceEpoch
        anchor = now
        let at = Self.instant(started, wall: wall, anchor: now)
        root = tracer.startSpan(operation, context: parent, ofKind: .server, at: at)
    }

    /// Extracts the caller's trace context from a carrier (HTTP headers, gRPC metadata).
    public static func parent<Carrier, Extract: Extractor>(from carrier: Carrier, using extractor: Extract, tracer: any Tracer) -> ServiceContext
    where Extract.Carrier == Carrier {
        var context = ServiceContext.topLevel
        tracer.extract(carrier, into: &context, using: extractor)
        return context
    }

    /// A child span from `from` to `to`.
    public func child(_ name: String, from: ContinuousClock.Instant, to: ContinuousClock.Instant, attributes: SpanAttributes = [:]) {
        let span = tracer.startSpan(name, context: root.context, ofKind: .internal, at: Self.instant(from, wall: wall, anchor: anchor))
        if !attributes.isEmpty { span.attributes.merge(attributes) }
        span.end(at: Self.instant(to, wall: wall, anchor: anchor))
    }

    /// The queue and compute spans of a request the batcher ran.
    public func batch(_ timing: BatchTiming) {
        root.attributes["serval.batch.rows"] = timing.rows
        root.attributes["serval.batch.requests"] = timing.requests
        child("queue", from: timing.enqueued, to: timing.started)
        child("compute", from: timing.computeStarted, to: timing.computeEnded,
              attributes: ["serval.batch.rows": .int64(Int64(timing.rows)), "serval.batch.requests": .int64(Int64(timing.requests))])
    }

    /// What the request was routed to.
    public func routed(model: String, version: Int, arm: String?, requestID: String?) {
        root.attributes["serval.model"] = model
        root.attributes["serval.model.version"] = String(version)
        if let arm { root.attributes["serval.arm"] = arm }
        if let requestID { root.attributes["serval.request_id"] = requestID }
    }

    /// Runs `body` inside the span of `trace` (when there is one) and ends the span after it, marked failed when
    /// `body` throws: the one way every frontend closes a request's trace.
    public static func around<T: Sendable>(_ trace: RequestTrace?, _ body: () async throws -> T) async throws -> T {
        guard let trace else { return try await body() }
        do {
            let value = try await body()
            trace.finish()
            return value
        } catch {
            trace.finish(error: error)
            throw error
        }
    }

    /// Ends the request span now, marked failed when `error` is given.
    public func finish(error: (any Error)? = nil) {
        if let error {
            root.recordError(error)
            root.setStatus(SpanStatus(code: .error, message: "\(error)"))
        }
        root.end(at: Self.instant(ContinuousClock.now, wall: wall, anchor: anchor))
    }

    private static func instant(_ instant: ContinuousClock.Instant, wall: UInt64, anchor: ContinuousClock.Instant) -> TraceInstant {
        let offset = anchor.duration(to: instant)
        let nanoseconds = offset.components.seconds * 1_000_000_000 + offset.components.attoseconds / 1_000_000_000
        return TraceInstant(nanosecondsSinceEpoch: UInt64(max(0, Int64(wall) + nanoseconds)))
    }
}

/// A point on the wall clock, as traces carry it.
struct TraceInstant: TracerInstant {
    let nanosecondsSinceEpoch: UInt64
    static func < (lhs: TraceInstant, rhs: TraceInstant) -> Bool { lhs.nanosecondsSinceEpoch < rhs.nanosecondsSinceEpoch }
}
