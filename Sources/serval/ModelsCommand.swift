import ArgumentParser
import Foundation
import ServalPipeline

/// `serval models ...`: the registry from the command line, as a client of a running server's REST API.
struct ModelsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "models", abstract: "Register versions, move and roll back labels, and read the history of a running server.",
        subcommands: [List.self, Versions.self, Register.self, Label.self, Rollback.self, Traffic.self, History.self])

    /// Flags every subcommand takes.
    struct Connection: ParsableArguments {
        @Option(help: "The server's HTTP address.")
        var url = "http://127.0.0.1:8000"

        @Option(help: "Who is making the change, recorded in the history (the Serval-Actor header). Default: $USER.")
        var actor: String?

        @Flag(help: "Print the server's JSON instead of a table.")
        var json = false

        func client() throws -> RegistryClient {
            try RegistryClient(url: url, actor: actor ?? ProcessInfo.processInfo.environment["USER"] ?? ProcessInfo.processInfo.userName)
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Every model with its versions' states and its labels.")
        @OptionGroup var connection: Connection

        func run() async throws {
            let client = try connection.client()
            let index = try await client.send("POST", "v2/repository/index", json: [String: Any]()) as? [[String: Any]] ?? []
            let names = Array(Set(index.compactMap { $0["name"] as? String })).sorted()
            var rows: [[String]] = []
            var all: [[String: Any]] = []
            for name in names {
                let labels = (try? await client.send("GET", "v2/models/\(name)/labels") as? [String: Any])?["labels"] as? [String: String] ?? [:]
                let states = index.filter { $0["name"] as? String == name }.map { "\($0["version"] as? String ?? "-"):\($0["state"] as? String ?? "")" }
                rows.append([name, states.joined(separator: " "), labels.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")])
                all.append(["name": name, "versions": index.filter { $0["name"] as? String == name }, "labels": labels])
            }
            print(connection.json ? TextTable.json(all) : TextTable.render(["MODEL", "VERSIONS", "LABELS"], rows))
        }
    }

    struct Versions: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "A model's versions with state, labels, hash and lineage.")
        @OptionGroup var connection: Connection
        @Argument(help: "Model name.") var model: String

        func run() async throws {
            let body = try await connection.client().send("GET", "v2/models/\(model)/versions")
            if connection.json { print(TextTable.json(body)); return }
            let versions = (body as? [String: Any])?["versions"] as? [[String: Any]] ?? []
            let rows = versions.map { version -> [String] in
                let metrics = ((version["metadata"] as? [String: Any])?["metrics"] as? [String: Any] ?? [:]).sorted { $0.key < $1.key }
                return [version["version"] as? String ?? "", version["state"] as? String ?? "", (version["labels"] as? [String] ?? []).joined(separator: ","),
                        String((version["sha256"] as? String ?? "").prefix(12)), version["created_at"] as? String ?? "", version["registered_by"] as? String ?? "",
                        metrics.map { "\($0.key)=\($0.value)" }.joined(separator: " ")]
            }
            print(TextTable.render(["VERSION", "STATE", "LABELS", "SHA256", "CREATED", "BY", "METRICS"], rows))
        }
    }

    struct Register: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Upload an ONNX file as the model's next version, with its lineage.",
            discussion: "Example: serval models register iris model.onnx --metric accuracy=0.97 --tag team=risk --dataset data/train.csv")
        @OptionGroup var connection: Connection
        @Argument(help: "Model name.") var model: String
        @Argument(help: "The ONNX file.") var file: String
        @Option(help: "A metric, NAME=NUMBER (repeatable).") var metric: [String] = []
        @Option(help: "A tag, KEY=VALUE (repeatable).") var tag: [String] = []
        @Option(help: "A training parameter, NAME=VALUE (repeatable; numbers stay numbers).") var param: [String] = []
        @Option(help: "A data set, [NAME=]PATH (repeatable): a file or a directory, hashed as DVC does. NAME defaults to its stem.") var dataset: [String] = []
        @Option(help: "A description.") var description: String?
        @Option(name: .customLong("git-commit"), help: "The commit the version was trained from.") var gitCommit: String?

        func run() async throws {
            guard let bytes = FileManager.default.contents(atPath: file) else { throw ValidationError("cannot read \(file)") }
            var metadata: [String: Any] = [:]
            if let description { metadata["description"] = description }
            metadata["metrics"] = try Dictionary(uniqueKeysWithValues: metric.map { pair -> (String, Double) in
                let (key, value) = try Self.split(pair, flag: "--metric")
                guard let number = Double(value) else { throw ValidationError("--metric \(pair): the value must be a number") }
                return (key, number)
            })
            metadata["tags"] = try Dictionary(uniqueKeysWithValues: tag.map { try Self.split($0, flag: "--tag") })
            metadata["params"] = try Dictionary(uniqueKeysWithValues: param.map { pair -> (String, Any) in
                let (key, value) = try Self.split(pair, flag: "--param")
                return (key, Double(value).map { $0 as Any } ?? value)
            })
            metadata["datasets"] = try dataset.map { spec -> [String: String] in
                let (name, path): (String, String)
                if let equals = spec.firstIndex(of: "=") {
                    (name, path) = (String(spec[..<equals]), String(spec[spec.index(after: equals)...]))
                } else {
                    (name, path) = (URL(fileURLWithPath: spec).deletingPathExtension().lastPathComponent, spec)
                }
                // DVC's md5: of the bytes for a file, of the .dir manifest for a directory.
                let url = URL(fileURLWithPath: path)
                var isDirectory: ObjCBool = false
                guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { throw ValidationError("--dataset \(path): no such file") }
                return ["name": name, "path": path, "md5": isDirectory.boolValue ? try DVCHash.directory(url).md5 : try DVCHash.file(url).md5]
            }
            if let gitCommit { metadata["source"] = ["git_commit": gitCommit] }
            for key in ["metrics", "tags", "params"] where (metadata[key] as? [String: Any])?.isEmpty == true { metadata[key] = nil }
            if (metadata["datasets"] as? [Any])?.isEmpty == true { metadata["datasets"] = nil }
            let metadataJSON = try JSONSerialization.data(withJSONObject: metadata, options: [.sortedKeys])
            let (body, contentType) = RegistryClient.multipart([
                (name: "model", filename: URL(fileURLWithPath: file).lastPathComponent, bytes: bytes), (name: "metadata", filename: nil, bytes: metadataJSON),
            ])
            let answer = try await connection.client().send("POST", "v2/models/\(model)/versions", body: body, contentType: contentType)
            if connection.json { print(TextTable.json(answer)); return }
            let fields = answer as? [String: Any] ?? [:]
            print("registered \(model) version \(fields["version"] as? String ?? "?") (\(fields["state"] as? String ?? "?"), sha256 \(fields["sha256"] as? String ?? "?"))")
        }

        static func split(_ pair: String, flag: String) throws -> (String, String) {
            guard let equals = pair.firstIndex(of: "="), equals != pair.startIndex else { throw ValidationError("\(flag) expects NAME=VALUE, got '\(pair)'") }
            return (String(pair[..<equals]), String(pair[pair.index(after: equals)...]))
        }
    }

    struct Label: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Point a label at a version (or remove it with --delete).")
        @OptionGroup var connection: Connection
        @Argument(help: "Model name.") var model: String
        @Argument(help: "Label, e.g. stable or canary.") var label: String
        @Argument(help: "Version number (omit with --delete).") var version: String?
        @Option(help: "Why, for the history.") var reason: String?
        @Flag(help: "Remove the label.") var delete = false

        func validate() throws {
            if delete == (version != nil) { throw ValidationError(delete ? "--delete takes no version" : "give a version, or --delete") }
        }

        func run() async throws {
            var body: [String: Any] = [:]
            if let reason { body["reason"] = reason }
            if let version { body["version"] = version }
            let answer = try await connection.client().send(delete ? "DELETE" : "PUT", "v2/models/\(model)/labels/\(label)", json: body)
            if connection.json { print(TextTable.json(answer)); return }
            let fields = answer as? [String: Any] ?? [:]
            let from = fields["previous"] as? String ?? "none", to = fields["version"] as? String ?? "none"
            print("\(model) \(label): \(from) -> \(to)")
        }
    }

    struct Rollback: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Move a label back to the version it pointed at before its last move.")
        @OptionGroup var connection: Connection
        @Argument(help: "Model name.") var model: String
        @Option(help: "The label to roll back.") var label = "stable"
        @Option(help: "Why, for the history.") var reason: String?

        func run() async throws {
            var body: [String: Any] = [:]
            if let reason { body["reason"] = reason }
            let answer = try await connection.client().send("POST", "v2/models/\(model)/labels/\(label)/rollback", json: body)
            if connection.json { print(TextTable.json(answer)); return }
            let fields = answer as? [String: Any] ?? [:]
            print("\(model) \(label): \(fields["previous"] as? String ?? "none") -> \(fields["version"] as? String ?? "none")")
        }
    }

    struct Traffic: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show a model's traffic policy with live per-arm figures, or set or clear it.",
            discussion: "Examples: serval models traffic iris --route stable=90 --route canary=10 --max-error-rate 0.02 --steps 10,25,50,100\n          serval models traffic iris --clear")
        @OptionGroup var connection: Connection
        @Argument(help: "Model name.") var model: String
        @Option(help: "A route, LABEL=WEIGHT or vN=WEIGHT for a version (repeatable; weights sum to 100).") var route: [String] = []
        @Option(help: "A shadow, LABEL=PERCENT or vN=PERCENT (repeatable).") var shadow: [String] = []
        @Option(name: .customLong("max-error-rate"), help: "Guard: roll back an arm whose error rate is over this.") var maxErrorRate: Double?
        @Option(name: .customLong("max-p99-ratio"), help: "Guard: roll back an arm whose p99 is over this times stable's.") var maxP99Ratio: Double?
        @Option(name: .customLong("min-requests"), help: "Guard: requests an arm needs before it is judged.") var minRequests = 200
        @Option(name: .customLong("window-secs"), help: "Guard: the window the figures cover.") var windowSecs = 60
        @Option(help: "Progressive steps for the canary's weight, e.g. 10,25,50,100.") var steps: String?
        @Option(name: .customLong("interval-secs"), help: "Progressive: seconds between steps.") var intervalSecs = 60
        @Flag(help: "Remove the policy.") var clear = false

        static func target(_ name: String) -> [String: Any] {
            if name.hasPrefix("v"), Int(name.dropFirst()) != nil { return ["version": String(name.dropFirst())] }
            return ["label": name]
        }

        func run() async throws {
            let client = try connection.client()
            let path = "v2/models/\(model)/traffic"
            if clear {
                _ = try await client.send("DELETE", path)
                print("\(model): traffic policy removed")
                return
            }
            var answer: Any
            if route.isEmpty {
                answer = try await client.send("GET", path)
            } else {
                var policy: [String: Any] = [:]
                policy["routes"] = try route.map { spec -> [String: Any] in
                    let (name, weight) = try Register.split(spec, flag: "--route")
                    guard let value = Int(weight) else { throw ValidationError("--route \(spec): the weight must be an integer") }
                    return Self.target(name).merging(["weight": value]) { $1 }
                }
                if !shadow.isEmpty {
                    policy["shadow"] = try shadow.map { spec -> [String: Any] in
                        let (name, percent) = try Register.split(spec, flag: "--shadow")
                        guard let value = Double(percent) else { throw ValidationError("--shadow \(spec): the percent must be a number") }
                        return Self.target(name).merging(["percent": value]) { $1 }
                    }
                }
                if maxErrorRate != nil || maxP99Ratio != nil {
                    var rule: [String: Any] = ["min_requests": minRequests, "window_secs": windowSecs]
                    if let maxErrorRate { rule["max_error_rate"] = maxErrorRate }
                    if let maxP99Ratio { rule["max_p99_latency_ratio"] = maxP99Ratio }
                    policy["guard"] = rule
                }
                if let steps {
                    let values = steps.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
                    policy["progressive"] = ["steps": values, "interval_secs": intervalSecs]
                }
                answer = try await client.send("PUT", path, json: policy)
            }
            if connection.json { print(TextTable.json(answer)); return }
            let arms = (answer as? [String: Any])?["arms"] as? [[String: Any]] ?? []
            let rows = arms.map { arm -> [String] in
                [arm["target"] as? String ?? "", arm["version"] as? String ?? "-", "\(arm["weight"] as? Int ?? 0)", "\(arm["requests"] as? Int ?? 0)",
                 "\(arm["errors"] as? Int ?? 0)", String(format: "%.2f", arm["p50_ms"] as? Double ?? 0), String(format: "%.2f", arm["p99_ms"] as? Double ?? 0)]
            }
            print(TextTable.render(["ARM", "VERSION", "WEIGHT", "REQUESTS", "ERRORS", "P50_MS", "P99_MS"], rows))
        }
    }

    struct History: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Who changed what and why, newest first.")
        @OptionGroup var connection: Connection
        @Argument(help: "Model name.") var model: String
        @Option(help: "How many entries (1-1000).") var limit = 20

        func run() async throws {
            let body = try await connection.client().send("GET", "v2/models/\(model)/history?limit=\(limit)")
            if connection.json { print(TextTable.json(body)); return }
            let entries = (body as? [String: Any])?["entries"] as? [[String: Any]] ?? []
            let rows = entries.map { entry -> [String] in
                let details = (entry["details"] as? [String: Any] ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value is NSNull ? "-" : "\($0.value)")" }
                return [entry["time"] as? String ?? "", entry["actor"] as? String ?? "", entry["action"] as? String ?? "", details.joined(separator: " "), entry["reason"] as? String ?? ""]
            }
            print(TextTable.render(["TIME", "ACTOR", "ACTION", "DETAILS", "REASON"], rows))
        }
    }
}
