import ArgumentParser
import ServalAuth

/// `serval auth`: API keys for `--auth-config`.
struct AuthCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "auth", abstract: "Make API keys for --auth-config.", subcommands: [NewKey.self])

    /// `serval auth new-key NAME --scopes infer,read [--models iris,fraud]`: prints a new key once, and the auth.yaml
    /// line that stores only its SHA-256.
    struct NewKey: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "new-key", abstract: "Print a new API key (once) and the auth.yaml line with its SHA-256.")

        @Argument(help: "The key's name: the principal in logs, history and job records.")
        var name: String

        @Option(help: "Comma-separated scopes: health, infer, read, admin, metrics.")
        var scopes: String

        @Option(help: "Comma-separated models the key may use for infer and read (default: all).")
        var models: String?

        func run() throws {
            let names = scopes.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            for scope in names where Scope(rawValue: scope) == nil {
                throw AuthConfigError("--scopes: unknown scope '\(scope)'; expected one of \(Scope.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            guard !names.isEmpty, !name.isEmpty else { throw AuthConfigError("give a name and at least one scope") }
            let (key, sha256) = APIKey.generate()
            let allowList = models.map { ", models: [" + $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.joined(separator: ", ") + "]" } ?? ""
            print("key (shown once; store it as a secret): \(key)")
            print("auth.yaml, under api_keys:")
            print("  - {name: \(name), sha256: \"\(sha256)\", scopes: [\(names.joined(separator: ", "))]\(allowList)}")
        }
    }
}
