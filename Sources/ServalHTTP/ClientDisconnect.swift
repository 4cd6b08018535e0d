import Foundation
import Hummingbird
import HummingbirdCore
import NIOCore
import NIOHTTPTypes
import ServalAuth
import Synchronization

/// Cancels the work of a request whose client closed the connection, as gRPC does for a cancelled call: a queued
/// inference leaves the batcher's queue instead of running for nobody.
///
/// A `ClientDisconnectHandler` in each connection's pipeline sees the end of input (the client's FIN or a reset)
/// and tells the connection's `ConnectionWatch`; handlers register the task they want cancelled with it. The watch
/// also holds what else lives exactly as long as the connection: the API key it last presented.
final class ConnectionWatch: Sendable {
    private struct State {
        var closed = false
        var next = 0
        var cancellers: [Int: @Sendable () -> Void] = [:]
    }

    private let state = Mutex(State())
    /// The API key this connection last presented, verified (see `BearerAuthenticator`).
    let credentials = CredentialMemo()

    /// Registers `cancel`; runs it at once when the connection is already closed. Returns a token for `remove`.
    func add(_ cancel: @escaping @Sendable () -> Void) -> Int {
        let (token, closed) = state.withLock { state -> (Int, Bool) in
            state.next += 1
            if !state.closed { state.cancellers[state.next] = cancel }
            return (state.next, state.closed)
        }
        if closed { cancel() }
        return token
    }

    func remove(_ token: Int) { state.withLock { _ = $0.cancellers.removeValue(forKey: token) } }

    func close() {
        let cancellers = state.withLock { state -> [@Sendable () -> Void] in
            state.closed = true
            defer { state.cancellers = [:] }
            return Array(state.cancellers.values)
        }
        for cancel in cancellers { cancel() }
    }

    /// The watch of each open connection, by channel identity.
    private static let open = Mutex<[ObjectIdentifier: ConnectionWatch]>([:])

    static func register(_ channel: any Channel) -> ConnectionWatch {
        let watch = ConnectionWatch()
        open.withLock { $0[ObjectIdentifier(channel)] = watch }
        return watch
    }

    static func unregister(_ channel: any Channel) {
        let watch = open.withLock { $0.removeValue(forKey: ObjectIdentifier(channel)) }
        watch?.close()
    }

    static func watch(for channel: any Channel) -> ConnectionWatch? { open.withLock { $0[ObjectIdentifier(channel)] } }

    /// Runs `body` in a task that is cancelled if the client of `context` disconnects first.
    static func cancellingOnDisconnect<T: Sendable>(_ context: ServalRequestContext, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
        guard let watch = context.connection else { return try await body() }
        let work = Task { try await body() }
        let token = watch.add { work.cancel() }
        defer { watch.remove(token) }
        return try await withTaskCancellationHandler { try await work.value } onCancel: { work.cancel() }
    }
}

/// Pipeline handler (after HTTP decoding) that closes the connection's watch when input ends or the channel goes.
final class ClientDisconnectHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart

    func handlerAdded(context: ChannelHandlerContext) {
        _ = ConnectionWatch.register(context.channel)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        ConnectionWatch.unregister(context.channel)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case ChannelEvent.inputClosed? = event as? ChannelEvent { ConnectionWatch.watch(for: context.channel)?.close() }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        ConnectionWatch.unregister(context.channel)
        context.fireChannelInactive()
    }
}
