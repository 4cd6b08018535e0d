import Foundation

extension DecodingError {
    /// What a JSON body got wrong, naming the field: `field 'routes[0].weight' must be an integer`, `field 'id' is
    /// required`, `not valid JSON`. Shared by every decoder of request bodies and records.
    public var fieldDescription: String {
        func path(_ context: DecodingError.Context, _ key: CodingKey? = nil) -> String {
            let names = (context.codingPath + (key.map { [$0] } ?? [])).map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }
            return names.isEmpty ? "body" : "field '" + names.joined(separator: ".").replacingOccurrences(of: ".[", with: "[") + "'"
        }
        switch self {
        case .keyNotFound(let key, let context): return "\(path(context, key)) is required"
        case .typeMismatch(let type, let context): return "\(path(context)) must be \(expected(type))"
        case .valueNotFound(let type, let context): return "\(path(context)) must be \(expected(type)), not null"
        case .dataCorrupted(let context):
            return context.codingPath.isEmpty ? "not valid JSON" : "\(path(context)): \(context.debugDescription)"
        @unknown default: return "\(self)"
        }
    }

    private func expected(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: return "a string"
        case is Int.Type, is Int64.Type: return "an integer"
        case is Double.Type: return "a number"
        case is Bool.Type: return "true or false"
        default:
            let name = "\(type)"
            if name.hasPrefix("Array") { return "a list" }
            if name.hasPrefix("Dictionary") { return "an object" }
            return "an object"
        }
    }
}
