import Foundation
import Hummingbird
import ServalPipeline
import ServalServing
import ServalWire

/// Retraining pipelines over HTTP: the loaded pipelines with their last run, run records (listed, shown, and
/// reported by the run processes), and starting a run (`POST .../runs`, held by the same one-at-a-time rule as
/// the monitor's triggers).
struct PipelineRoutes {
    let shared: RouteContext
    let pipelines: PipelineService

    struct Summary: Encodable {
        var name: String
        var model: String
        var file: String?
        var onAlert: [String]
        var everySecs: Double?
        var cooldownSecs: Double?
        var lastRun: Last?

        struct Last: Encodable {
            var id: String
            var status: String
            var trigger: String
            var startedAt: String
            var endedAt: String?
            var registeredVersion: Int?
            enum CodingKeys: String, CodingKey {
                case id, status, trigger, startedAt = "started_at", endedAt = "ended_at", registeredVersion = "registered_version"
            }

            init(_ run: PipelineRunRecord) {
                (id, status, trigger, startedAt, endedAt, registeredVersion) = (run.id, run.status.rawValue, run.trigger, run.startedAt, run.endedAt, run.registeredVersion)
            }
        }

        enum CodingKeys: String, CodingKey {
            case name, model, file, onAlert = "on_alert", everySecs = "every_secs", cooldownSecs = "cooldown_secs", lastRun = "last_run"
        }
    }

    struct StartResponse: Encodable {
        var pipeline: String
        var runId: String
        var trigger: String
        var reason: String
        enum CodingKeys: String, CodingKey { case pipeline, runId = "run_id", trigger, reason }
    }

    func register(_ routes: inout RouteBuilder) {
        let shared = self.shared, pipelines = self.pipelines
        routes.get("/v2/pipelines") { _, _ in
            var summaries: [Summary] = []
            var names = Set<String>()
            for loaded in pipelines.pipelines {
                let definition = loaded.definition
                names.insert(definition.name)
                summaries.append(Summary(name: definition.name, model: definition.model, file: loaded.file.path, onAlert: definition.triggers.onAlert,
                                         everySecs: definition.triggers.everySeconds, cooldownSecs: definition.triggers.cooldownSeconds,
                                         lastRun: try await pipelines.runs.runs(pipeline: definition.name, limit: 1).first.map(Summary.Last.init)))
            }
            // Pipelines run from the command line against this server, without being loaded by it.
            for name in try await pipelines.runs.pipelines() where !names.contains(name) {
                let last = try await pipelines.runs.runs(pipeline: name, limit: 1).first
                summaries.append(Summary(name: name, model: last?.model ?? "", onAlert: [], lastRun: last.map(Summary.Last.init)))
            }
            return try ControlPlane.response(["pipelines": summaries])
        }
        routes.get("/v2/pipelines/:name/runs") { request, context in
            let name = try context.parameters.require("name")
            let runs = try await pipelines.runs.runs(pipeline: name, limit: try RegistryRoutes.limit(request))
            if runs.isEmpty, await pipelines.pipeline(name) == nil { throw ServingError.notFound("no pipeline named '\(name)' is loaded or has runs") }
            return Response.json("{\"name\":\(Self.quoted(name)),\"runs\":[" + (try runs.map { try $0.json() }).joined(separator: ",") + "]}")
        }
        routes.get("/v2/pipelines/:name/runs/:id") { _, context in
            let name = try context.parameters.require("name"), id = try context.parameters.require("id")
            guard let run = try await pipelines.runs.run(id), run.pipeline == name else { throw ServingError.notFound("pipeline '\(name)' has no run '\(id)'") }
            return Response.json(try run.json())
        }
        routes.post("/v2/pipelines/:name/runs") { request, context in
            let name = try context.parameters.require("name")
            guard await pipelines.pipeline(name) != nil else {
                throw ServingError.notFound("no pipeline named '\(name)' is loaded (serve --pipelines DIR loads pipeline files)")
            }
            let (decision, runId) = try await pipelines.trigger(name, .api, actor: RouteContext.actor(request, context))
            guard let runId else { throw ServingError.conflict("pipeline '\(name)' did not start: \(decision.reason)") }
            return try ControlPlane.response(StartResponse(pipeline: name, runId: runId, trigger: decision.trigger.description, reason: decision.reason),
                                             status: .accepted)
        }
        routes.put("/v2/pipelines/:name/runs/:id") { request, context in
            let name = try context.parameters.require("name"), id = try context.parameters.require("id")
            let body = try await shared.collect(request)
            let run: PipelineRunRecord
            do { run = try PipelineRunRecord.decode(Data(body.readableBytesView)) } catch let error as PipelineError {
                throw ServingError.invalidArgument(error.description)
            }
            guard run.pipeline == name, run.id == id else {
                throw ServingError.invalidArgument("field 'pipeline' and 'id' must match the path (\(name), \(id)), got \(run.pipeline), \(run.id)")
            }
            try await pipelines.report(run)
            return Response.json(try run.json())
        }
    }

    static func quoted(_ text: String) -> String {
        var writer = JSONWriter()
        writer.string(text)
        return writer.text
    }
}
