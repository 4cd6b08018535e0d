import Foundation
import ServalTensor

/// Turns JSON tensor contents (flat or nested arrays) into `Tensor`s of a given datatype.
public enum TensorJSON {
    /// Shape of a nested JSON array ([] for a scalar); nil if the nesting is ragged.
    public static func shape(of value: JSONValue) -> [Int]? {
        switch value {
        case .numbers(let values): return [values.count]
        case .array(let values):
            guard let first = values.first else { return [0] }
            guard let inner = shape(of: first) else { return nil }
            for element in values.dropFirst() where shape(of: element) != inner { return nil }
            return [values.count] + inner
        case .object(let members) where members["b64"] != nil: return []
        case .null: return nil
        default: return []
        }
    }

    /// Builds a tensor from flat or nested `data`; `what` names the input in error messages. The shape is checked
    /// against `limits` first, and no more is reserved than the data can fill (a small body declaring a huge
    /// shape allocates nothing big).
    public static func tensor(_ data: JSONValue, shape: [Int], dtype: DType, what: String, limits: WireLimits = .standard) throws -> Tensor {
        let count = try limits.elements(of: shape, what: what)
        let reserve = min(count, 1 << 16)
        switch dtype {
        case .string:
            var strings: [String] = []
            strings.reserveCapacity(reserve)
            try collectStrings(data, into: &strings, what: what, limits: limits)
            try check(strings.count, count, shape, what)
            return Tensor(shape: shape, strings: strings)
        case .bool:
            var flags: [Bool] = []
            flags.reserveCapacity(reserve)
            try collectBools(data, into: &flags, what: what)
            try check(flags.count, count, shape, what)
            return Tensor(shape: shape, scalars: flags)
        default:
            var numbers: [Double] = []
            numbers.reserveCapacity(reserve)
            try collectNumbers(data, into: &numbers, what: what, floating: dtype.isFloatingPoint)
            try check(numbers.count, count, shape, what)
            if dtype == .float32 {
                var tensor = Tensor(uninitialized: .float32, shape: shape)
                tensor.withUnsafeMutableBufferPointer(as: Float.self) { target in
                    for i in 0..<count { target[i] = Float(numbers[i]) }
                }
                return tensor
            }
            return try Tensor(shape: shape, scalars: numbers).converted(to: dtype)
        }
    }

    private static func check(_ actual: Int, _ expected: Int, _ shape: [Int], _ what: String) throws {
        guard actual == expected else {
            throw ServingError.invalidArgument("\(what): data has \(actual) elements, shape \(shape) needs \(expected)")
        }
    }

    private static func collectNumbers(_ value: JSONValue, into numbers: inout [Double], what: String, floating: Bool) throws {
        switch value {
        case .numbers(let values): numbers += values
        case .number(let value): numbers.append(value)
        case .bool(let flag): numbers.append(flag ? 1 : 0)
        case .array(let values): for element in values { try collectNumbers(element, into: &numbers, what: what, floating: floating) }
        // Non-finite values as Serval writes them (strict JSON has no NaN): whether the model takes them is
        // the model's policy (`allow_non_finite`), checked with the rest of the request.
        case .string(let text) where floating && JSONWriter.nonFinite(text) != nil: numbers.append(JSONWriter.nonFinite(text)!)
        default: throw ServingError.invalidArgument("\(what): data must hold numbers")
        }
    }

    private static func collectBools(_ value: JSONValue, into flags: inout [Bool], what: String) throws {
        switch value {
        case .bool(let flag): flags.append(flag)
        case .numbers(let values): flags += values.map { $0 != 0 }
        case .number(let value): flags.append(value != 0)
        case .array(let values): for element in values { try collectBools(element, into: &flags, what: what) }
        default: throw ServingError.invalidArgument("\(what): data must hold booleans")
        }
    }

    private static func collectStrings(_ value: JSONValue, into strings: inout [String], what: String, limits: WireLimits) throws {
        switch value {
        case .string(let text):
            try limits.checkBytesElement(text.utf8.count, what: what)
            strings.append(text)
        case .object(let members):
            guard case .string(let encoded)? = members["b64"], let data = Data(base64Encoded: encoded) else {
                throw ServingError.invalidArgument("\(what): expected a string or {\"b64\": ...}")
            }
            try limits.checkBytesElement(data.count, what: what)
            strings.append(String(decoding: data, as: UTF8.self))
        case .array(let values): for element in values { try collectStrings(element, into: &strings, what: what, limits: limits) }
        case .numbers(let values) where values.isEmpty: break
        default: throw ServingError.invalidArgument("\(what): BYTES data must hold strings")
        }
    }
}
