import GRPCCore
import ServalServing
import ServalWire

/// The one place where serving errors become gRPC statuses, mirroring the REST mapping
/// (400 → INVALID_ARGUMENT, 404 → NOT_FOUND, 503 → UNAVAILABLE, 504 → DEADLINE_EXCEEDED).
enum GRPCStatus {
    static func code(_ kind: ServingError.Kind) -> RPCError.Code {
        switch kind {
        case .invalidArgument: return .invalidArgument
        case .notFound: return .notFound
        case .unavailable: return .unavailable
        case .resourceExhausted, .payloadTooLarge: return .resourceExhausted
        case .deadlineExceeded: return .deadlineExceeded
        case .unsupported: return .unimplemented
        case .conflict: return .failedPrecondition
        case .cancelled: return .cancelled
        case .internalError: return .internalError
        case .unauthenticated: return .unauthenticated
        case .permissionDenied: return .permissionDenied
        case .rateLimited: return .resourceExhausted
        }
    }

    /// The status for any error a handler throws; RPC errors (from the transport or our own checks) pass through.
    static func rpcError(_ error: any Error) -> RPCError {
        if let rpc = error as? RPCError { return rpc }
        if let serving = error as? ServingError { return RPCError(code: code(serving.kind), message: serving.message) }
        return RPCError(code: .internalError, message: "internal error: \(error)")
    }

    /// Runs `body`, turning whatever it throws into the matching status.
    static func mapping<T>(_ body: () async throws -> T) async throws -> T {
        do { return try await body() } catch { throw rpcError(error) }
    }
}
