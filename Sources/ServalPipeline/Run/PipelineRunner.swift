import Foundation
import ServalEngine
import ServalONNX
import ServalRegistry
import ServalStore

/// Runs a pipeline once: versions the data, trains the candidates (in parallel up to `jobs`), optionally
/// quantizes the best, evaluates it and the champion with Serval's engine, checks the gates, registers the winner
/// with its lineage and deploys it. Steps whose inputs are unchanged reuse their cached outputs, as `dvc repro`
/// does; a rerun that would produce a version already registered ends as `unchanged`. Nothing is registered or
/// deployed unless every step before it passed. The run's record is saved as it goes.
public struct PipelineRunner: Sendable {
    public struct Options: Sendable {
        public var runId: String
        public var trigger: String
        public var actor: String
        public var jobs: Int
        public var force: Bool

        public init(runId: String = PipelineRunner.newRunId(), trigger: String = "manual", actor: String, jobs: Int = 1, force: Bool = false) {
            self.runId = runId
            self.trigger = trigger
            self.actor = actor
            self.jobs = jobs
            self.force = force
        }
    }

    public let definition: PipelineDefinition
    /// The pipeline file's folder: commands run here and paths are relative to it.
    public let folder: URL
    public let registry: any PipelineRegistry
    public let options: Options
    /// Where progress lines and the commands' prefixed output go.
    public let echo: @Sendable (String) -> Void
    let now: @Sendable () -> Date

    public init(definition: PipelineDefinition, folder: URL, registry: any PipelineRegistry, options: Options,
                echo: @escaping @Sendable (String) -> Void, now: @escaping @Sendable () -> Date = { Date() }) {
        self.definition = definition
        self.folder = folder.standardizedFileURL
        self.registry = registry
        self.options = options
        self.echo = echo
        self.now = now
    }

    /// A run id: the UTC time to the second and 6 random hex digits (sortable, unique enough per pipeline).
    public static func newRunId(_ date: Date = Date()) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyyMMdd'T'HHmmss"
        return formatter.string(from: date) + "-" + String(format: "%06x", UInt32.random(in: 0..<0x1000000))
    }

    /// The folder of this run's files (params files, logs, the champion's model).
    public var runFolder: URL { folder.appendingPathComponent(".serval/runs/\(definition.name)/\(options.runId)") }
    public var cache: StepCache { StepCache(root: folder.appendingPathComponent(".serval/cache/\(definition.name)")) }

    /// Runs every step and returns the final record (also saved). It does not throw: a failure is in the record.
    public func run() async -> PipelineRunRecord {
        var record = PipelineRunRecord(id: options.runId, pipeline: definition.name, model: definition.model,
                                       trigger: options.trigger, startedAt: StoreClock.timestamp(now()))
        do {
            try await registry.save(record)
            try await steps(&record)
        } catch let failure as StepFailure {
            record.status = failure.blocked ? .blocked : .failed
            record.error = failure.message
        } catch {
            record.status = .failed
            record.error = "\(error)"
        }
        record.endedAt = StoreClock.timestamp(now())
        do { try await registry.save(record) } catch { echo("cannot save the run record: \(error)") }
        return record
    }

    /// A step that stopped the run; `blocked`: a gate, not an error.
    struct StepFailure: Error, CustomStringConvertible {
        let message: String
        var blocked = false
        var description: String { message }
    }

    private func steps(_ record: inout PipelineRunRecord) async throws {
        try FileManager.default.createDirectory(at: runFolder, withIntermediateDirectories: true)

        // data: hash and version every input.
        let data = try await step("data", &record) { _ in
            let inputs = try self.versionData()
            return (inputs, Dictionary(uniqueKeysWithValues: inputs.map { ($0.name, $0.md5) }), nil)
        }
        record.data = data
        let deps = try hashDeps()
        guard let evalData = data.first(where: { $0.name == "eval" }) else {
            throw StepFailure(message: "data.eval: the evaluate step needs a data entry named 'eval' (found \(data.map(\.name).joined(separator: ", ")))")
        }

        // train: one candidate per matrix combination.
        let candidates = definition.candidates
        let trained = try await train(candidates, data: data, deps: deps, &record)

        // A rerun with every input unchanged (each candidate and its evaluation cached), whose candidate is
        // already registered, does nothing more.
        if !options.force, trained.allSatisfy(\.cached),
           trained.allSatisfy({ cache.value([String: Double].self, "evaluate", evaluateKey($0.sha256, eval: evalData)) != nil }) {
            for candidate in trained {
                if let version = try await registry.version(definition.model, sha256: candidate.sha256) {
                    for index in record.steps.indices { record.steps[index].status = .skipped }
                    record.steps[0].detail = "data unchanged"
                    for name in ["evaluate", "register", "deploy"] {
                        record.steps.append(.init(name: name, status: .skipped, detail: "candidate already registered as v\(version)"))
                    }
                    record.status = .unchanged
                    record.registeredVersion = version
                    echo("unchanged: every input is as in a cached run, and its candidate is already registered as \(definition.model) v\(version)")
                    return
                }
            }
        }

        // evaluate: every candidate, and the champion, on the eval data.
        let champion = try await registry.champion(definition.model)
        var championFile: URL?
        if let champion {
            let file = runFolder.appendingPathComponent("champion-v\(champion.version).onnx")
            try champion.file.write(to: file)
            championFile = file
        }
        let evaluated = try await step("evaluate", &record) { (stepStatus: inout PipelineRunRecord.Step.Status) -> ([[EvaluationMetric: Double]], [String: String], String?) in
            var all: [[EvaluationMetric: Double]] = []
            var cachedCount = 0
            for candidate in trained {
                let (metrics, cached) = try self.evaluate(candidate.model, sha256: candidate.sha256, eval: evalData)
                all.append(metrics)
                if cached { cachedCount += 1 }
            }
            if cachedCount == trained.count { stepStatus = .cached }
            return (all, [:], cachedCount > 0 ? "\(cachedCount) of \(trained.count) candidate evaluation(s) cached" : nil)
        }
        var championMetrics: [EvaluationMetric: Double]?
        if let champion, let championFile {
            championMetrics = try evaluate(championFile, sha256: FileDigest.sha256(of: champion.file), eval: evalData).metrics
            record.championVersion = champion.version
            record.championMetrics = championMetrics?.named
        }
        for (index, candidate) in trained.enumerated() {
            record.candidates.append(.init(params: candidate.params.mapValues(\.text), sha256: candidate.sha256, metrics: evaluated[index].named))
        }
        let primary = definition.evaluate.metrics[0]
        let best = evaluated.indices.max { first, second in
            let a = evaluated[first][primary] ?? .nan, b = evaluated[second][primary] ?? .nan
            if a.isNaN { return !b.isNaN }
            if b.isNaN { return false }
            return primary.higherIsBetter ? a < b : a > b
        } ?? 0
        var chosen = (file: trained[best].model, sha256: trained[best].sha256, metrics: evaluated[best], params: trained[best].params)
        if trained.count > 1 { echo("best candidate by \(primary.rawValue): \(Self.describe(chosen.params)) (\(evaluated[best][primary].map { String($0) } ?? "-"))") }

        // quantize: kept only within the distance and through the gates.
        if let quantize = definition.quantize, quantize.enabled {
            if let int8 = try await quantizeStep(quantize, chosen.file, sha256: chosen.sha256, eval: evalData, champion: championMetrics, &record) {
                chosen.file = int8.file
                chosen.sha256 = int8.sha256
                chosen.metrics = int8.metrics
                record.quantized = true
            } else {
                record.quantized = false
            }
        }
        record.metrics = chosen.metrics.named

        // gates.
        let verdicts = Gates.check(definition.evaluate.gates, candidate: chosen.metrics, champion: championMetrics)
        record.gates = verdicts.map {
            .init(metric: $0.metric.rawValue, rule: $0.rule, candidate: $0.candidate.isFinite ? $0.candidate : nil,
                  champion: $0.champion.flatMap { $0.isFinite ? $0 : nil }, outcome: $0.outcome.rawValue)
        }
        echo(Gates.table(verdicts))
        if let failed = verdicts.first(where: { $0.outcome == .failed }) {
            for name in ["register", "deploy"] { record.steps.append(.init(name: name, status: .skipped, detail: "a gate failed")) }
            throw StepFailure(message: "gate failed: \(failed.metric.rawValue) \(failed.rule) (candidate \(failed.candidate.isFinite ? String(failed.candidate) : "-")"
                                  + (failed.champion.map { ", champion \($0)" } ?? "") + "); nothing registered", blocked: true)
        }

        // register, with lineage.
        let bytes = try Data(contentsOf: chosen.file)
        let quantized = record.quantized == true
        let version = try await step("register", &record) { _ in
            if let existing = try await self.registry.version(self.definition.model, sha256: chosen.sha256) {
                return (existing, ["sha256": chosen.sha256], "already registered as v\(existing)")
            }
            let metadata = self.lineage(chosen.params, metrics: chosen.metrics, champion: championMetrics, data: data, deps: deps,
                                        quantized: quantized)
            let version = try await self.registry.register(self.definition.model, file: bytes, metadata: metadata)
            self.echo("registered \(self.definition.model) v\(version) (sha256 \(chosen.sha256.prefix(12)))")
            return (version, ["sha256": chosen.sha256], nil)
        }
        record.registeredVersion = version

        // deploy.
        let deployment = Deployment.plan(definition.deploy, version: version, hasChampion: champion != nil && champion?.version != version)
        try await step("deploy", &record) { _ in
            try await self.registry.apply(self.definition.model, deployment)
            self.echo("deployed: \(deployment.description)")
            return ((), [:], deployment.description)
        }
        record.deployment = deployment.description
        record.status = .succeeded
    }

    // MARK: - Steps

    /// Runs `body` as a recorded step: started, duration, outputs, and failed when it throws. `body` may set the
    /// status (to cached) through its argument.
    private func step<T>(_ name: String, _ record: inout PipelineRunRecord,
                         _ body: (inout PipelineRunRecord.Step.Status) async throws -> (T, [String: String], String?)) async throws -> T {
        let started = now()
        record.steps.append(.init(name: name, status: .ran, startedAt: StoreClock.timestamp(started)))
        let index = record.steps.count - 1
        try? await registry.save(record)
        var status = PipelineRunRecord.Step.Status.ran
        do {
            let (value, outputs, detail) = try await body(&status)
            record.steps[index].status = status
            record.steps[index].durationSecs = now().timeIntervalSince(started)
            record.steps[index].outputs = outputs.isEmpty ? nil : outputs
            record.steps[index].detail = detail
            return value
        } catch {
            record.steps[index].status = .failed
            record.steps[index].durationSecs = now().timeIntervalSince(started)
            record.steps[index].detail = "\(error)"
            throw error
        }
    }

    /// Hashes each data input (DVC's hash when DVC records it as a stage output and it is unchanged; otherwise
    /// it is added to the DVC cache with a `.dvc` file, as `serval data add` does).
    func versionData() throws -> [PipelineRunRecord.DataInput] {
        try definition.data.map { name, path in
            let url = folder.appendingPathComponent(path).standardizedFileURL
            guard FileManager.default.fileExists(atPath: url.path) else {
                throw StepFailure(message: "data.\(name): \(path) does not exist (in \(folder.path))")
            }
            let versioning = DataVersioning(project: try DVCProject.locate(for: url, creatingIn: folder))
            if let tracked = try? versioning.tracking(url).first, tracked.record.lastPathComponent == "dvc.lock",
               try versioning.status(tracked).status == .unchanged {
                return .init(name: name, path: path, md5: tracked.md5, size: tracked.size ?? 0, rows: nil)
            }
            let snapshot = try versioning.add(url, actor: options.actor, now: now())
            return .init(name: name, path: path, md5: snapshot.md5, size: snapshot.size, rows: snapshot.rows)
        }
    }

    /// `deps`: each file's md5 (a folder's manifest md5).
    func hashDeps() throws -> [(path: String, md5: String)] {
        try definition.deps.map { path in
            let url = folder.appendingPathComponent(path)
            guard FileManager.default.fileExists(atPath: url.path) else { throw StepFailure(message: "deps: \(path) does not exist (in \(folder.path))") }
            return (path, DVCProject.isDirectory(url) ? try DVCHash.directory(url).md5 : try DVCHash.file(url).md5)
        }
    }

    struct Trained: Sendable {
        let params: [String: ParameterValue]
        let model: URL
        let sha256: String
        let cached: Bool
    }

    /// The key of a candidate's train step: the command as written, every parameter, the deps hashes, and the
    /// hashes of the data the command names (`${data.train}`; every data input when it names none, since it may
    /// read them through `SERVAL_DATA_*`). So new eval rows do not retrain.
    func trainKey(_ candidate: [String: ParameterValue], data: [PipelineRunRecord.DataInput], deps: [(path: String, md5: String)]) -> String {
        let named = Set(Substitution.references(in: definition.train.run).filter { $0.hasPrefix("data.") }.map { String($0.dropFirst(5)) })
        let read = named.isEmpty ? data : data.filter { named.contains($0.name) }
        return StepCache.key([("run", definition.train.run), ("params", paramsJSON(candidate))]
                             + read.map { ("data.\($0.name)", $0.md5) } + deps.map { ("dep.\($0.path)", $0.md5) })
    }

    func paramsJSON(_ candidate: [String: ParameterValue]) -> String {
        var entries = definition.params.map { (name: $0.name, value: candidate[$0.name] ?? $0.value) }
        for (name, _) in definition.train.matrix where !entries.contains(where: { $0.name == name }) {
            if let value = candidate[name] { entries.append((name, value)) }
        }
        return ParameterValue.mapping(entries.map { ParameterEntry(key: $0.name, value: $0.value) }).json
    }

    static func describe(_ candidate: [String: ParameterValue]) -> String {
        candidate.isEmpty ? "the only candidate" : candidate.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value.text)" }.joined(separator: ",")
    }

    private func train(_ candidates: [[String: ParameterValue]], data: [PipelineRunRecord.DataInput], deps: [(path: String, md5: String)],
                       _ record: inout PipelineRunRecord) async throws -> [Trained] {
        let started = now()
        let names = candidates.map { candidates.count == 1 ? "train" : "train[\(Self.describe($0))]" }
        let first = record.steps.count
        for name in names { record.steps.append(.init(name: name, status: .ran, startedAt: StoreClock.timestamp(started))) }
        try? await registry.save(record)
        var results = [Result<Trained, Error>?](repeating: nil, count: candidates.count)
        var durations = [Double](repeating: 0, count: candidates.count)
        await withTaskGroup(of: (Int, Result<Trained, Error>, Double).self) { group in
            var next = 0
            func launch() {
                guard next < candidates.count else { return }
                let index = next
                next += 1
                group.addTask {
                    let begun = self.now()
                    do {
                        let trained = try await self.trainOne(candidates[index], index: index, name: names[index], data: data, deps: deps)
                        return (index, .success(trained), self.now().timeIntervalSince(begun))
                    } catch {
                        return (index, .failure(error), self.now().timeIntervalSince(begun))
                    }
                }
            }
            for _ in 0..<max(1, options.jobs) { launch() }
            for await (index, result, duration) in group {
                results[index] = result
                durations[index] = duration
                launch()
            }
        }
        var trained: [Trained] = []
        var failures: [String] = []
        for (index, result) in results.enumerated() {
            let step = first + index
            record.steps[step].durationSecs = durations[index]
            record.steps[step].log = logFile(names[index]).path
            switch result {
            case .success(let candidate):
                record.steps[step].status = candidate.cached ? .cached : .ran
                record.steps[step].outputs = ["model_sha256": candidate.sha256]
                if candidate.cached { record.steps[step].detail = "inputs unchanged: the cached candidate is reused" }
                trained.append(candidate)
            case .failure(let error):
                record.steps[step].status = .failed
                record.steps[step].detail = "\(error)"
                failures.append("\(names[index]): \(error)")
            case nil:
                failures.append("\(names[index]): did not run")
            }
        }
        guard failures.isEmpty else { throw StepFailure(message: failures.joined(separator: "\n")) }
        return trained
    }

    /// A step's log file in the run folder, named after the step.
    func logFile(_ step: String) -> URL {
        runFolder.appendingPathComponent(String(step.map { $0.isLetter || $0.isNumber || "-_.".contains($0) ? $0 : "_" }) + ".log")
    }

    private func trainOne(_ candidate: [String: ParameterValue], index: Int, name: String, data: [PipelineRunRecord.DataInput],
                          deps: [(path: String, md5: String)]) async throws -> Trained {
        let key = trainKey(candidate, data: data, deps: deps)
        let log = logFile(name)
        if !options.force, let cached = cache.model("train", key) {
            try Data("cached: inputs unchanged (key \(key))\n".utf8).write(to: log)
            echo("[\(name)] cached: inputs unchanged")
            return Trained(params: candidate, model: cached, sha256: try FileDigest.sha256(of: cached).hex, cached: true)
        }
        let output = runFolder.appendingPathComponent("candidate-\(index)")
        try FileManager.default.createDirectory(at: output, withIntermediateDirectories: true)
        let model = output.appendingPathComponent("model.onnx")
        let paramsFile = output.appendingPathComponent("params.json")
        try Data((paramsJSON(candidate) + "\n").utf8).write(to: paramsFile)
        var values = ["params_file": paramsFile.path, "outputs.model": model.path, "run_id": options.runId, "candidate": String(index)]
        for (dataName, path) in definition.data { values["data.\(dataName)"] = path }
        for (paramName, value) in definition.params { values["params.\(paramName)"] = (candidate[paramName] ?? value).text }
        for (paramName, value) in candidate { values["params.\(paramName)"] = value.text }
        let command = try Substitution.substitute(definition.train.run, values)
        var environment = ["SERVAL_RUN_ID": options.runId, "SERVAL_PIPELINE": definition.name, "SERVAL_MODEL": definition.model,
                           "SERVAL_PARAMS_FILE": paramsFile.path, "SERVAL_OUTPUT_MODEL": model.path, "SERVAL_CANDIDATE": String(index)]
        for (dataName, path) in definition.data { environment["SERVAL_DATA_\(Self.environmentName(dataName))"] = path }
        echo("[\(name)] $ \(command)")
        let outcome = try await CommandStep(command: command, folder: folder, environment: environment, log: log, prefix: name).run(echo: echo)
        guard outcome.status == 0 else {
            throw StepFailure(message: "the train command exited with status \(outcome.status); its last lines (whole log: \(log.path)):\n"
                                  + outcome.tail.map { "  " + $0 }.joined(separator: "\n"))
        }
        guard FileManager.default.fileExists(atPath: model.path) else {
            throw StepFailure(message: "the train command exited 0 but wrote no model at ${outputs.model} (\(model.path))")
        }
        do {
            _ = try Session(graph: try ONNXModel(contentsOf: model).graph)
        } catch {
            throw StepFailure(message: "the train command wrote \(model.path), which is not a model Serval can load: \(error)")
        }
        let kept = try cache.storeModel("train", key, from: model)
        return Trained(params: candidate, model: kept, sha256: try FileDigest.sha256(of: kept).hex, cached: false)
    }

    static func environmentName(_ name: String) -> String {
        String(name.uppercased().map { $0.isLetter || $0.isNumber ? $0 : "_" })
    }

    func evaluateKey(_ sha256: String, eval: PipelineRunRecord.DataInput) -> String {
        let settings = definition.evaluate
        return StepCache.key([("model", sha256), ("eval", eval.md5), ("label", settings.labelColumn),
                              ("metrics", settings.metrics.map(\.rawValue).joined(separator: ",")),
                              ("columns", settings.columns?.joined(separator: ",") ?? "")])
    }

    /// Scores a model on the eval data; cached by the model's hash, the data's hash and what is computed.
    func evaluate(_ model: URL, sha256: String, eval: PipelineRunRecord.DataInput) throws -> (metrics: [EvaluationMetric: Double], cached: Bool) {
        let settings = definition.evaluate
        let key = evaluateKey(sha256, eval: eval)
        if !options.force, let named = cache.value([String: Double].self, "evaluate", key) {
            return (Dictionary(uniqueKeysWithValues: named.compactMap { key, value in EvaluationMetric(rawValue: key).map { ($0, value) } }), true)
        }
        let scored: Evaluation.Scored
        do {
            scored = try Evaluation.score(model: model, data: folder.appendingPathComponent(eval.path), labelColumn: settings.labelColumn, columns: settings.columns)
        } catch let error as PipelineError {
            throw StepFailure(message: "evaluate: \(error.description)")
        }
        let metrics = try Evaluation.metrics(settings.metrics, scored)
        try cache.storeValue(metrics.named, "evaluate", key)
        return (metrics, false)
    }

    /// The int8 model, when it stays within the distance on the calibration rows and passes the gates; nil
    /// keeps the float model, with the reason in the step's detail.
    private func quantizeStep(_ settings: PipelineDefinition.Quantize, _ model: URL, sha256: String, eval: PipelineRunRecord.DataInput,
                              champion: [EvaluationMetric: Double]?, _ record: inout PipelineRunRecord) async throws
        -> (file: URL, sha256: String, metrics: [EvaluationMetric: Double])? {
        try await step("quantize", &record) { _ in
            let calibrationPath = try settings.calibration.map { try Substitution.substitute($0, self.definition.data.reduce(into: [:]) { $0["data.\($1.name)"] = $1.path }) }
                ?? eval.path
            let calibration = self.folder.appendingPathComponent(calibrationPath)
            let key = StepCache.key([("model", sha256), ("calibration", try DVCHash.file(calibration).md5), ("max_cosine_distance", String(settings.maxCosineDistance))])
            var report = ModelQuantizer.Report()
            let quantized: URL
            if !self.options.force, let cached = self.cache.model("quantize", key) {
                quantized = cached
            } else {
                let output = self.runFolder.appendingPathComponent("quantized.onnx")
                report = try ModelQuantizer().quantize(contentsOf: model, writingTo: output)
                guard !report.quantized.isEmpty else {
                    return (nil, [:], "float model kept: nothing to quantize (no MatMul or Gemm with constant float weights)")
                }
                quantized = try self.cache.storeModel("quantize", key, from: output)
            }
            // Distance between the float and int8 outputs on the calibration rows.
            let label = self.definition.evaluate.labelColumn, columns = self.definition.evaluate.columns
            let reference = try Evaluation.score(model: model, data: calibration, labelColumn: label, columns: columns)
            let candidate = try Evaluation.score(model: quantized, data: calibration, labelColumn: label, columns: columns)
            guard let a = reference.predictions.probabilities ?? reference.predictions.values,
                  let b = candidate.predictions.probabilities ?? candidate.predictions.values, a.count == b.count else {
                return (nil, [:], "float model kept: the model gives no probabilities or values to compare")
            }
            let distance = ModelQuantizer.cosineDistance(a, b)
            let int8SHA = try FileDigest.sha256(of: quantized).hex
            guard distance <= settings.maxCosineDistance else {
                return (nil, ["int8_sha256": int8SHA], String(format: "float model kept: cosine distance %.3g > max_cosine_distance %g", distance, settings.maxCosineDistance))
            }
            let metrics = try self.evaluate(quantized, sha256: int8SHA, eval: eval).metrics
            if let failed = Gates.check(self.definition.evaluate.gates, candidate: metrics, champion: champion).first(where: { $0.outcome == .failed }) {
                return (nil, ["int8_sha256": int8SHA], "float model kept: the int8 model fails \(failed.metric.rawValue) \(failed.rule)")
            }
            return ((quantized, int8SHA, metrics), ["int8_sha256": int8SHA], String(format: "int8 kept: cosine distance %.3g", distance))
        }
    }

    /// The registered version's lineage: data hashes, params, deps hashes, the git commit, metrics of candidate
    /// and champion, and the pipeline and run.
    func lineage(_ candidate: [String: ParameterValue], metrics: [EvaluationMetric: Double], champion: [EvaluationMetric: Double]?,
                 data: [PipelineRunRecord.DataInput], deps: [(path: String, md5: String)], quantized: Bool) -> VersionMetadata {
        var metadata = VersionMetadata()
        metadata.description = "pipeline \(definition.name), run \(options.runId)"
        metadata.metrics = metrics.named
        metadata.championMetrics = champion?.named
        var params: [String: VersionMetadata.ParamValue] = [:]
        for (name, value) in definition.params { params[name] = Self.paramValue(candidate[name] ?? value) }
        for (name, value) in candidate { params[name] = Self.paramValue(value) }
        metadata.params = params
        metadata.datasets = data.map { .init(name: $0.name, path: $0.path, md5: $0.md5) }
        var source = VersionMetadata.Source()
        source.runId = options.runId
        source.pipeline = definition.name
        source.deps = deps.isEmpty ? nil : Dictionary(deps.map { ($0.path, $0.md5) }, uniquingKeysWith: { $1 })
        source.gitCommit = Self.gitCommit(folder)
        metadata.source = source
        metadata.tags = ["pipeline": definition.name, "trigger": options.trigger, "quantized": quantized ? "true" : "false"]
        return metadata
    }

    static func paramValue(_ value: ParameterValue) -> VersionMetadata.ParamValue {
        switch value {
        case .int(let number): return .number(Double(number))
        case .double(let number): return .number(number)
        default: return .string(value.text)
        }
    }

    /// `HEAD`'s commit when `folder` is in a git work tree (read from `.git`, resolving a branch through its ref
    /// file or `packed-refs`).
    static func gitCommit(_ folder: URL) -> String? {
        guard let root = DVCProject.gitRoot(folder) else { return nil }
        let git = root.appendingPathComponent(".git")
        guard DVCProject.isDirectory(git), let head = try? String(contentsOf: git.appendingPathComponent("HEAD"), encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines) else { return nil }
        guard head.hasPrefix("ref: ") else { return head.count == 40 ? head : nil }
        let ref = String(head.dropFirst(5))
        if let commit = try? String(contentsOf: git.appendingPathComponent(ref), encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines) {
            return commit
        }
        let packed = (try? String(contentsOf: git.appendingPathComponent("packed-refs"), encoding: .utf8)) ?? ""
        for line in packed.split(separator: "\n") where line.hasSuffix(" " + ref) { return String(line.prefix(40)) }
        return nil
    }
}
