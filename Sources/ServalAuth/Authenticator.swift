import Foundation
import JWTKit
import Metrics
import ServalWire

/// Turns a request's credentials into a `Principal`: an `Authorization: Bearer` API key (looked up by digest, in
/// constant time) or JWT (signature by jwt-kit; issuer, audience, expiry and not-before checked against an injected
/// clock), or the anonymous principal when there are none. Also holds the per-principal rate limiter.
public final class Authenticator: Sendable {
    public let config: AuthConfig
    private let jwtKeys: JWTKeyCollection?
    private let limiter: RateLimiter
    /// Wall-clock time for JWT expiry; tests inject their own.
    private let now: @Sendable () -> Date

    public static func make(
        config: AuthConfig, clock: @escaping @Sendable () -> Double, now: @escaping @Sendable () -> Date = { Date() }
    ) async throws -> Authenticator {
        var keys: JWTKeyCollection?
        if let jwt = config.jwt {
            let collection = JWTKeyCollection()
            if let file = jwt.jwksFile {
                let text: String
                do { text = try String(contentsOf: file, encoding: .utf8) } catch { throw AuthConfigError("jwt.jwks_file: cannot read \(file.path)") }
                do { try await collection.add(jwksJSON: text) } catch { throw AuthConfigError("jwt.jwks_file: \(file.lastPathComponent) is not a usable JWKS: \(error)") }
            } else if let file = jwt.hs256SecretFile {
                guard let secret = try? Data(contentsOf: file), !secret.isEmpty else { throw AuthConfigError("jwt.hs256_secret_file: cannot read \(file.path) or it is empty") }
                let trimmed = Data(String(decoding: secret, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines).utf8)
                guard trimmed.count >= 32 else {
                    throw AuthConfigError("jwt.hs256_secret_file: the secret has \(trimmed.count) bytes; HS256 needs at least 32")
                }
                await collection.add(hmac: HMACKey(from: trimmed), digestAlgorithm: .sha256)
            }
            keys = collection
        }
        return Authenticator(config: config, jwtKeys: keys, limiter: RateLimiter(clock: clock), now: now)
    }

    private init(config: AuthConfig, jwtKeys: JWTKeyCollection?, limiter: RateLimiter, now: @escaping @Sendable () -> Date) {
        self.config = config
        anonymous = Principal(name: Principal.anonymousName, scopes: config.anonymousScopes)
        self.jwtKeys = jwtKeys
        self.limiter = limiter
        self.now = now
    }

    /// The anonymous caller: what `anonymous:` in auth.yaml grants (default: health).
    public let anonymous: Principal

    /// The principal for an `Authorization` header value; nil (no header) is the anonymous principal. With a
    /// connection's `memo`, an API key that connection already presented is not looked up again.
    public func authenticate(authorization: String?, memo: CredentialMemo? = nil) async throws -> Principal {
        guard let authorization else { return anonymous }
        switch try credential(authorization: authorization, memo: memo) {
        case .principal(let principal): return principal
        case .jwt(let token): return try await principal(jwt: token)
        }
    }

    /// What a bearer names, decided without suspending: an API key's principal, or a JWT still to verify.
    enum Credential: Sendable {
        case principal(Principal)
        case jwt(String)
    }

    /// Reads an `Authorization` header: an API key is looked up here (no suspension on the common path), a JWT is
    /// handed back for `principal(jwt:)`.
    func credential(authorization: String, memo: CredentialMemo? = nil) throws -> Credential {
        guard let credential = Self.bearerToken(authorization) else {
            throw AuthenticationError("the Authorization header must be 'Bearer <API key or JWT>'")
        }
        if credential.utf8.starts(with: APIKey.prefix.utf8) {
            if let principal = memo?.principal(presenting: credential) { return .principal(principal) }
            guard let principal = config.keys.principal(forKey: credential) else { throw AuthenticationError("unknown API key") }
            memo?.remember(credential, as: principal)
            return .principal(principal)
        }
        guard jwtKeys != nil, config.jwt != nil else {
            throw Self.noJWTs
        }
        guard credential.split(separator: ".", omittingEmptySubsequences: false).count == 3 else {
            throw AuthenticationError("the bearer token is neither an API key (sk_...) nor a JWT")
        }
        return .jwt(String(credential))
    }

    /// The principal of a JWT `credential(authorization:)` found: signature by jwt-kit, then expiry, not-before,
    /// issuer and audience against the injected clock.
    func principal(jwt token: String) async throws -> Principal {
        guard let jwtKeys, let settings = config.jwt else {
            throw Self.noJWTs
        }
        let claims: TokenClaims
        do { claims = try await jwtKeys.verify(token, as: TokenClaims.self) } catch {
            throw AuthenticationError("the JWT was refused: \(Self.reason(error))")
        }
        let time = now()
        guard let expiry = claims.expiry else { throw AuthenticationError("the JWT was refused: it has no exp claim") }
        guard time < expiry else { throw AuthenticationError("the JWT was refused: it expired") }
        if let notBefore = claims.notBefore, time < notBefore { throw AuthenticationError("the JWT was refused: it is not valid yet (nbf)") }
        guard claims.issuer == settings.issuer else { throw AuthenticationError("the JWT was refused: its issuer is not \(settings.issuer)") }
        guard claims.audiences.contains(settings.audience) else { throw AuthenticationError("the JWT was refused: its audience does not include \(settings.audience)") }
        let scopes = Set(claims.strings(settings.scopesClaim).compactMap(Scope.init(rawValue:)))
        return Principal(name: "jwt:" + (claims.subject ?? "unknown"), scopes: scopes)
    }

    /// The credential after `Bearer` (the scheme is case-insensitive, RFC 9110 §11.1), without surrounding spaces;
    /// nil for another scheme or none. On every authenticated request, so it reads bytes and allocates nothing.
    static func bearerToken(_ header: String) -> Substring? {
        let utf8 = header.utf8
        func isSpace(_ byte: UInt8) -> Bool { byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") }
        var index = utf8.startIndex
        while index != utf8.endIndex, isSpace(utf8[index]) { index = utf8.index(after: index) }
        for expected in "bearer".utf8 {
            guard index != utf8.endIndex, utf8[index] | 0x20 == expected else { return nil }
            index = utf8.index(after: index)
        }
        guard index != utf8.endIndex, isSpace(utf8[index]) else { return nil }
        var end = utf8.endIndex
        while index != end, isSpace(utf8[index]) { index = utf8.index(after: index) }
        while end != index, isSpace(utf8[utf8.index(before: end)]) { end = utf8.index(before: end) }
        guard index != end else { return nil }
        return header[index..<end]
    }

    /// The principal of a client certificate the TLS handshake verified (mTLS), used when no bearer is given: the
    /// entry in `client_certificates:` with its subject, else a principal named by the subject with the anonymous
    /// scopes (so the history names who it was, and anything beyond them gets 403).
    public func principal(certificateSubject subject: String) -> Principal {
        config.certificates[subject] ?? Principal(name: subject, scopes: config.anonymousScopes)
    }

    /// nil when the principal may go ahead now (its token bucket had a token), else the seconds until it may retry.
    public func admit(_ principal: Principal) -> Double? {
        limiter.admit(principal.name, principal.rate ?? config.defaultRate)
    }

    /// Why a request may not go ahead; each frontend maps it to its own status (401/403/429, or the gRPC codes).
    public enum Refusal: Error, Sendable, Equatable {
        case unauthenticated(String)
        case forbidden(String)
        case rateLimited(String, retryAfter: Double)
    }

    /// The one decision both frontends make before a request runs: `rule` nil for a call no route answers (only an
    /// authenticated caller may learn that); an anonymous caller refused by the rule needs credentials, anyone
    /// else gets the reason; past its token bucket a principal is rate limited, except on health probes, so
    /// readiness stays truthful. Rejections are counted in `serval_rate_limited_total{principal}`.
    public func authorize(_ principal: Principal, anonymous: Bool, rule: AccessRule?) throws(Refusal) {
        if let rule {
            if case .forbidden(let reason) = principal.decide(rule) {
                throw anonymous ? Self.credentialsNeeded : .forbidden(reason)
            }
        } else if anonymous {
            throw Self.credentialsNeeded
        }
        let probe = rule.map { $0.scopes.isEmpty || $0.scopes == Self.healthOnly } ?? false
        if !probe, let wait = admit(principal) {
            Counter(label: "serval_rate_limited_total", dimensions: [("principal", principal.name)]).increment()
            throw .rateLimited("\(principal.name) is over its rate limit; retry in \(String(format: "%.2f", wait)) s", retryAfter: wait)
        }
    }

    private static let healthOnly: Set<Scope> = [.health]
    private static let noJWTs = AuthenticationError("the bearer token is not an API key (sk_...) and this server accepts no JWTs")

    static let credentialsNeeded = Refusal.unauthenticated("this call needs credentials: send 'Authorization: Bearer <API key or JWT>'")

    private static func reason(_ error: Error) -> String {
        guard let jwt = error as? JWTError else { return "\(error)" }
        let type = jwt.errorType
        if type == .signatureVerificationFailed { return "bad signature" }
        if type == .malformedToken { return "malformed token" }
        if type == .unknownKID || type == .missingKIDHeader { return "no key for it (kid)" }
        if type == .unsupportedAlgorithm || type == .signingAlgorithmFailure { return "its algorithm is not accepted" }
        return jwt.reason ?? "\(type)"
    }
}

/// A JWT's claims as decoded, before checks: the registered ones Serval reads, plus every claim by name (for the
/// configurable scopes claim). Checks run in `Authenticator`, against its clock.
struct TokenClaims: JWTPayload {
    let claims: [String: JSONValue]

    init(from decoder: Decoder) throws {
        claims = try decoder.singleValueContainer().decode([String: JSONValue].self)
    }

    func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(claims)
    }

    func verify(using algorithm: some JWTAlgorithm) async throws {}

    var expiry: Date? { claims["exp"]?.number.map(Date.init(timeIntervalSince1970:)) }
    var notBefore: Date? { claims["nbf"]?.number.map(Date.init(timeIntervalSince1970:)) }
    var issuer: String? { claims["iss"]?.string }
    var subject: String? { claims["sub"]?.string }
    var audiences: [String] { strings("aud") }

    /// A claim as strings: an array of strings, or one string split at spaces (OAuth's `scope`).
    func strings(_ name: String) -> [String] {
        switch claims[name] {
        case .string(let value)?: return value.split(separator: " ").map(String.init)
        case .array(let values)?: return values.compactMap(\.string)
        default: return []
        }
    }
}
