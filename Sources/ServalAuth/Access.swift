/// What a credential may do. Each endpoint needs one (or, for a few, any of two) of these.
public enum Scope: String, Sendable, CaseIterable, Codable, Comparable {
    /// Liveness and readiness (REST and gRPC), gRPC health.
    case health
    /// Inference, prediction, job submission and results, feedback, on the models a key allows.
    case infer
    /// Metadata, configuration, statistics, the repository index, monitoring, history, job status.
    case read
    /// Changes: load, unload, register, labels, traffic, monitoring settings, pipelines, webhooks.
    case admin
    /// `/metrics`.
    case metrics

    public static func < (a: Scope, b: Scope) -> Bool { a.rawValue < b.rawValue }
}

/// What one endpoint requires: a scope (any of `scopes`), and which models it touches.
public struct AccessRule: Sendable, Equatable {
    /// Which models' data a request touches, for keys with a `models:` allow-list.
    public enum Models: Sendable, Equatable {
        /// None (server metadata, health): any key with the scope may call it.
        case none
        /// This one model.
        case one(String)
        /// Every model (statistics of all models, the repository index, the job list): only keys without an
        /// allow-list may call it.
        case all
    }

    public let scopes: Set<Scope>
    public let models: Models

    public init(_ scopes: Set<Scope>, models: Models = .none) {
        self.scopes = scopes
        self.models = models
    }

    public init(_ scope: Scope, models: Models = .none) { self.init([scope], models: models) }

    /// Needs no credentials at all (`/openapi.json`).
    public static let open = AccessRule([])
}

/// Who is calling: a named API key, a JWT subject, a client certificate's subject, or `anonymous`.
/// A class: it is passed along every authenticated request (context, task-local, decision), one retain each.
public final class Principal: Sendable, Equatable {
    public let name: String
    public let scopes: Set<Scope>
    /// The models this principal may use for `infer` and `read` (nil: all).
    public let models: Set<String>?
    /// Its own token bucket, or nil for the default one.
    public let rate: RateLimit?

    public init(name: String, scopes: Set<Scope>, models: Set<String>? = nil, rate: RateLimit? = nil) {
        self.name = name
        self.scopes = scopes
        self.models = models
        self.rate = rate
    }

    public static let anonymousName = "anonymous"

    public static func == (a: Principal, b: Principal) -> Bool {
        a === b || (a.name == b.name && a.scopes == b.scopes && a.models == b.models && a.rate == b.rate)
    }

    /// Whether this principal may make a request that needs `rule`; the refusal names the missing scope or model.
    public func decide(_ rule: AccessRule) -> AccessDecision {
        if rule.scopes.isEmpty { return .allowed }
        guard !rule.scopes.isDisjoint(with: scopes) else {
            let needed = rule.scopes.sorted().map { "'\($0.rawValue)'" }.joined(separator: " or ")
            return .forbidden("\(name) lacks the \(needed) scope this endpoint needs (it has \(scopes.isEmpty ? "none" : scopes.sorted().map(\.rawValue).joined(separator: ", ")))")
        }
        guard let allowed = models else { return .allowed }
        switch rule.models {
        case .none:
            return .allowed
        case .one(let model):
            return allowed.contains(model) ? .allowed : .forbidden("\(name) may not use model '\(model)' (its models: \(allowed.sorted().joined(separator: ", ")))")
        case .all:
            return .forbidden("\(name) is limited to models \(allowed.sorted().joined(separator: ", ")); this endpoint covers every model and needs a key without a models allow-list")
        }
    }
}

/// The outcome of checking a principal against an endpoint's rule.
public enum AccessDecision: Sendable, Equatable {
    case allowed
    /// 403 / PERMISSION_DENIED, with what is missing.
    case forbidden(String)
}

/// Why a request could not be authenticated (401 / UNAUTHENTICATED). The message never repeats the credential.
public struct AuthenticationError: Error, Sendable, Equatable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// The principal of the call being handled, where a handler has no request context to read it from (gRPC's
/// generated handlers): set by the gRPC interceptor around the handler, read when recording who acted.
public enum CurrentPrincipal {
    @TaskLocal public static var value: Principal?
}
