import CoreMetrics

/// A family of gauges whose members come and go (a version's readiness, a label's target, an arm's weight):
/// `publish` records every current member and sets the ones that left to 0, so a dashboard never keeps showing
/// a label that moved. Not thread-safe: owned by one actor.
public struct GaugeSet: Sendable {
    let label: String
    private var published: Set<[String]> = []

    public init(label: String) { self.label = label }

    /// `members`: dimension values (in `names` order) → value.
    public mutating func publish(names: [String], _ members: [[String]: Int]) {
        for values in Set(members.keys).union(published) {
            Gauge(label: label, dimensions: Array(zip(names, values))).record(members[values] ?? 0)
        }
        published = Set(members.keys)
    }
}
