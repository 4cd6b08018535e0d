/// Whether a pipeline starts a run when something asks: an alert it watches (`triggers.on_alert`), its schedule
/// (`triggers.every`), or a person. One run at a time, and none within `cooldown` of the last start (a manual
/// or API start is not held by the cooldown). Every decision comes back with its reason, for the model's history. Time is
/// passed in, so tests drive it.
public struct TriggerPolicy: Sendable {
    /// What asked for a run.
    public enum Trigger: Sendable, Equatable, CustomStringConvertible {
        case alert(String)
        case schedule
        case manual
        /// `POST /v2/pipelines/{name}/runs`: a person through the API, held like a manual start.
        case api

        public var description: String {
            switch self {
            case .alert(let name): return "alert \(name)"
            case .schedule: return "schedule"
            case .manual: return "manual"
            case .api: return "api"
            }
        }
    }

    /// The answer to one trigger.
    public struct Decision: Sendable, Equatable {
        public let trigger: Trigger
        public let start: Bool
        public let reason: String
    }

    public let triggers: PipelineDefinition.Triggers
    private var lastStart: Double?
    private var running = false
    private var nextScheduled: Double?

    /// `now`: when the policy begins (the schedule counts from it).
    public init(_ triggers: PipelineDefinition.Triggers, now: Double) {
        self.triggers = triggers
        nextScheduled = triggers.everySeconds.map { now + $0 }
    }

    public mutating func decide(_ trigger: Trigger, now: Double) -> Decision {
        if case .alert(let name) = trigger, !triggers.onAlert.contains(name) {
            return Decision(trigger: trigger, start: false, reason: "the pipeline does not watch \(name) (on_alert: \(triggers.onAlert.joined(separator: ", ")))")
        }
        if running { return Decision(trigger: trigger, start: false, reason: "a run is in progress") }
        if trigger != .manual, trigger != .api, let last = lastStart, now - last < triggers.cooldownSeconds {
            return Decision(trigger: trigger, start: false,
                            reason: "within the cooldown: \(Int((triggers.cooldownSeconds - (now - last)).rounded(.up))) s left of \(Int(triggers.cooldownSeconds)) s")
        }
        lastStart = now
        running = true
        return Decision(trigger: trigger, start: true, reason: "started by \(trigger)")
    }

    /// The schedule's decision when it has come due by `now` (the next due time moves on by `every` whatever the
    /// answer), else nil.
    public mutating func tick(now: Double) -> Decision? {
        guard let due = nextScheduled, let every = triggers.everySeconds, now >= due else { return nil }
        var next = due
        while next <= now { next += every }
        nextScheduled = next
        return decide(.schedule, now: now)
    }

    /// The run that was started has ended (whatever its outcome).
    public mutating func finished() { running = false }
}
