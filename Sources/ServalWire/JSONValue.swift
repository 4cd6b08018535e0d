import Foundation

/// A parsed JSON document. Arrays whose elements are all numbers are kept as one `[Double]`
/// (`.numbers`), so a tensor's `data` never becomes one boxed value per element.
public enum JSONValue: Sendable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case numbers([Double])
    case array([JSONValue])
    case object([String: JSONValue])

    public subscript(key: String) -> JSONValue? {
        if case .object(let members) = self { return members[key] }
        return nil
    }

    public var string: String? { if case .string(let value) = self { return value }; return nil }
    public var object: [String: JSONValue]? { if case .object(let members) = self { return members }; return nil }
    public var array: [JSONValue]? {
        switch self {
        case .array(let values): return values
        case .numbers(let values): return values.map { .number($0) }
        default: return nil
        }
    }
    public var number: Double? { if case .number(let value) = self { return value }; return nil }
    public var int: Int? { if case .number(let value) = self, value == value.rounded(), abs(value) < 1e15 { return Int(value) }; return nil }
}

/// Errors carry the byte offset so a client can find the problem.
public struct JSONSyntaxError: Error, CustomStringConvertible {
    let message: String
    let offset: Int
    public var description: String { "invalid JSON at byte \(offset): \(message)" }
}

/// A small recursive-descent JSON parser over raw bytes, with a fast exact path for decimal numbers
/// (≤ 19 significant digits and |exponent| ≤ 22 convert exactly through Double, as strtod would). Nesting and
/// the number of values are bounded by `WireLimits`, so a hostile document is refused before it is built.
public struct JSONParser {
    private let bytes: UnsafeRawBufferPointer
    private var index = 0
    private var depth = 0
    private var elements = 0
    private let maxDepth: Int
    private let maxElements: Int

    public static func parse(_ data: UnsafeRawBufferPointer, limits: WireLimits = .standard) throws -> JSONValue {
        var parser = JSONParser(bytes: data, maxDepth: limits.maxJSONDepth, maxElements: limits.maxJSONElements)
        parser.skipWhitespace()
        let value = try parser.parseValue()
        parser.skipWhitespace()
        guard parser.index == data.count else { throw JSONSyntaxError(message: "unexpected trailing content", offset: parser.index) }
        return value
    }

    private init(bytes: UnsafeRawBufferPointer, maxDepth: Int, maxElements: Int) {
        self.bytes = bytes
        self.maxDepth = maxDepth
        self.maxElements = maxElements
    }

    private mutating func count() throws {
        elements += 1
        guard elements <= maxElements else { throw error("the document holds more than --max-json-elements (\(maxElements)) values") }
    }

    private mutating func enter() throws {
        depth += 1
        guard depth <= maxDepth else { throw error("nesting is deeper than --max-json-depth (\(maxDepth))") }
    }

    private mutating func skipWhitespace() {
        while index < bytes.count {
            let byte = bytes[index]
            guard byte == 0x20 || byte == 0x0A || byte == 0x0D || byte == 0x09 else { return }
            index += 1
        }
    }

    private func error(_ message: String) -> JSONSyntaxError { JSONSyntaxError(message: message, offset: index) }

    private mutating func parseValue() throws -> JSONValue {
        guard index < bytes.count else { throw error("unexpected end of input") }
        try count()
        switch bytes[index] {
        case UInt8(ascii: "{"): return try parseObject()
        case UInt8(ascii: "["): return try parseArray()
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): try expect("true"); return .bool(true)
        case UInt8(ascii: "f"): try expect("false"); return .bool(false)
        case UInt8(ascii: "n"): try expect("null"); return .null
        default: return .number(try parseNumber())
        }
    }

    private mutating func expect(_ word: String) throws {
        for byte in word.utf8 {
            guard index < bytes.count, bytes[index] == byte else { throw error("expected '\(word)'") }
            index += 1
        }
    }

    private mutating func parseObject() throws -> JSONValue {
        try enter()
        defer { depth -= 1 }
        index += 1
        var members: [String: JSONValue] = [:]
        skipWhitespace()
        if index < bytes.count, bytes[index] == UInt8(ascii: "}") { index += 1; return .object(members) }
        while true {
            skipWhitespace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { throw error("expected a string key") }
            let key = try parseString()
            skipWhitespace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { throw error("expected ':'") }
            index += 1
            skipWhitespace()
            members[key] = try parseValue()
            skipWhitespace()
            guard index < bytes.count else { throw error("unterminated object") }
            if bytes[index] == UInt8(ascii: ",") { index += 1; continue }
            if bytes[index] == UInt8(ascii: "}") { index += 1; return .object(members) }
            throw error("expected ',' or '}'")
        }
    }

    private mutating func parseArray() throws -> JSONValue {
        try enter()
        defer { depth -= 1 }
        index += 1
        skipWhitespace()
        if index < bytes.count, bytes[index] == UInt8(ascii: "]") { index += 1; return .numbers([]) }
        var numbers: [Double] = []
        var values: [JSONValue] = []
        var numeric = true
        while true {
            skipWhitespace()
            guard index < bytes.count else { throw error("unterminated array") }
            let byte = bytes[index]
            if numeric && (byte == UInt8(ascii: "-") || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")) || byte == UInt8(ascii: "N") || byte == UInt8(ascii: "I")) {
                try count()
                numbers.append(try parseNumber())
            } else {
                if numeric {
                    values = numbers.map { .number($0) }
                    numeric = false
                }
                values.append(try parseValue())
            }
            skipWhitespace()
            guard index < bytes.count else { throw error("unterminated array") }
            if bytes[index] == UInt8(ascii: ",") { index += 1; continue }
            if bytes[index] == UInt8(ascii: "]") { index += 1; return numeric ? .numbers(numbers) : .array(values) }
            throw error("expected ',' or ']'")
        }
    }

    private mutating func parseString() throws -> String {
        index += 1
        let start = index
        var plain = true
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") {
                if plain {
                    let text = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
                    index += 1
                    return text
                }
                break
            }
            if byte == UInt8(ascii: "\\") { plain = false; index += 2; continue }
            index += 1
        }
        guard index < bytes.count else { throw error("unterminated string") }
        // Escapes present: decode the literal (quotes included) with Foundation.
        let literal = Data(UnsafeRawBufferPointer(rebasing: bytes[(start - 1)...index]))
        index += 1
        guard let text = try? JSONSerialization.jsonObject(with: literal, options: [.fragmentsAllowed]) as? String else {
            throw error("invalid string escape")
        }
        return text
    }

    private static let powersOfTen: [Double] = (0...22).map { Foundation.pow(10, Double($0)) }

    private mutating func parseNumber() throws -> Double {
        let start = index
        if bytes[index] == UInt8(ascii: "N") { try expect("NaN"); return .nan }
        var negative = false
        if bytes[index] == UInt8(ascii: "-") { negative = true; index += 1 }
        if index < bytes.count, bytes[index] == UInt8(ascii: "I") { try expect("Infinity"); return negative ? -.infinity : .infinity }
        var mantissa: UInt64 = 0
        var digits = 0
        var exponent = 0
        var sawDigit = false
        while index < bytes.count, bytes[index] >= UInt8(ascii: "0"), bytes[index] <= UInt8(ascii: "9") {
            sawDigit = true
            if digits < 19 { mantissa = mantissa * 10 + UInt64(bytes[index] - UInt8(ascii: "0")); if mantissa > 0 { digits += 1 } } else { exponent += 1 }
            index += 1
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
            index += 1
            while index < bytes.count, bytes[index] >= UInt8(ascii: "0"), bytes[index] <= UInt8(ascii: "9") {
                sawDigit = true
                if digits < 19 { mantissa = mantissa * 10 + UInt64(bytes[index] - UInt8(ascii: "0")); exponent -= 1; if mantissa > 0 { digits += 1 } }
                index += 1
            }
        }
        guard sawDigit else { index = start; throw error("expected a value") }
        if index < bytes.count, bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E") {
            index += 1
            var exponentNegative = false
            if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") {
                exponentNegative = bytes[index] == UInt8(ascii: "-")
                index += 1
            }
            var value = 0
            var sawExponentDigit = false
            while index < bytes.count, bytes[index] >= UInt8(ascii: "0"), bytes[index] <= UInt8(ascii: "9") {
                sawExponentDigit = true
                value = min(value * 10 + Int(bytes[index] - UInt8(ascii: "0")), 100_000)
                index += 1
            }
            guard sawExponentDigit else { throw error("malformed exponent") }
            exponent += exponentNegative ? -value : value
        }
        if digits <= 15 && mantissa < (1 << 53) && abs(exponent) <= 22 {
            let magnitude = exponent >= 0 ? Double(mantissa) * Self.powersOfTen[exponent] : Double(mantissa) / Self.powersOfTen[-exponent]
            return negative ? -magnitude : magnitude
        }
        let text = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
        guard let value = Double(text) else { throw error("malformed number \(text)") }
        return value
    }
}

/// JSON values through Codable too, for documents another library decodes (a JWT's claims through jwt-kit).
extension JSONValue: Codable {
    public init(from decoder: Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() { self = .null }
        else if let value = try? container.decode(Bool.self) { self = .bool(value) }
        else if let value = try? container.decode(Double.self) { self = .number(value) }
        else if let value = try? container.decode(String.self) { self = .string(value) }
        else if let value = try? container.decode([JSONValue].self) { self = .array(value) }
        else { self = .object(try container.decode([String: JSONValue].self)) }
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case .bool(let value): try container.encode(value)
        case .number(let value): try container.encode(value)
        case .string(let value): try container.encode(value)
        case .numbers(let values): try container.encode(values)
        case .array(let values): try container.encode(values)
        case .object(let members): try container.encode(members)
        }
    }
}
