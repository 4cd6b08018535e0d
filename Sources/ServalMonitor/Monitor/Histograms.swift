import Foundation

/// One feature's reference and current distributions for the report page: equal-width bins over both samples for
/// a numerical feature, one bar per value for a categorical one; shares of each sample.
public struct FeatureHistogram: Sendable {
    public var name: String
    public var kind: FeatureKind
    /// Bin labels: the lower edge of each numerical bin, or the category value.
    public var labels: [String]
    public var reference: [Double]
    public var current: [Double]
    /// For numerical bins: the edges (one more than bins).
    public var edges: [Double]?
}

extension ModelMonitor {
    func histograms(version: Int, bins: Int = 20) -> [FeatureHistogram] {
        let columns = windows[version]?.columns()
        return reference.features.enumerated().map { index, name in
            let reference = profile[index]
            let current = FeatureSample(columns?[index] ?? [])
            let union = DriftTest.distinctUnion(reference, current)
            if kinds[index] == .categorical || union.count <= bins {
                var values = union
                if values.count > 30 { values = Array(values.prefix(30)) }
                return FeatureHistogram(
                    name: name, kind: kinds[index], labels: values.map(LabelText.format),
                    reference: values.map { Double(reference.occurrences(of: $0)) / Double(max(reference.count, 1)) },
                    current: values.map { Double(current.occurrences(of: $0)) / Double(max(current.count, 1)) }, edges: nil)
            }
            let low = min(reference.sorted.first!, current.sorted.first ?? reference.sorted.first!)
            let high = max(reference.sorted.last!, current.sorted.last ?? reference.sorted.last!)
            let width = (high - low) / Double(bins)
            let edges = (0...bins).map { low + Double($0) * width }
            func shares(_ sample: FeatureSample) -> [Double] {
                guard !sample.isEmpty else { return Array(repeating: 0, count: bins) }
                var counts = [Int](repeating: 0, count: bins)
                for value in sample.sorted { counts[min(bins - 1, max(0, Int((value - low) / width)))] += 1 }
                return counts.map { Double($0) / Double(sample.count) }
            }
            return FeatureHistogram(name: name, kind: kinds[index], labels: edges.dropLast().map { String(format4($0)) },
                                    reference: shares(reference), current: shares(current), edges: edges)
        }
    }
}

/// A number with four significant digits, for axis labels.
func format4(_ value: Double) -> String {
    if value == 0 { return "0" }
    let magnitude = abs(value)
    if magnitude >= 1e5 || magnitude < 1e-3 { return String(format: "%.3g", value) }
    var text = String(format: "%.4g", value)
    if text.contains(".") { while text.hasSuffix("0") { text.removeLast() }; if text.hasSuffix(".") { text.removeLast() } }
    return text
}
