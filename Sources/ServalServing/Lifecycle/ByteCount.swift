/// Sizes written for people (`2GB`, `512Mi`, `1.5GiB`, `1048576`): decimal units as Kubernetes spells them
/// (K, M, G, T, optionally followed by B) are powers of 1000, binary ones (Ki, Mi, Gi, Ti, optionally with B)
/// powers of 1024. For `--model-memory-limit`.
public enum ByteCount {
    /// The size in bytes, or nil with nothing recognisable.
    public static func parse(_ text: String) -> Int? {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        let digits = trimmed.prefix { $0.isNumber || $0 == "." }
        guard !digits.isEmpty, let value = Double(digits), value >= 0 else { return nil }
        var unit = trimmed.dropFirst(digits.count).trimmingCharacters(in: .whitespaces).lowercased()
        if unit.hasSuffix("b") { unit.removeLast() }
        let scale: Double
        switch unit {
        case "": scale = 1
        case "k": scale = 1e3
        case "m": scale = 1e6
        case "g": scale = 1e9
        case "t": scale = 1e12
        case "ki": scale = 1024
        case "mi": scale = 1024 * 1024
        case "gi": scale = 1024 * 1024 * 1024
        case "ti": scale = 1024 * 1024 * 1024 * 1024
        default: return nil
        }
        let bytes = (value * scale).rounded()
        guard bytes < Double(Int.max) else { return nil }
        return Int(bytes)
    }
}
