import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Logging
import Metrics
import ServalServing
import ServalStore
import ServalWire

/// Posts sampled requests and responses as CloudEvents in binary mode, as KServe's inference logger does: the v2
/// JSON body as it is, with `ce-specversion`, `ce-id` (the request id), `ce-type`
/// (`org.kubeflow.serving.inference.request` / `.response`), `ce-source`, `ce-time` and the model in
/// `ce-inferenceservicename`. Best effort and off the request path: a bounded queue drops (and counts) when the
/// receiver falls behind; a failed post is counted and not retried (the payload log in the store is the record).
final class CloudEventSink: Sendable {
    struct Event: Sendable {
        var url: String
        var type: String
        var id: String
        var model: String
        var version: Int
        var time: Double
        var body: String
    }

    private let events: AsyncStream<Event>.Continuation
    private let worker: Task<Void, Never>

    init(capacity: Int = 1024, logger: Logger) {
        let (stream, continuation) = AsyncStream.makeStream(of: Event.self, bufferingPolicy: .bufferingOldest(capacity))
        events = continuation
        worker = Task.detached {
            let session = URLSession(configuration: .ephemeral)
            var failing = false
            for await event in stream {
                var request = URLRequest(url: URL(string: event.url)!, timeoutInterval: 10)
                request.httpMethod = "POST"
                request.httpBody = Data(event.body.utf8)
                for (name, value) in Self.headers(event) { request.setValue(value, forHTTPHeaderField: name) }
                let ok: Bool
                do {
                    let (_, response) = try await session.data(for: request)
                    ok = ((response as? HTTPURLResponse)?.statusCode).map { (200..<300).contains($0) } ?? false
                } catch {
                    ok = false
                }
                Counter(label: "serval_cloudevents_total", dimensions: [("model", event.model), ("outcome", ok ? "sent" : "failed")]).increment()
                if !ok && !failing { logger.warning("CloudEvents receiver refused or unreachable", metadata: ["url": "\(event.url)"]) }
                failing = !ok
            }
        }
    }

    deinit {
        events.finish()
    }

    static func headers(_ event: Event) -> [(String, String)] {
        [("Content-Type", "application/json"), ("ce-specversion", "1.0"), ("ce-id", event.id), ("ce-type", event.type),
         ("ce-source", "serval/models/\(event.model)"), ("ce-time", StoreClock.timestamp(Date(timeIntervalSince1970: event.time))),
         ("ce-inferenceservicename", event.model), ("ce-component", "predictor"), ("ce-endpoint", String(event.version))]
    }

    /// Queues the events `mode` asks for; never waits.
    func send(_ observation: Observation, id: String, to logger: MonitoringConfig.Logger) {
        if logger.mode != .response {
            offer(Event(url: logger.url, type: "org.kubeflow.serving.inference.request", id: id, model: observation.model, version: observation.version,
                        time: observation.time, body: Self.requestBody(observation, id: id)))
        }
        if logger.mode != .request {
            var response = observation.response
            response.id = id
            offer(Event(url: logger.url, type: "org.kubeflow.serving.inference.response", id: id, model: observation.model, version: observation.version,
                        time: observation.time, body: KServeCodec.encodeResponse(response)))
        }
    }

    private func offer(_ event: Event) {
        if case .dropped = events.yield(event) {
            Counter(label: "serval_cloudevents_total", dimensions: [("model", event.model), ("outcome", "dropped")]).increment()
        }
    }

    /// The request as a v2 JSON body.
    static func requestBody(_ observation: Observation, id: String) -> String {
        var json = JSONWriter(capacity: 256)
        json.raw("{\"id\":")
        json.string(id)
        json.raw(",\"inputs\":")
        KServeCodec.encodeInputs(observation.request.inputs, into: &json)
        json.raw("}")
        return json.text
    }
}
