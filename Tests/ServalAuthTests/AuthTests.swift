import Foundation
import JWTKit
import ServalTestSupport
import Testing
@testable import ServalAuth

/// API keys, JWTs, scopes and the token bucket, with injected clocks.
struct AuthTests {
    static let folder = FileManager.default.temporaryDirectory.appendingPathComponent("serval-auth-\(UUID().uuidString)")

    static func config(_ yaml: String) throws -> AuthConfig {
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        return try AuthConfig.parse(yaml, directory: folder)
    }

    static func configError(_ yaml: String) -> String? {
        do {
            _ = try config(yaml)
            return nil
        } catch {
            return "\(error)"
        }
    }

    @Test func aNewKeyIsSk32RandomBytesAndItsDigestFindsIt() async throws {
        let (key, sha256) = APIKey.generate()
        #expect(key.hasPrefix("sk_"))
        #expect(key.count == 3 + 43)  // 32 bytes, base64url without padding
        #expect(!key.contains("+") && !key.contains("/") && !key.contains("="))
        #expect(APIKey.generate().key != key)
        #expect(sha256 == APIKey.sha256Hex(key) && sha256.count == 64)
        let auth = try await Authenticator.make(config: try Self.config("api_keys:\n  - {name: app, sha256: \"\(sha256)\", scopes: [infer]}\n"), clock: { 0 })
        #expect(try await auth.authenticate(authorization: "Bearer \(key)").name == "app")
        await #expect(throws: AuthenticationError("unknown API key")) { try await auth.authenticate(authorization: "Bearer sk_not-a-key") }
        await #expect(throws: AuthenticationError.self) { try await auth.authenticate(authorization: "Basic abc") }
        #expect(try await auth.authenticate(authorization: nil) == Principal(name: "anonymous", scopes: [.health]))
    }

    /// RFC 9110 §11: the scheme is case-insensitive, spaces (and tabs) around the credential are not part of it,
    /// and another scheme, a scheme glued to its credential or an empty credential is no bearer at all.
    @Test func theBearerCredentialIsReadAsRFC9110Spells() async throws {
        for header in ["Bearer tok", "bearer tok", "BEARER tok", "  Bearer   tok  ", "Bearer\ttok\t"] {
            #expect(Authenticator.bearerToken(header) == "tok", "\(header)")
        }
        for header in ["Basic tok", "Bearertok", "Bearer", "Bearer   ", "Bear tok", "", "Bearer_ tok"] {
            #expect(Authenticator.bearerToken(header) == nil, "\(header)")
        }
        let (key, sha256) = APIKey.generate()
        let auth = try await Authenticator.make(config: try Self.config("api_keys:\n  - {name: app, sha256: \"\(sha256)\", scopes: [infer]}\n"), clock: { 0 })
        #expect(try await auth.authenticate(authorization: "bearer  \(key) ").name == "app")
        // One byte short or one byte more is another key.
        await #expect(throws: AuthenticationError("unknown API key")) { try await auth.authenticate(authorization: "Bearer \(key.dropLast())") }
        await #expect(throws: AuthenticationError("unknown API key")) { try await auth.authenticate(authorization: "Bearer \(key)x") }
    }

    /// A connection's memo: the API key it presented is remembered with its principal, and only exactly those
    /// bytes give it back; any other key, or a key one character off, is looked up (and refused when unknown).
    @Test func aConnectionsMemoRemembersOnlyTheKeyItPresented() async throws {
        let (app, appDigest) = APIKey.generate()
        let (ops, opsDigest) = APIKey.generate()
        let auth = try await Authenticator.make(config: try Self.config(
            "api_keys:\n  - {name: app, sha256: \"\(appDigest)\", scopes: [infer]}\n  - {name: ops, sha256: \"\(opsDigest)\", scopes: [admin]}\n"), clock: { 0 })
        let memo = CredentialMemo()
        #expect(memo.principal(presenting: Substring(app)) == nil)
        #expect(try await auth.authenticate(authorization: "Bearer \(app)", memo: memo).name == "app")
        #expect(memo.principal(presenting: Substring(app))?.name == "app")
        #expect(try await auth.authenticate(authorization: "Bearer  \(app) ", memo: memo).name == "app")
        // One character off: not the remembered key, and not a key at all.
        let last = app.index(before: app.endIndex)
        let altered = String(app[..<last]) + (app[last] == "A" ? "B" : "A")
        #expect(memo.principal(presenting: Substring(altered)) == nil)
        await #expect(throws: AuthenticationError("unknown API key")) { try await auth.authenticate(authorization: "Bearer \(altered)", memo: memo) }
        #expect(memo.principal(presenting: Substring(app + "x")) == nil && memo.principal(presenting: app.dropLast()) == nil)
        // Another key on the same connection replaces the remembered one; the first is looked up again.
        #expect(try await auth.authenticate(authorization: "Bearer \(ops)", memo: memo).name == "ops")
        #expect(memo.principal(presenting: Substring(app)) == nil && memo.principal(presenting: Substring(ops))?.name == "ops")
        #expect(try await auth.authenticate(authorization: "Bearer \(app)", memo: memo).name == "app")
        // A JWT can expire, so it is never remembered.
        let jwt = try await Self.jwtAuthenticator(now: Date(timeIntervalSince1970: 1_900_000_000))
        let token = try await Self.token(Claims())
        let fresh = CredentialMemo()
        #expect(try await jwt.authenticate(authorization: "Bearer " + token, memo: fresh).name == "jwt:alice")
        #expect(fresh.principal(presenting: Substring(token)) == nil)
    }

    @Test func constantTimeComparisonLooksAtEveryByte() {
        let a: [UInt8] = Array(repeating: 7, count: 32)
        var lastDiffers = a
        lastDiffers[31] = 8
        var firstDiffers = a
        firstDiffers[0] = 8
        #expect(APIKey.constantTimeEquals(a, a))
        #expect(!APIKey.constantTimeEquals(a, lastDiffers))
        #expect(!APIKey.constantTimeEquals(a, firstDiffers))
        #expect(!APIKey.constantTimeEquals(a, Array(a.prefix(31))))
    }

    @Test func theConfigNamesTheFieldThatIsWrong() {
        #expect(Self.configError("api_key: []") == "api_key: unknown field; expected one of anonymous, api_keys, client_certificates, default_rate, jwt")
        #expect(Self.configError("client_certificates:\n  - {scopes: [read]}")?.hasPrefix("client_certificates[0].subject is required") == true)
        #expect(Self.configError("client_certificates:\n  - {subject: \"CN=a\"}") == "client_certificates[0].scopes must name at least one of health, infer, read, admin, metrics")
        #expect(Self.configError("api_keys:\n  - {sha256: \"\(String(repeating: "a", count: 64))\", scopes: [infer]}") == "api_keys[0].name is required")
        #expect(Self.configError("api_keys:\n  - {name: a, sha256: abc, scopes: [infer]}") == "api_keys[0].sha256 must be 64 hex digits")
        #expect(Self.configError("api_keys:\n  - {name: a, sha256: \"\(String(repeating: "a", count: 64))\", scopes: [write]}")
                == "api_keys[0].scopes: unknown scope 'write'; expected one of health, infer, read, admin, metrics")
        #expect(Self.configError("default_rate: {rate: fast}") == "default_rate.rate must be a positive rate such as 200/s, 1000/m or 50000/h, got 'fast'")
        #expect(Self.configError("jwt: {issuer: x, audience: y}") == "jwt needs exactly one of jwks_file or hs256_secret_file")
        #expect(Self.configError("anonymous: [health, read]") == nil)
    }

    @Test func ratesParseAndDefaultsApply() throws {
        #expect(RateLimit.parseRate("200/s") == 200)
        #expect(RateLimit.parseRate("120/m") == 2)
        #expect(RateLimit.parseRate("3600/h") == 1)
        #expect(RateLimit.parseRate("5") == 5)
        #expect(RateLimit.parseRate("0/s") == nil && RateLimit.parseRate("1/day") == nil)
        let config = try Self.config("default_rate: {rate: 10/s, burst: 20}\n")
        #expect(config.defaultRate == RateLimit(rate: 10, burst: 20))
        #expect(config.anonymousScopes == [.health])
    }

    @Test func theTokenBucketAdmitsTheBurstThenRefillsAtTheRate() {
        let clock = ManualClock()
        let limiter = RateLimiter(clock: clock.read)
        let limit = RateLimit(rate: 2, burst: 3)
        #expect((0..<3).allSatisfy { _ in limiter.admit("a", limit) == nil })
        #expect(limiter.admit("a", limit) == 0.5)
        // Another principal has its own bucket.
        #expect(limiter.admit("b", limit) == nil)
        clock.advance(0.5)
        #expect(limiter.admit("a", limit) == nil)
        #expect(limiter.admit("a", limit) == 0.5)
        // Refill stops at the burst.
        clock.advance(100)
        #expect((0..<3).allSatisfy { _ in limiter.admit("a", limit) == nil })
        #expect(limiter.admit("a", limit) != nil)
    }

    @Test func everyScopeAgainstEveryKindOfRule() {
        // The generated matrix: each principal holding exactly one scope, against a rule needing each scope.
        for held in Scope.allCases {
            let principal = Principal(name: "k", scopes: [held])
            for needed in Scope.allCases {
                let decision = principal.decide(AccessRule(needed, models: .one("iris")))
                if held == needed {
                    #expect(decision == .allowed)
                } else {
                    #expect(decision == .forbidden("k lacks the '\(needed.rawValue)' scope this endpoint needs (it has \(held.rawValue))"))
                }
            }
            #expect(principal.decide(.open) == .allowed)
        }
        #expect(Principal(name: "k", scopes: [.read]).decide(AccessRule([.infer, .read])) == .allowed)
    }

    @Test func aModelsAllowListRestrictsModelScopedEndpoints() {
        let app = Principal(name: "scoring-app", scopes: [.infer, .read], models: ["iris", "fraud"])
        #expect(app.decide(AccessRule(.infer, models: .one("iris"))) == .allowed)
        #expect(app.decide(AccessRule(.infer, models: .one("mlp"))) == .forbidden("scoring-app may not use model 'mlp' (its models: fraud, iris)"))
        #expect(app.decide(AccessRule(.read, models: .none)) == .allowed)
        #expect(app.decide(AccessRule(.read, models: .all))
                == .forbidden("scoring-app is limited to models fraud, iris; this endpoint covers every model and needs a key without a models allow-list"))
        #expect(Principal(name: "ops", scopes: [.read]).decide(AccessRule(.read, models: .all)) == .allowed)
    }

    // MARK: JWT

    static let secret = "a shared secret of some length, for HS256"

    static func jwtAuthenticator(now: Date) async throws -> Authenticator {
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try secret.write(to: folder.appendingPathComponent("hs256.secret"), atomically: true, encoding: .utf8)
        let config = try Self.config("jwt: {issuer: https://idp.example, audience: serval, hs256_secret_file: hs256.secret, scopes_claim: scope}\n")
        return try await Authenticator.make(config: config, clock: { 0 }, now: { now })
    }

    struct Claims: JWTPayload {
        var iss: String? = "https://idp.example"
        var aud: [String]? = ["serval"]
        var sub: String? = "alice"
        var exp: Double? = 2_000_000_000
        var nbf: Double? = nil
        var scope: String? = "infer read"
        func verify(using algorithm: some JWTAlgorithm) async throws {}
    }

    static func token(_ claims: Claims, secret: String = AuthTests.secret) async throws -> String {
        let keys = await JWTKeyCollection().add(hmac: HMACKey(from: secret), digestAlgorithm: .sha256)
        return try await keys.sign(claims)
    }

    static func refusal(_ auth: Authenticator, _ token: String) async -> String? {
        do {
            _ = try await auth.authenticate(authorization: "Bearer " + token)
            return nil
        } catch {
            return "\(error)"
        }
    }

    @Test func aValidJWTGivesItsSubjectAndScopes() async throws {
        let auth = try await Self.jwtAuthenticator(now: Date(timeIntervalSince1970: 1_900_000_000))
        let principal = try await auth.authenticate(authorization: "Bearer " + (try await Self.token(Claims())))
        #expect(principal == Principal(name: "jwt:alice", scopes: [.infer, .read]))
        // The scopes claim may also be an array, and the audience one string.
        struct ArrayClaims: JWTPayload {
            var iss = "https://idp.example", aud = "serval", sub = "bob", exp = 2_000_000_000.0, scope = ["admin"]
            func verify(using algorithm: some JWTAlgorithm) async throws {}
        }
        let keys = await JWTKeyCollection().add(hmac: HMACKey(from: Self.secret), digestAlgorithm: .sha256)
        let bob = try await auth.authenticate(authorization: "Bearer " + (try await keys.sign(ArrayClaims())))
        #expect(bob == Principal(name: "jwt:bob", scopes: [.admin]))
    }

    @Test func expiredWrongIssuerWrongAudienceAndBadSignatureAreRefused() async throws {
        let auth = try await Self.jwtAuthenticator(now: Date(timeIntervalSince1970: 1_900_000_000))
        var expired = Claims()
        expired.exp = 1_800_000_000
        #expect(await Self.refusal(auth, try await Self.token(expired)) == "the JWT was refused: it expired")
        var noExpiry = Claims()
        noExpiry.exp = nil
        #expect(await Self.refusal(auth, try await Self.token(noExpiry)) == "the JWT was refused: it has no exp claim")
        var early = Claims()
        early.nbf = 1_950_000_000
        #expect(await Self.refusal(auth, try await Self.token(early)) == "the JWT was refused: it is not valid yet (nbf)")
        var issuer = Claims()
        issuer.iss = "https://evil.example"
        #expect(await Self.refusal(auth, try await Self.token(issuer)) == "the JWT was refused: its issuer is not https://idp.example")
        var audience = Claims()
        audience.aud = ["someone-else"]
        #expect(await Self.refusal(auth, try await Self.token(audience)) == "the JWT was refused: its audience does not include serval")
        #expect(await Self.refusal(auth, try await Self.token(Claims(), secret: "another secret entirely, also long enough")) == "the JWT was refused: bad signature")
    }

    @Test func aShortHS256SecretIsRefusedAtStart() async throws {
        try FileManager.default.createDirectory(at: Self.folder, withIntermediateDirectories: true)
        try "too short".write(to: Self.folder.appendingPathComponent("short.secret"), atomically: true, encoding: .utf8)
        let config = try Self.config("jwt: {issuer: i, audience: a, hs256_secret_file: short.secret}\n")
        await #expect(throws: AuthConfigError("jwt.hs256_secret_file: the secret has 9 bytes; HS256 needs at least 32")) {
            _ = try await Authenticator.make(config: config, clock: { 0 })
        }
    }

    @Test func algNoneIsRefused() async throws {
        let auth = try await Self.jwtAuthenticator(now: Date(timeIntervalSince1970: 1_900_000_000))
        func base64url(_ text: String) -> String {
            Data(text.utf8).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
        }
        let unsigned = base64url("{\"alg\":\"none\",\"typ\":\"JWT\"}") + "." + base64url("{\"iss\":\"https://idp.example\",\"aud\":\"serval\",\"sub\":\"mallory\",\"exp\":2000000000,\"scope\":\"admin\"}") + "."
        let refusal = await Self.refusal(auth, unsigned)
        #expect(refusal?.hasPrefix("the JWT was refused") == true, "\(refusal ?? "accepted")")
    }
}
