import ServalWire

/// Which version of a model a request asks for. Frontends parse their wire form into it
/// (v2 `/versions/{v}`, gRPC `model_version`, TF Serving `/versions/{v}` and `/labels/{l}`); the Router resolves it.
public enum ModelSelector: Sendable, Equatable, CustomStringConvertible {
    /// No version named: the model's traffic policy decides, else the `stable` label, else the latest ready version.
    case latest
    case version(Int)
    case label(String)

    /// The protocols' version string: empty or absent is `latest`. A string that is not a positive number
    /// names no version, which is a 404 for that model.
    public static func parse(version: String?, model: String) throws -> ModelSelector {
        guard let version, !version.isEmpty else { return .latest }
        guard let number = Int(version), number > 0 else { throw ServingError.notFound("model '\(model)' has no version '\(version)'") }
        return .version(number)
    }

    public var description: String {
        switch self {
        case .latest: return "latest"
        case .version(let number): return "version \(number)"
        case .label(let name): return "label '\(name)'"
        }
    }
}
