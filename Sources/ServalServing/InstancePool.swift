/// Admits at most `instances` concurrent executions of one model version and queues at most `maxQueue`
/// more; past that, callers are refused at once (the frontends answer 503) instead of piling up.
actor InstancePool {
    private let instances: Int
    private let maxQueue: Int
    private var running = 0
    private var waiters: [CheckedContinuation<Void, Never>] = []

    init(instances: Int, maxQueue: Int) {
        self.instances = max(1, instances)
        self.maxQueue = maxQueue
    }

    /// Waits for a free instance; throws `resourceExhausted` when the queue is full.
    func acquire(model: String) async throws {
        if running < instances {
            running += 1
            return
        }
        guard maxQueue <= 0 || waiters.count < maxQueue else {
            throw ServingError(.resourceExhausted, "model '\(model)' queue is full (\(maxQueue) requests waiting); retry later")
        }
        await withCheckedContinuation { waiters.append($0) }
    }

    func release() {
        if waiters.isEmpty {
            running -= 1
        } else {
            waiters.removeFirst().resume()
        }
    }

    var pending: Int { waiters.count + running }
}
