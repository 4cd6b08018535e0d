import Logging
import ServalRegistry
import ServiceLifecycle
import Synchronization
import ServalWire

/// Server-wide state every frontend reads: whether a graceful shutdown has started (readiness turns false).
public final class ServerState: Sendable {
    private let draining = Mutex(false)
    public init() {}
    public var isDraining: Bool { draining.withLock { $0 } }
    public func beginDraining() { draining.withLock { $0 = true } }

    /// Server readiness (KServe `ServerReady`): not draining and every model in the repository has a ready version.
    public func isReady(_ manager: ModelManager) async -> Bool {
        let allReady = await manager.allReady()
        return !isDraining && allReady
    }

    /// Model readiness (KServe `ModelReady`): false while draining or while the version the selector resolves to
    /// cannot serve (a version unloaded to free memory can: its next request loads it); an unknown model, version
    /// or label throws NOT_FOUND.
    public func isReady(_ router: Router, model name: String, _ selector: ModelSelector) async throws -> Bool {
        try await router.isAvailable(name, selector) && !isDraining
    }
}

/// Flips readiness to false as soon as graceful shutdown begins, so load balancers stop sending traffic
/// while in-flight requests finish. List it *after* the application in the service group: groups shut down
/// in reverse order, so readiness turns false before the HTTP server starts draining.
public struct DrainOnShutdown: Service {
    let state: ServerState
    public init(state: ServerState) { self.state = state }
    public func run() async throws {
        try? await gracefulShutdown()
        state.beginDraining()
    }
}

/// Runs `work` every `interval` until graceful shutdown. A failure is logged once, and again when it recovers,
/// so a store that is down for an hour writes two lines, not 3600.
public struct PeriodicService: Service {
    let name: String
    let interval: Duration
    let logger: Logger
    let work: @Sendable () async throws -> Void

    public init(name: String, interval: Duration, logger: Logger, work: @escaping @Sendable () async throws -> Void) {
        self.name = name
        self.interval = interval
        self.logger = logger
        self.work = work
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            var failing = false
            while !Task.isCancelled {
                do { try await Task.sleep(for: interval) } catch { return }
                do {
                    try await work()
                    if failing { logger.info("\(name) works again") }
                    failing = false
                } catch {
                    if Task.isCancelled { return }
                    if !failing { logger.error("\(name) failed; retrying every \(interval)", metadata: ["error": "\(error)"]) }
                    failing = true
                }
            }
        }
    }

    /// `--model-control-mode poll`: re-reads the repository, registering versions that appeared on disk.
    public static func repositoryPoller(_ lifecycle: ModelLifecycle, interval: Duration, logger: Logger) -> PeriodicService {
        PeriodicService(name: "repository poll", interval: interval, logger: logger) { try await lifecycle.reconcile() }
    }

    /// Sends queued registry events to their webhooks.
    public static func webhookSender(_ delivery: WebhookDelivery, interval: Duration, logger: Logger) -> PeriodicService {
        PeriodicService(name: "webhook delivery", interval: interval, logger: logger) { try await delivery.deliverDue() }
    }

    /// The traffic guard and progressive promotion, evaluated every `interval` (at least every second in `serve`).
    public static func trafficGuard(_ lifecycle: ModelLifecycle, interval: Duration, logger: Logger) -> PeriodicService {
        PeriodicService(name: "traffic guard", interval: interval, logger: logger) { try await lifecycle.runTrafficGuard() }
    }

    /// Keeps this replica's routing table in step with the store: asks whether another writer committed a change
    /// (one cheap query) and, if so, reloads the pointers and the versions they pin. While the store is
    /// unreachable, serving goes on with the last state read.
    public static func storeWatcher(_ lifecycle: ModelLifecycle, interval: Duration, logger: Logger) -> PeriodicService {
        PeriodicService(name: "state store refresh", interval: interval, logger: logger) { try await lifecycle.refreshFromStore() }
    }
}

/// The server's name and version as the protocols' server-metadata calls report them.
public enum ServerInfo {
    public static let name = "serval"
    public static let version = "0.1.0"
}
