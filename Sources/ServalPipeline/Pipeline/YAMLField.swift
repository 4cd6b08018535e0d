import Yams

/// A pipeline file's failure: the file, the line and the field, and what was expected.
public struct PipelineError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// One node of a parsed YAML file with its dotted path, so each error names the file, the line and the field.
struct YAMLField {
    let node: Node
    let path: String
    let file: String

    var line: Int { node.mark?.line ?? 0 }

    func error(_ message: String) -> PipelineError { PipelineError("\(file):\(line): \(path): \(message)") }

    func child(_ key: String, _ node: Node) -> YAMLField { YAMLField(node: node, path: path.isEmpty ? key : "\(path).\(key)", file: file) }

    /// The mapping's entries in file order; an error for anything else.
    func entries() throws -> [(key: String, value: YAMLField)] {
        guard let mapping = node.mapping else { throw error("expected a mapping") }
        return try mapping.map { key, value in
            guard let name = key.string else { throw YAMLField(node: key, path: path, file: file).error("keys must be strings") }
            return (name, child(name, value))
        }
    }

    /// The value under `key`, when present and not null.
    subscript(_ key: String) -> YAMLField? {
        guard let value = node.mapping?[key] else { return nil }
        if value.null != nil { return nil }
        return child(key, value)
    }

    func required(_ key: String) throws -> YAMLField {
        guard let value = self[key] else { throw error("'\(key)' is required") }
        return value
    }

    /// Fails on a key outside `allowed`, naming it and the ones expected.
    func only(_ allowed: [String]) throws {
        for (key, value) in try entries() where !allowed.contains(key) {
            throw value.error("unknown field; expected one of \(allowed.joined(separator: ", "))")
        }
    }

    func string() throws -> String {
        guard case .scalar(let scalar) = node else { throw error("expected a string") }
        return scalar.string
    }

    func int() throws -> Int {
        guard let value = node.int else { throw error("expected an integer, found '\((try? string()) ?? "a collection")'") }
        return value
    }

    func double() throws -> Double {
        guard let value = node.float ?? node.int.map(Double.init) else { throw error("expected a number, found '\((try? string()) ?? "a collection")'") }
        return value
    }

    func bool() throws -> Bool {
        guard let value = node.bool else { throw error("expected true or false, found '\((try? string()) ?? "a collection")'") }
        return value
    }

    func list() throws -> [YAMLField] {
        guard let sequence = node.sequence else { throw error("expected a list") }
        return sequence.enumerated().map { index, item in YAMLField(node: item, path: "\(path)[\(index)]", file: file) }
    }

    func strings() throws -> [String] { try list().map { try $0.string() } }

    /// A duration written as a number of seconds or as `90s`, `15m`, `24h`, `7d`.
    func seconds() throws -> Double {
        if let number = node.float ?? node.int.map(Double.init) { return number }
        let text = try string().trimmingCharacters(in: .whitespaces)
        let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600, "d": 86400]
        guard let unit = text.last, let scale = units[unit], let value = Double(text.dropLast()), value >= 0 else {
            throw error("expected a duration such as 90s, 15m, 24h or 7d, found '\(text)'")
        }
        return value * scale
    }
}
