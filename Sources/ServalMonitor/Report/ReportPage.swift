import Foundation
import ServalStore

/// The monitoring report as HTML, rendered on the server: charts are inline SVG, styles are inline, and nothing is
/// fetched from elsewhere, so the page works offline and with JavaScript disabled.
public enum ReportPage {
    /// What the page of one model shows besides its status.
    public struct Context: Sendable {
        public var histograms: [FeatureHistogram]
        public var series: [HistoryPoint]
        public var labels: [String: Int]
        /// Traffic routes: target name, version, weight in percent.
        public var traffic: [(target: String, version: Int?, weight: Int)]
        public var versions: [Int]
    }

    static let style = """
        :root{--ink:#1f2933;--muted:#616e7c;--line:#d9e2ec;--bg:#f5f7fa;--ref:#7b93ad;--cur:#e8833a;--ok:#2f8f5b;--bad:#c8372d;--warn:#b7791f}
        *{box-sizing:border-box}body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--ink);background:var(--bg)}
        header{background:#102a43;color:#fff;padding:18px 32px}header h1{margin:0;font-size:22px;font-weight:600}header p{margin:4px 0 0;color:#bcccdc}
        header a{color:#bcccdc}main{padding:24px 32px;max-width:1280px}
        section{background:#fff;border:1px solid var(--line);border-radius:8px;padding:16px 20px;margin-bottom:20px}
        h2{font-size:16px;margin:0 0 12px}h3{font-size:14px;margin:0}
        .cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(170px,1fr));gap:12px;margin-bottom:20px}
        .card{background:#fff;border:1px solid var(--line);border-radius:8px;padding:12px 16px}.card .k{color:var(--muted);font-size:12px;text-transform:uppercase;letter-spacing:.04em}
        .card .v{font-size:24px;font-weight:600;margin-top:2px}.card .s{color:var(--muted);font-size:12px}
        .badge{display:inline-block;padding:1px 9px;border-radius:10px;font-size:12px;font-weight:600;color:#fff}
        .ok{background:var(--ok)}.bad{background:var(--bad)}.warn{background:var(--warn)}.none{background:#9aa5b1}
        .features{display:grid;grid-template-columns:repeat(auto-fill,minmax(380px,1fr));gap:16px}
        .feature{border:1px solid var(--line);border-radius:8px;padding:12px}.feature .top{display:flex;justify-content:space-between;align-items:center;margin-bottom:6px}
        .meta{color:var(--muted);font-size:12px}table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:6px 8px;border-bottom:1px solid var(--line)}
        th{color:var(--muted);font-weight:500;font-size:12px;text-transform:uppercase}.legend span{margin-right:14px}.sw{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:4px}
        .trends{display:grid;grid-template-columns:repeat(auto-fit,minmax(380px,1fr));gap:16px}
        """

    public static func model(_ status: MonitoringStatus, _ context: Context) -> String {
        var html = head(title: "\(status.model) · monitoring")
        let verdict: (String, String) = status.insufficientData ? ("insufficient data", "none") : status.datasetDrift == true ? ("drift", "bad") : ("no drift", "ok")
        html += "<header><h1>\(escape(status.model)) <span class=\"badge \(verdict.1)\" id=\"dataset-verdict\">\(verdict.0)</span></h1>"
        html += "<p>version \(status.version) · window \(status.rows) of \(status.windowSize) rows\(status.partial ? " (partial)" : "")"
        if let from = status.from, let to = status.to { html += " · \(escape(time(from))) – \(escape(time(to)))" }
        html += " · <a href=\"/monitoring\">all models</a> · <a href=\"/v2/models/\(escape(status.model))/monitoring/status\">JSON</a></p></header><main>"
        // Headline figures.
        html += "<div class=\"cards\">"
        html += card("Drifted features", status.driftedShare.map { _ in "\(status.driftedFeatures) / \(status.features.count)" } ?? "–",
                     "dataset drifts at ≥ \(percent(status.driftShareThreshold))")
        html += card("Prediction drift", status.prediction?.drift.map { $0.drifted ? "yes" : "no" } ?? "–",
                     status.prediction?.drift.map { "\($0.method.rawValue) \(number($0.score))" } ?? "no reference predictions")
        let realised = status.performance.realised
        html += card("Accuracy (realised)", realised?["accuracy"].map(percent) ?? realised?["mae"].map { "MAE \(number($0))" } ?? "–",
                     "\(status.performance.labelledRows) labelled rows")
        html += card("Accuracy (estimated)", status.performance.estimatedAccuracy.map(percent) ?? "–",
                     status.performance.estimatedAccuracy == nil ? "needs class probabilities" : status.performance.calibrated ? "calibrated on the reference" : "uncalibrated")
        let firing = status.alerts.firing.map(\.rawValue)
        html += card("Alerts", firing.isEmpty ? "none firing" : firing.joined(separator: ", "), firing.isEmpty ? "" : "firing")
        html += "</div>"
        // Features.
        html += "<section><h2>Features</h2><div class=\"legend meta\"><span><i class=\"sw\" style=\"background:var(--ref)\"></i>reference</span>"
        html += "<span><i class=\"sw\" style=\"background:var(--cur)\"></i>current window</span></div><div class=\"features\">"
        for (feature, histogram) in zip(status.features, context.histograms) {
            let state: (String, String) = feature.drift.map { $0.drifted ? ("drift", "bad") : ("no drift", "ok") } ?? ("insufficient data", "none")
            html += "<div class=\"feature\" data-feature=\"\(escape(feature.name))\"><div class=\"top\"><h3>\(escape(feature.name))</h3>"
            html += "<span class=\"badge \(state.1) verdict\">\(state.0)</span></div>"
            html += "<div class=\"meta\">\(feature.kind.rawValue)"
            if let drift = feature.drift {
                html += " · \(drift.method.rawValue): score \(number(drift.score)) \(drift.method.isTest ? "(p-value)" : "") against threshold \(number(drift.threshold))"
            }
            html += "</div>" + histogramSVG(histogram) + "</div>"
        }
        html += "</div></section>"
        // Trends.
        html += "<section><h2>Over time</h2><div class=\"trends\">"
        html += lineChart("Drifted feature share", context.series.map { ($0.at, $0.driftShare) }, color: "#c8372d", percent: true)
        html += lineChart("Accuracy: realised and estimated", context.series.map { ($0.at, $0.accuracy) }, color: "#2f8f5b", percent: true,
                          second: context.series.map { ($0.at, $0.estimatedAccuracy) }, secondColor: "#7b93ad")
        html += lineChart("Requests per second", context.series.map { ($0.at, $0.requestsPerSecond) }, color: "#486581")
        html += lineChart("p99 latency (ms)", context.series.map { ($0.at, $0.p99Milliseconds) }, color: "#e8833a")
        html += "</div></section>"
        // Traffic.
        html += "<section><h2>Traffic and labels</h2><table><tr><th>route</th><th>version</th><th>weight</th></tr>"
        if context.traffic.isEmpty {
            html += "<tr><td colspan=\"3\" class=\"meta\">no traffic policy: unversioned requests go to <b>stable</b> or the latest version</td></tr>"
        }
        for route in context.traffic {
            html += "<tr><td>\(escape(route.target))</td><td>\(route.version.map(String.init) ?? "–")</td><td>\(route.weight)%</td></tr>"
        }
        html += "</table><table style=\"margin-top:10px\"><tr><th>label</th><th>version</th></tr>"
        if context.labels.isEmpty { html += "<tr><td colspan=\"2\" class=\"meta\">no labels</td></tr>" }
        for (label, version) in context.labels.sorted(by: { $0.key < $1.key }) { html += "<tr><td>\(escape(label))</td><td>\(version)</td></tr>" }
        html += "</table><p class=\"meta\">versions with monitored traffic: "
        html += context.versions.map { "<a href=\"/monitoring/\(escape(status.model))?version=\($0)\">\($0)</a>" }.joined(separator: ", ") + "</p></section>"
        html += "<p class=\"meta\">evaluated \(escape(time(status.evaluatedAt)))</p></main></body></html>"
        return html
    }

    public static func index(_ rows: [(model: String, status: MonitoringStatus?, problem: String?)]) -> String {
        var html = head(title: "Serval · monitoring")
        html += "<header><h1>Monitoring</h1><p>models and their current window</p></header><main><section><table>"
        html += "<tr><th>model</th><th>version</th><th>window</th><th>drift</th><th>accuracy</th><th>alerts</th></tr>"
        if rows.isEmpty { html += "<tr><td colspan=\"6\" class=\"meta\">no model has a <code>monitoring:</code> section</td></tr>" }
        for row in rows {
            guard let status = row.status else {
                html += "<tr><td>\(escape(row.model))</td><td colspan=\"5\" class=\"meta\">\(escape(row.problem ?? "no monitoring"))</td></tr>"
                continue
            }
            let drift = status.insufficientData ? "<span class=\"badge none\">insufficient data</span>"
                : status.datasetDrift == true ? "<span class=\"badge bad\">drift</span>" : "<span class=\"badge ok\">no drift</span>"
            html += "<tr><td><a href=\"/monitoring/\(escape(row.model))\">\(escape(row.model))</a></td><td>\(status.version)</td>"
            html += "<td>\(status.rows) / \(status.windowSize)</td><td>\(drift)</td>"
            html += "<td>\(status.performance.realised?["accuracy"].map(percent) ?? "–") (est. \(status.performance.estimatedAccuracy.map(percent) ?? "–"))</td>"
            html += "<td>\(status.alerts.firing.isEmpty ? "–" : status.alerts.firing.map(\.rawValue).joined(separator: ", "))</td></tr>"
        }
        html += "</table></section></main></body></html>"
        return html
    }

    // MARK: - Pieces

    static func head(title: String) -> String {
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            + "<title>\(escape(title))</title><style>\(style)</style></head><body>"
    }

    static func card(_ key: String, _ value: String, _ sub: String) -> String {
        "<div class=\"card\"><div class=\"k\">\(escape(key))</div><div class=\"v\">\(escape(value))</div><div class=\"s\">\(escape(sub))</div></div>"
    }

    /// Paired bars per bin: reference behind, current in front.
    static func histogramSVG(_ histogram: FeatureHistogram) -> String {
        let width = 360.0, height = 150.0, left = 34.0, bottom = 22.0, top = 8.0
        let count = max(histogram.labels.count, 1)
        let peak = max((histogram.reference + histogram.current).max() ?? 0, 1e-9)
        let slot = (width - left - 6) / Double(count)
        var svg = "<svg class=\"histogram\" role=\"img\" aria-label=\"\(escape(histogram.name)) distribution\" viewBox=\"0 0 \(Int(width)) \(Int(height))\" width=\"100%\" xmlns=\"http://www.w3.org/2000/svg\">"
        let plot = height - bottom - top
        svg += "<line x1=\"\(left)\" y1=\"\(top + plot)\" x2=\"\(width - 4)\" y2=\"\(top + plot)\" stroke=\"#9aa5b1\"/>"
        svg += "<text x=\"\(left - 4)\" y=\"\(top + 8)\" font-size=\"9\" text-anchor=\"end\" fill=\"#616e7c\">\(percent(peak))</text>"
        svg += "<text x=\"\(left - 4)\" y=\"\(top + plot)\" font-size=\"9\" text-anchor=\"end\" fill=\"#616e7c\">0</text>"
        for index in 0..<histogram.labels.count {
            let x = left + Double(index) * slot
            let pair = histogram.kind == .categorical || histogram.edges == nil
            let barWidth = pair ? slot * 0.4 : slot * 0.9
            let r = histogram.reference[index] / peak * plot, c = histogram.current[index] / peak * plot
            svg += "<rect x=\(q(x + slot * 0.05)) y=\(q(top + plot - r)) width=\(q(barWidth)) height=\(q(r)) fill=\"#7b93ad\" opacity=\"\(pair ? "1" : "0.75")\"><title>reference \(percent(histogram.reference[index]))</title></rect>"
            svg += "<rect x=\(q(x + slot * (pair ? 0.5 : 0.05))) y=\(q(top + plot - c)) width=\(q(barWidth)) height=\(q(c)) fill=\"#e8833a\" opacity=\"\(pair ? "1" : "0.6")\"><title>current \(percent(histogram.current[index]))</title></rect>"
            if pair || index % max(1, count / 5) == 0 {
                svg += "<text x=\(q(x + slot / 2)) y=\"\(height - 8)\" font-size=\"9\" text-anchor=\"middle\" fill=\"#616e7c\">\(escape(histogram.labels[index]))</text>"
            }
        }
        if let last = histogram.edges?.last {
            svg += "<text x=\"\(width - 4)\" y=\"\(height - 8)\" font-size=\"9\" text-anchor=\"end\" fill=\"#616e7c\">\(escape(format4(last)))</text>"
        }
        return svg + "</svg>"
    }

    static func lineChart(_ title: String, _ points: [(Double, Double?)], color: String, percent asPercent: Bool = false,
                          second: [(Double, Double?)] = [], secondColor: String = "") -> String {
        let width = 380.0, height = 160.0, left = 42.0, right = 8.0, top = 24.0, bottom = 22.0
        var svg = "<svg class=\"trend\" role=\"img\" aria-label=\"\(escape(title))\" viewBox=\"0 0 \(Int(width)) \(Int(height))\" width=\"100%\" xmlns=\"http://www.w3.org/2000/svg\">"
        svg += "<text x=\"0\" y=\"14\" font-size=\"12\" font-weight=\"600\" fill=\"#1f2933\">\(escape(title))</text>"
        let all = (points + second).compactMap { point in point.1.map { (point.0, $0) } }
        let plot = height - top - bottom
        svg += "<line x1=\"\(left)\" y1=\"\(top + plot)\" x2=\"\(width - right)\" y2=\"\(top + plot)\" stroke=\"#9aa5b1\"/>"
        guard let first = all.map(\.0).min(), let last = all.map(\.0).max() else {
            return svg + "<text x=\"\(width / 2)\" y=\"\(top + plot / 2)\" font-size=\"11\" text-anchor=\"middle\" fill=\"#9aa5b1\">no points yet</text></svg>"
        }
        let low = asPercent ? 0 : min(0, all.map(\.1).min()!)
        let high = asPercent ? 1 : max(all.map(\.1).max()! * 1.1, 1e-9)
        let span = max(last - first, 1)
        func x(_ t: Double) -> Double { left + (t - first) / span * (width - left - right) }
        func y(_ v: Double) -> Double { top + plot - (v - low) / (high - low) * plot }
        func label(_ v: Double) -> String { asPercent ? percent(v) : format4(v) }
        svg += "<text x=\"\(left - 4)\" y=\"\(top + 4)\" font-size=\"9\" text-anchor=\"end\" fill=\"#616e7c\">\(label(high))</text>"
        svg += "<text x=\"\(left - 4)\" y=\"\(top + plot)\" font-size=\"9\" text-anchor=\"end\" fill=\"#616e7c\">\(label(low))</text>"
        svg += "<text x=\"\(left)\" y=\"\(height - 6)\" font-size=\"9\" fill=\"#616e7c\">\(escape(clock(first)))</text>"
        svg += "<text x=\"\(width - right)\" y=\"\(height - 6)\" font-size=\"9\" text-anchor=\"end\" fill=\"#616e7c\">\(escape(clock(last)))</text>"
        for (series, stroke) in [(points, color), (second, secondColor)] where !series.isEmpty {
            let coordinates = series.compactMap { point in point.1.map { "\(q2(x(point.0))),\(q2(y($0)))" } }
            guard !coordinates.isEmpty else { continue }
            if coordinates.count == 1 {
                let parts = coordinates[0].split(separator: ",")
                svg += "<circle cx=\"\(parts[0])\" cy=\"\(parts[1])\" r=\"3\" fill=\"\(stroke)\"/>"
            } else {
                svg += "<polyline fill=\"none\" stroke=\"\(stroke)\" stroke-width=\"2\" points=\"\(coordinates.joined(separator: " "))\"/>"
            }
        }
        return svg + "</svg>"
    }

    static func q(_ value: Double) -> String { "\"" + q2(value) + "\"" }
    static func q2(_ value: Double) -> String { String(format: "%.1f", value) }
    static func percent(_ value: Double) -> String { String(format: value >= 0.1 ? "%.0f%%" : "%.1f%%", value * 100) }
    static func number(_ value: Double) -> String { value.isFinite ? format4(value) : "–" }
    static func time(_ seconds: Double) -> String { StoreClock.timestamp(Date(timeIntervalSince1970: seconds)) }
    static func clock(_ seconds: Double) -> String {
        let text = time(seconds)
        return String(text.dropFirst(11).prefix(8))
    }

    static func escape(_ text: String) -> String {
        var out = ""
        for character in text {
            switch character {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.append(character)
            }
        }
        return out
    }
}
