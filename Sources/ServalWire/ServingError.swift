/// Errors of the serving layer, by kind; each frontend maps the kind to its own status code in one place.
public struct ServingError: Error, Sendable, CustomStringConvertible, Equatable {
    public enum Kind: Sendable, Equatable {
        /// Bad request content (HTTP 400, gRPC INVALID_ARGUMENT).
        case invalidArgument
        /// Unknown model, version or label (404 / NOT_FOUND).
        case notFound
        /// Model not ready, server draining (503 / UNAVAILABLE).
        case unavailable
        /// Queue full (503 / RESOURCE_EXHAUSTED), body too large (413).
        case resourceExhausted
        case payloadTooLarge
        /// Request timed out in the queue (504 / DEADLINE_EXCEEDED).
        case deadlineExceeded
        /// The caller went away (deadline passed, call cancelled) before the request ran (400 / CANCELLED).
        case cancelled
        /// Operation not allowed in this mode (e.g. load/unload without explicit control).
        case unsupported
        /// The request conflicts with current state: a label to a version that is not ready, a rollback with no
        /// earlier target, unloading a labelled version (409 / FAILED_PRECONDITION).
        case conflict
        /// No or invalid credentials (401 with `WWW-Authenticate: Bearer` / UNAUTHENTICATED).
        case unauthenticated
        /// Valid credentials without the scope or the model (403 / PERMISSION_DENIED).
        case permissionDenied
        /// Over the caller's rate limit (429 with `Retry-After` / RESOURCE_EXHAUSTED).
        case rateLimited
        /// Our own bug (500 / INTERNAL).
        case internalError
    }

    public let kind: Kind
    public let message: String
    /// True when the server, not the caller, is at fault: what a traffic guard counts as an error. Internal,
    /// unavailable, overloaded and timed-out requests are; so are engine failures on inputs that passed validation.
    public let isServerFault: Bool
    /// Seconds after which a retry may succeed (HTTP `Retry-After`), for refusals that are momentary.
    public let retryAfterSeconds: Int?

    public init(_ kind: Kind, _ message: String, serverFault: Bool? = nil, retryAfterSeconds: Int? = nil) {
        self.kind = kind
        self.message = message
        self.retryAfterSeconds = retryAfterSeconds
        self.isServerFault = serverFault ?? [.internalError, .unavailable, .resourceExhausted, .deadlineExceeded].contains(kind)
    }

    public var description: String { message }

    /// The HTTP status of this kind of error (KServe/Triton and TF Serving agree on these).
    public var httpStatus: Int {
        switch kind {
        case .invalidArgument, .unsupported, .cancelled: return 400
        case .notFound: return 404
        case .conflict: return 409
        case .unavailable, .resourceExhausted: return 503
        case .payloadTooLarge: return 413
        case .unauthenticated: return 401
        case .permissionDenied: return 403
        case .rateLimited: return 429
        case .deadlineExceeded: return 504
        case .internalError: return 500
        }
    }

    public static func invalidArgument(_ message: String) -> ServingError { ServingError(.invalidArgument, message) }
    public static func notFound(_ message: String) -> ServingError { ServingError(.notFound, message) }
    public static func unavailable(_ message: String) -> ServingError { ServingError(.unavailable, message) }
    public static func conflict(_ message: String) -> ServingError { ServingError(.conflict, message) }
}
