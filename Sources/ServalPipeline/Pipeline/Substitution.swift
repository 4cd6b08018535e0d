import Foundation

/// `${name}` references in a pipeline's commands: `${data.train}`, `${params.C}`, `${params_file}`,
/// `${outputs.model}`, `${run_id}`, `${candidate}`. `$${` writes a literal `${`.
public enum Substitution {
    /// The names referenced in `text`, in order.
    public static func references(in text: String) -> [String] {
        var names: [String] = []
        _ = try? expand(text) { name in
            names.append(name)
            return ""
        }
        return names
    }

    /// `text` with each reference replaced by `values[name]`; an unknown name is an error naming it.
    public static func substitute(_ text: String, _ values: [String: String]) throws -> String {
        try expand(text) { name in
            guard let value = values[name] else { throw PipelineError("unknown variable ${\(name)}") }
            return value
        }
    }

    private static func expand(_ text: String, _ value: (String) throws -> String) throws -> String {
        var result = ""
        var index = text.startIndex
        while index < text.endIndex {
            if text[index...].hasPrefix("$${") {
                result += "${"
                index = text.index(index, offsetBy: 3)
            } else if text[index...].hasPrefix("${"), let close = text[index...].firstIndex(of: "}") {
                let name = String(text[text.index(index, offsetBy: 2)..<close]).trimmingCharacters(in: .whitespaces)
                result += try value(name)
                index = text.index(after: close)
            } else {
                result.append(text[index])
                index = text.index(after: index)
            }
        }
        return result
    }
}
