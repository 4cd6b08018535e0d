import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTPTypes
import NIOSSL
import ServalWire
import Synchronization

/// Connection-level limits of the HTTP listener: slow clients (slowloris), idle keep-alive connections, and how
/// many connections may be open at once. Each is a `serval serve` flag; a client past one gets a JSON 4xx/503
/// naming it, then the connection closes.
public struct HTTPConnectionLimits: Sendable, Equatable {
    /// From a request's first byte until its head is complete (`--http-header-timeout-secs`).
    public var headerTimeout: Duration = .seconds(30)
    /// Longest pause between two pieces of a request body (`--http-body-timeout-secs`).
    public var bodyIdleTimeout: Duration = .seconds(60)
    /// A keep-alive connection with no request for this long is closed (`--http-idle-timeout-secs`).
    public var idleTimeout: Duration = .seconds(75)
    /// Open connections at most (`--http-max-connections`); one more is answered 503 and closed.
    public var maxConnections = 4096
    /// After an early answer on a connection that closes, how long the rest of the request body is read (and
    /// dropped) so the client, which may write its whole body before it reads, sees the answer.
    public var lingerTimeout: Duration = .seconds(30)

    public init() {}
}

/// The HTTP/1.1 child channel with Serval's connection guards around Hummingbird's: a byte-level guard first in
/// the pipeline (connection count, request-head timeout, lingering close) and a request-level guard after HTTP
/// decoding (body idle timeout, draining the body of a request answered early on a closing connection).
/// With TLS, the TLS handler comes before everything, so the guards see plaintext.
struct GuardedHTTP1Channel: ServerChildChannel {
    typealias Value = HTTP1Channel.Value
    let inner: HTTP1Channel
    let limits: HTTPConnectionLimits
    let connections: ConnectionCount
    let tls: NIOSSLContext?

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        let limits = self.limits, connections = self.connections, tls = self.tls
        return channel.eventLoop.makeCompletedFuture {
            let pipeline = channel.pipeline.syncOperations
            try pipeline.addHandler(ConnectionGuard(limits: limits, connections: connections), position: .first)
            if let tls { try pipeline.addHandler(NIOSSLServerHandler(context: tls), position: .first) }
        }.flatMap { inner.setup(channel: channel, logger: logger) }
    }

    func handle(value: Value, logger: Logger) async {
        await inner.handle(value: value, logger: logger)
    }

    /// The server builder for `Application(server:)`.
    static func builder(configuration: HTTP1Channel.Configuration, limits: HTTPConnectionLimits, connections: ConnectionCount, tls: NIOSSLContext?) -> HTTPServerBuilder {
        HTTPServerBuilder { responder in
            GuardedHTTP1Channel(inner: HTTP1Channel(responder: responder, configuration: configuration), limits: limits, connections: connections, tls: tls)
        }
    }
}

/// How many connections the listener has open (shared by all its channels).
final class ConnectionCount: Sendable {
    private let count = Atomic(0)
    func open() -> Int { count.add(1, ordering: .relaxed).newValue }
    func close() { count.subtract(1, ordering: .relaxed) }
    var current: Int { count.load(ordering: .relaxed) }
}

/// A JSON error answer written outside the router (the guards answer before or beside it).
enum GuardAnswer {
    static func body(_ message: String) -> String {
        var json = JSONWriter()
        json.raw("{\"error\":")
        json.string(message)
        json.raw("}")
        return json.text
    }

    /// The whole HTTP/1.1 response as bytes, for the byte-level guard.
    static func raw(_ status: HTTPResponse.Status, _ message: String) -> ByteBuffer {
        let body = Self.body(message)
        return ByteBuffer(string: "HTTP/1.1 \(status.code) \(status.reasonPhrase)\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n"
            + "Connection: close\r\n\r\n" + body)
    }
}

/// First in each connection's pipeline, on raw bytes: counts the connection (one over `maxConnections` gets 503),
/// gives each request head `headerTimeout` from its first byte (then 408), and closes lingering: after an answer
/// it half-closes, reads and drops what the client still sends, and closes on its EOF or after `lingerTimeout`.
final class ConnectionGuard: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let limits: HTTPConnectionLimits
    let connections: ConnectionCount
    private var counted = false
    /// Between requests: the next byte starts the head timer.
    private var awaitingHead = true
    private var headTimer: Scheduled<Void>?
    private var lingering = false
    private var lingerTimer: Scheduled<Void>?

    init(limits: HTTPConnectionLimits, connections: ConnectionCount) {
        self.limits = limits
        self.connections = connections
    }

    func handlerAdded(context: ChannelHandlerContext) {
        // An accepted channel may already be active when its pipeline is set up.
        if context.channel.isActive { count(context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        context.fireChannelActive()
        count(context)
    }

    private func count(_ context: ChannelHandlerContext) {
        guard !counted else { return }
        counted = true
        if connections.open() > limits.maxConnections {
            answerAndLinger(context, GuardAnswer.raw(.serviceUnavailable, "the server has --http-max-connections (\(limits.maxConnections)) connections open; retry later"))
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if counted { connections.close() }
        counted = false
        headTimer?.cancel()
        lingerTimer?.cancel()
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !lingering else { return }
        if awaitingHead, headTimer == nil {
            let seconds = Self.seconds(limits.headerTimeout)
            headTimer = context.eventLoop.assumeIsolated().scheduleTask(in: Self.amount(limits.headerTimeout)) { [self] in
                headTimer = nil
                guard awaitingHead, !lingering else { return }
                answerAndLinger(context, GuardAnswer.raw(.requestTimeout, "the request head was not complete within --http-header-timeout-secs (\(seconds) s)"))
            }
        }
        context.fireChannelRead(data)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if lingering { context.read() } else { context.fireChannelReadComplete() }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if lingering, case ChannelEvent.inputClosed? = event as? ChannelEvent {
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    /// The request-level guard saw the head: no head timer until the next request's first byte.
    func headComplete() {
        awaitingHead = false
        headTimer?.cancel()
        headTimer = nil
    }

    /// The request and its response are both done: the next byte is a new request's.
    func exchangeComplete() { awaitingHead = true }

    /// Closes after `answer` (if any) the lingering way.
    func linger(_ context: ChannelHandlerContext) {
        guard !lingering else { return }
        lingering = true
        headTimer?.cancel()
        context.close(mode: .output, promise: nil)
        lingerTimer = context.eventLoop.assumeIsolated().scheduleTask(in: Self.amount(limits.lingerTimeout)) { context.close(promise: nil) }
        context.read()
    }

    private func answerAndLinger(_ context: ChannelHandlerContext, _ answer: ByteBuffer) {
        context.writeAndFlush(wrapOutboundOut(answer), promise: nil)
        linger(context)
    }

    static func amount(_ duration: Duration) -> TimeAmount {
        .nanoseconds(duration.components.seconds * 1_000_000_000 + duration.components.attoseconds / 1_000_000_000)
    }

    static func seconds(_ duration: Duration) -> String {
        let value = Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
        return value == value.rounded() ? String(Int(value)) : String(value)
    }
}

/// After HTTP decoding: bounds the pauses in a request body (`bodyIdleTimeout`, then 408), and when an answer
/// goes out before the body is in on a connection that will close (`Connection: close` with a 413 or a 401),
/// drops the rest of the body as it comes and closes once it is in, instead of leaving a client that writes its
/// whole body before reading blocked until its own timeout.
final class RequestGuard: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    private weak var connection: ConnectionGuard?
    private var requestOpen = false
    private var closeAfter = false
    private var responseStarted = false
    private var responseDone = false
    private var draining = false
    private var bodyTimer: Scheduled<Void>?
    private var lingerTimer: Scheduled<Void>?
    private var limits = HTTPConnectionLimits()

    func handlerAdded(context: ChannelHandlerContext) {
        connection = try? context.pipeline.syncOperations.handler(type: ConnectionGuard.self)
        if let connection { limits = connection.limits }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            requestOpen = true
            responseStarted = false
            responseDone = false
            closeAfter = head.headerFields[.connection]?.lowercased().contains("close") == true
            connection?.headComplete()
            armBodyTimer(context)
            context.fireChannelRead(data)
        case .body:
            armBodyTimer(context)
            if !draining { context.fireChannelRead(data) }
        case .end:
            requestOpen = false
            bodyTimer?.cancel()
            bodyTimer = nil
            if draining {
                context.close(promise: nil)
                return
            }
            if responseDone { connection?.exchangeComplete() }
            context.fireChannelRead(data)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        // Nobody reads the rest of a drained body but this handler.
        if draining { context.read() }
        context.fireChannelReadComplete()
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head: responseStarted = true
        case .body: break
        case .end:
            responseDone = true
            context.write(data, promise: promise)
            if requestOpen, closeAfter {
                draining = true
                lingerTimer = context.eventLoop.assumeIsolated().scheduleTask(in: ConnectionGuard.amount(limits.lingerTimeout)) { context.close(promise: nil) }
                context.read()
            } else if !requestOpen {
                connection?.exchangeComplete()
            }
            return
        }
        context.write(data, promise: promise)
    }

    func channelInactive(context: ChannelHandlerContext) {
        bodyTimer?.cancel()
        lingerTimer?.cancel()
        context.fireChannelInactive()
    }

    private func armBodyTimer(_ context: ChannelHandlerContext) {
        bodyTimer?.cancel()
        let timeout = limits.bodyIdleTimeout
        bodyTimer = context.eventLoop.assumeIsolated().scheduleTask(in: ConnectionGuard.amount(timeout)) { [self] in
            bodyTimer = nil
            guard requestOpen else { return }
            if !responseStarted {
                let body = GuardAnswer.body("the request body paused for longer than --http-body-timeout-secs (\(ConnectionGuard.seconds(timeout)) s)")
                let head = HTTPResponse(status: .requestTimeout, headerFields: [
                    .contentType: "application/json", .contentLength: String(body.utf8.count), .connection: "close",
                ])
                context.write(wrapOutboundOut(.head(head)), promise: nil)
                context.write(wrapOutboundOut(.body(ByteBuffer(string: body))), promise: nil)
                context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
            }
            requestOpen = false
            if let connection { connection.linger(context) } else { context.close(promise: nil) }
        }
    }
}
