import Foundation
import ServalTensor
import ServalWire

/// The rows a model was trained on, by column: what live traffic is compared with. Read once when monitoring
/// starts, from CSV (a header row names the columns), NPY (a 2-D array, one column per feature) or JSON lines
/// (one object per row keyed by column name, or one array of feature values per row).
public struct ReferenceData: Sendable {
    /// Feature names, in the column order of the monitored input.
    public let features: [String]
    /// One array of values per feature.
    public let columns: [[Double]]
    /// The label column's values as text, when the reference has one.
    public let labels: [String]?

    public var rows: Int { columns.first?.count ?? labels?.count ?? 0 }

    public init(features: [String], columns: [[Double]], labels: [String]?) {
        self.features = features
        self.columns = columns
        self.labels = labels
    }

    /// Loads `url`. `features` (when configured) picks and orders the columns; otherwise every column but the
    /// label column is a feature, in file order (f0…fN−1 for NPY and array rows).
    public static func load(_ url: URL, features: [String]?, labelColumn: String?) throws -> ReferenceData {
        guard FileManager.default.fileExists(atPath: url.path) else { throw MonitoringConfigError("reference: no file at \(url.path)") }
        switch url.pathExtension.lowercased() {
        case "csv": return try csv(url, features: features, labelColumn: labelColumn)
        case "npy": return try npy(url, features: features)
        case "jsonl", "ndjson": return try jsonLines(url, features: features, labelColumn: labelColumn)
        default: throw MonitoringConfigError("reference: '\(url.lastPathComponent)' is not .csv, .npy or .jsonl")
        }
    }

    static func csv(_ url: URL, features: [String]?, labelColumn: String?) throws -> ReferenceData {
        var reader = try CSVReader(url: url)
        guard let header = try reader.next()?.fields.map({ $0.trimmingCharacters(in: .whitespaces) }) else {
            throw MonitoringConfigError("reference: \(url.lastPathComponent) is empty")
        }
        let names = features ?? header.filter { $0 != labelColumn }
        let indices = try names.map { name in
            guard let index = header.firstIndex(of: name) else {
                throw MonitoringConfigError("reference: \(url.lastPathComponent) has no column '\(name)' (columns: \(header.joined(separator: ", ")))")
            }
            return index
        }
        let labelIndex = try labelColumn.map { name in
            guard let index = header.firstIndex(of: name) else {
                throw MonitoringConfigError("reference: \(url.lastPathComponent) has no label column '\(name)'")
            }
            return index
        }
        var columns = [[Double]](repeating: [], count: names.count)
        var labels: [String]? = labelIndex == nil ? nil : []
        while let record = try reader.next() {
            guard record.fields.count == header.count else {
                throw MonitoringConfigError("reference: \(url.lastPathComponent) line \(record.line): \(record.fields.count) fields, the header has \(header.count)")
            }
            for (position, index) in indices.enumerated() {
                let field = record.fields[index].trimmingCharacters(in: .whitespaces)
                guard let value = field.isEmpty ? Double.nan : Double(field) else {
                    throw MonitoringConfigError("reference: \(url.lastPathComponent) line \(record.line), column '\(names[position])': '\(field)' is not a number")
                }
                columns[position].append(value)
            }
            if let labelIndex { labels?.append(record.fields[labelIndex].trimmingCharacters(in: .whitespaces)) }
        }
        return ReferenceData(features: names, columns: columns, labels: labels)
    }

    static func npy(_ url: URL, features: [String]?) throws -> ReferenceData {
        let tensor: Tensor
        do { tensor = try NPYFormat.decode(try Data(contentsOf: url)) } catch { throw MonitoringConfigError("reference: \(url.lastPathComponent): \(error)") }
        guard tensor.rank == 2 else { throw MonitoringConfigError("reference: \(url.lastPathComponent) has shape \(tensor.shape), expected [rows, features]") }
        let width = tensor.shape[1]
        let names = features ?? (0..<width).map { "f\($0)" }
        guard names.count == width else {
            throw MonitoringConfigError("reference: \(url.lastPathComponent) has \(width) columns, features names \(names.count)")
        }
        let values: [Double]
        do { values = try tensor.doubles() } catch { throw MonitoringConfigError("reference: \(url.lastPathComponent): \(error)") }
        var columns = [[Double]](repeating: [], count: width)
        for row in 0..<tensor.shape[0] { for column in 0..<width { columns[column].append(values[row * width + column]) } }
        return ReferenceData(features: names, columns: columns, labels: nil)
    }

    static func jsonLines(_ url: URL, features: [String]?, labelColumn: String?) throws -> ReferenceData {
        let text = try String(contentsOf: url, encoding: .utf8)
        var names = features
        var columns: [[Double]] = []
        var labels: [String]? = labelColumn == nil ? nil : []
        for (offset, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let trimmed = line.trimmingCharacters(in: .whitespacesAndNewlines)
            if trimmed.isEmpty { continue }
            let where_ = "reference: \(url.lastPathComponent) line \(offset + 1)"
            let value: JSONValue
            do { value = try Array(trimmed.utf8).withUnsafeBytes { try JSONParser.parse($0) } } catch { throw MonitoringConfigError("\(where_): \(error)") }
            if let object = value.object {
                if names == nil { names = object.keys.filter { $0 != labelColumn }.sorted() }
                if columns.isEmpty { columns = Array(repeating: [], count: names!.count) }
                for (index, name) in names!.enumerated() {
                    guard let cell = object[name] else { throw MonitoringConfigError("\(where_): no field '\(name)'") }
                    columns[index].append(try number(cell, "\(where_), field '\(name)'"))
                }
                if let labelColumn {
                    guard let label = object[labelColumn] else { throw MonitoringConfigError("\(where_): no label field '\(labelColumn)'") }
                    labels?.append(Self.text(label))
                }
            } else if let array = value.array {
                if names == nil { names = (0..<array.count).map { "f\($0)" } }
                guard array.count == names!.count else { throw MonitoringConfigError("\(where_): \(array.count) values, expected \(names!.count)") }
                if columns.isEmpty { columns = Array(repeating: [], count: names!.count) }
                for (index, cell) in array.enumerated() { columns[index].append(try number(cell, "\(where_), value \(index)")) }
                if labelColumn != nil { throw MonitoringConfigError("\(where_): an array row has no label; write objects to include '\(labelColumn!)'") }
            } else {
                throw MonitoringConfigError("\(where_): expected an object or an array")
            }
        }
        guard let names else { throw MonitoringConfigError("reference: \(url.lastPathComponent) has no rows") }
        return ReferenceData(features: names, columns: columns, labels: labels)
    }

    private static func number(_ value: JSONValue, _ place: String) throws -> Double {
        switch value {
        case .number(let number): return number
        case .null: return .nan
        case .bool(let flag): return flag ? 1 : 0
        default: throw MonitoringConfigError("\(place): expected a number")
        }
    }

    private static func text(_ value: JSONValue) -> String {
        switch value {
        case .string(let string): return string
        case .number(let number): return LabelText.format(number)
        case .bool(let flag): return flag ? "true" : "false"
        default: return ""
        }
    }
}

/// Labels compared as text: a number is written the way a CSV cell or an int64 output writes it ("2", not "2.0").
public enum LabelText {
    public static func format(_ value: Double) -> String {
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return String(value)
    }

    /// A label cell as read from a file: a number normalised as above, anything else as it is.
    public static func normalise(_ cell: String) -> String {
        if let number = Double(cell) { return format(number) }
        return cell
    }
}
