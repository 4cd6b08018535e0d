import Hummingbird
import HummingbirdAuth
import NIOCore
import ServalAuth

/// The request context of every Serval route: Hummingbird's core storage plus the connection, so a handler can
/// stop work for a client that has gone away, and (with `--auth-config`) the authenticated principal.
public struct ServalRequestContext: AuthRequestContext {
    public var coreContext: CoreRequestContextStorage
    public let channel: any Channel
    public var identity: Principal?
    /// The connection's watch (disconnects, the API key it presented), looked up once per request.
    let connection: ConnectionWatch?

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        channel = source.channel
        connection = ConnectionWatch.watch(for: source.channel)
    }
}

typealias HTTPRouter = Hummingbird.Router<ServalRequestContext>
