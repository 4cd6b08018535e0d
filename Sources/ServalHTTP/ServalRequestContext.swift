import Hummingbird
import NIOCore

/// The request context of every Serval route: Hummingbird's core storage plus the connection, so a handler can
/// stop work for a client that has gone away.
public struct ServalRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public let channel: any Channel

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        channel = source.channel
    }
}

typealias HTTPRouter = Hummingbird.Router<ServalRequestContext>
