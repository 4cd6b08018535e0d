import Foundation
import Yams

/// A mistake in auth.yaml, naming the field.
public struct AuthConfigError: Error, Sendable, Equatable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// `--auth-config auth.yaml`: API keys (by SHA-256), an optional JWT issuer, default rate limits, and what
/// anonymous callers may do.
///
/// ```yaml
/// api_keys:
///   - {name: scoring-app, sha256: "…", scopes: [infer], models: [iris, fraud]}
///   - {name: ops, sha256: "…", scopes: [read, admin, metrics], rate: 50/s, burst: 100}
/// jwt: {issuer: https://idp.example, audience: serval, jwks_file: jwks.json, scopes_claim: scope}
/// default_rate: {rate: 200/s, burst: 400}
/// anonymous: [health]
/// client_certificates:            # with --tls-client-ca: a verified client certificate's subject is its principal
///   - {subject: "CN=batch-scorer,O=Example", scopes: [infer], models: [iris]}
/// ```
public struct AuthConfig: Sendable {
    public struct JWTSettings: Sendable, Equatable {
        public let issuer: String
        public let audience: String
        /// A JWKS document (RS256, ES256, ...), or
        public let jwksFile: URL?
        /// a file holding an HMAC secret (HS256).
        public let hs256SecretFile: URL?
        /// The claim holding the scopes: a space-separated string or an array.
        public let scopesClaim: String
    }

    public let keys: KeyRing
    public let jwt: JWTSettings?
    public let defaultRate: RateLimit
    public let anonymousScopes: Set<Scope>
    /// Principals of client certificates (mTLS), by subject as RFC 4514 text; a verified certificate not listed
    /// here is a principal with the anonymous scopes, named by its subject.
    public let certificates: [String: Principal]

    public init(keys: [(sha256: String, principal: Principal)], jwt: JWTSettings? = nil, defaultRate: RateLimit = RateLimit(rate: 200, burst: 400),
                anonymousScopes: Set<Scope> = [.health], certificates: [Principal] = []) throws {
        self.keys = try KeyRing(keys)
        self.jwt = jwt
        self.defaultRate = defaultRate
        self.anonymousScopes = anonymousScopes
        self.certificates = Dictionary(certificates.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
    }

    private struct File: Decodable {
        struct Key: Decodable {
            let name: String?
            let sha256: String?
            let scopes: [String]?
            let models: [String]?
            let rate: String?
            let burst: Double?
        }
        struct JWT: Decodable {
            let issuer: String?
            let audience: String?
            let jwks_file: String?
            let hs256_secret_file: String?
            let scopes_claim: String?
        }
        struct Rate: Decodable {
            let rate: String?
            let burst: Double?
        }
        struct ClientCertificate: Decodable {
            let subject: String?
            let scopes: [String]?
            let models: [String]?
            let rate: String?
            let burst: Double?
        }
        let api_keys: [Key]?
        let jwt: JWT?
        let default_rate: Rate?
        let anonymous: [String]?
        let client_certificates: [ClientCertificate]?
    }

    private static let fields: Set<String> = ["api_keys", "jwt", "default_rate", "anonymous", "client_certificates"]

    /// Reads auth.yaml; relative file paths are relative to its folder. Errors name the file and the field.
    public static func load(_ url: URL) throws -> AuthConfig {
        let text: String
        do { text = try String(contentsOf: url, encoding: .utf8) } catch { throw AuthConfigError("cannot read \(url.path): \(error.localizedDescription)") }
        do {
            return try parse(text, directory: url.deletingLastPathComponent())
        } catch let error as AuthConfigError {
            throw AuthConfigError("\(url.lastPathComponent): \(error.message)")
        }
    }

    public static func parse(_ text: String, directory: URL) throws -> AuthConfig {
        let node: Node?
        do { node = try Yams.compose(yaml: text) } catch { throw AuthConfigError("not valid YAML: \(error)") }
        if let mapping = node?.mapping {
            for key in mapping.keys {
                guard let name = key.string, fields.contains(name) else {
                    throw AuthConfigError("\(key.string ?? "?"): unknown field; expected one of \(fields.sorted().joined(separator: ", "))")
                }
            }
        }
        let file: File
        do { file = try node.map { try YAMLDecoder().decode(File.self, from: $0) } ?? File(api_keys: nil, jwt: nil, default_rate: nil, anonymous: nil, client_certificates: nil) } catch {
            throw AuthConfigError(describe(error))
        }
        var defaultRate = RateLimit(rate: 200, burst: 400)
        if let rate = file.default_rate {
            defaultRate = try limit(rate.rate, rate.burst, field: "default_rate", fallback: defaultRate)!
        }
        var keys: [(sha256: String, principal: Principal)] = []
        var names = Set<String>()
        for (index, key) in (file.api_keys ?? []).enumerated() {
            let field = "api_keys[\(index)]"
            guard let name = key.name, !name.isEmpty else { throw AuthConfigError("\(field).name is required") }
            guard names.insert(name).inserted else { throw AuthConfigError("\(field).name '\(name)' is used twice") }
            guard let sha256 = key.sha256 else { throw AuthConfigError("\(field).sha256 is required (the key's hex SHA-256, as `serval auth new-key` prints it)") }
            guard sha256.count == 64, KeyRing.bytes(hex: sha256) != nil else { throw AuthConfigError("\(field).sha256 must be 64 hex digits") }
            let scopes = try scopeSet(key.scopes ?? [], field: "\(field).scopes")
            guard !scopes.isEmpty else { throw AuthConfigError("\(field).scopes must name at least one of \(Scope.allCases.map(\.rawValue).joined(separator: ", "))") }
            let rate = try limit(key.rate, key.burst, field: field, fallback: nil)
            keys.append((sha256, Principal(name: name, scopes: scopes, models: key.models.map(Set.init), rate: rate)))
        }
        var jwt: JWTSettings?
        if let settings = file.jwt {
            guard let issuer = settings.issuer else { throw AuthConfigError("jwt.issuer is required") }
            guard let audience = settings.audience else { throw AuthConfigError("jwt.audience is required") }
            guard (settings.jwks_file == nil) != (settings.hs256_secret_file == nil) else {
                throw AuthConfigError("jwt needs exactly one of jwks_file or hs256_secret_file")
            }
            func resolve(_ path: String?) -> URL? {
                path.map { $0.hasPrefix("/") ? URL(fileURLWithPath: $0) : directory.appendingPathComponent($0) }
            }
            jwt = JWTSettings(issuer: issuer, audience: audience, jwksFile: resolve(settings.jwks_file), hs256SecretFile: resolve(settings.hs256_secret_file),
                              scopesClaim: settings.scopes_claim ?? "scope")
        }
        var certificates: [Principal] = []
        for (index, entry) in (file.client_certificates ?? []).enumerated() {
            let field = "client_certificates[\(index)]"
            guard let subject = entry.subject?.trimmingCharacters(in: .whitespaces), subject.contains("=") else {
                throw AuthConfigError("\(field).subject is required: the certificate's subject as RFC 4514 text, such as \"CN=batch-scorer,O=Example\"")
            }
            guard names.insert(subject).inserted else { throw AuthConfigError("\(field).subject '\(subject)' is used twice (or is also a key's name)") }
            let scopes = try scopeSet(entry.scopes ?? [], field: "\(field).scopes")
            guard !scopes.isEmpty else { throw AuthConfigError("\(field).scopes must name at least one of \(Scope.allCases.map(\.rawValue).joined(separator: ", "))") }
            certificates.append(Principal(name: subject, scopes: scopes, models: entry.models.map(Set.init), rate: try limit(entry.rate, entry.burst, field: field, fallback: nil)))
        }
        let anonymous = try scopeSet(file.anonymous ?? ["health"], field: "anonymous")
        return try AuthConfig(keys: keys, jwt: jwt, defaultRate: defaultRate, anonymousScopes: anonymous, certificates: certificates)
    }

    private static func scopeSet(_ names: [String], field: String) throws -> Set<Scope> {
        Set(try names.map { name in
            guard let scope = Scope(rawValue: name) else {
                throw AuthConfigError("\(field): unknown scope '\(name)'; expected one of \(Scope.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            return scope
        })
    }

    private static func limit(_ rate: String?, _ burst: Double?, field: String, fallback: RateLimit?) throws -> RateLimit? {
        guard rate != nil || burst != nil else { return fallback }
        guard let text = rate, let perSecond = RateLimit.parseRate(text) else {
            throw AuthConfigError("\(field).rate must be a positive rate such as 200/s, 1000/m or 50000/h, got '\(rate ?? "")'")
        }
        let size = burst ?? max(1, perSecond)
        guard size >= 1, size.isFinite else { throw AuthConfigError("\(field).burst must be at least 1, got \(size)") }
        return RateLimit(rate: perSecond, burst: size)
    }

    private static func describe(_ error: Error) -> String {
        if case DecodingError.typeMismatch(_, let context) = error { return "\(context.codingPath.map(\.stringValue).joined(separator: ".")): \(context.debugDescription)" }
        if case DecodingError.dataCorrupted(let context) = error { return "\(context.codingPath.map(\.stringValue).joined(separator: ".")): \(context.debugDescription)" }
        return "\(error)"
    }
}
