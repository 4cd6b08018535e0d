import Crypto
import Foundation

/// API keys: 32 random bytes, base64url without padding, prefixed `sk_`. Only their SHA-256 is stored.
public enum APIKey {
    public static let prefix = "sk_"

    /// A new key (shown once) and the hex SHA-256 that goes in auth.yaml.
    public static func generate() -> (key: String, sha256: String) {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) }
        let key = prefix + Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
        return (key, sha256Hex(key))
    }

    public static func digest(_ key: String) -> [UInt8] { Array(SHA256.hash(data: Data(key.utf8))) }

    /// The SHA-256 of a presented key, hashed from its bytes in place (a key is presented on every request).
    static func digest(presented key: Substring) -> SHA256Digest {
        var key = key
        return key.withUTF8 { SHA256.hash(data: UnsafeRawBufferPointer($0)) }
    }

    public static func sha256Hex(_ key: String) -> String { digest(key).map { String(format: "%02x", $0) }.joined() }

    /// Equal-length byte strings compared in time that depends only on their length, not on where they differ.
    public static func constantTimeEquals(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        a.withUnsafeBufferPointer { a in b.withUnsafeBytes { constantTimeEquals(a, $0) } }
    }

    static func constantTimeEquals(_ a: UnsafeBufferPointer<UInt8>, _ b: UnsafeRawBufferPointer) -> Bool {
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for index in 0..<a.count { difference |= a[index] ^ b[index] }
        return difference == 0
    }
}

/// The configured keys, by digest. Looking a key up compares its digest with every stored one, without stopping at
/// the first match, so the time taken says nothing about which key (or how much of one) matched.
public struct KeyRing: Sendable {
    struct Entry: Sendable {
        let digest: [UInt8]
        let principal: Principal
    }

    let entries: [Entry]

    public init(_ keys: [(sha256: String, principal: Principal)]) throws {
        entries = try keys.map { key in
            guard let digest = Self.bytes(hex: key.sha256), digest.count == 32 else {
                throw AuthConfigError("api_keys: '\(key.principal.name)': sha256 must be 64 hex digits")
            }
            return Entry(digest: digest, principal: key.principal)
        }
    }

    public func principal(forKey key: Substring) -> Principal? {
        let presented = APIKey.digest(presented: key)
        var found: Principal?
        presented.withUnsafeBytes { presented in
            for entry in entries {
                let equal = entry.digest.withUnsafeBufferPointer { APIKey.constantTimeEquals($0, presented) }
                if equal { found = entry.principal }
            }
        }
        return found
    }

    public var count: Int { entries.count }

    static func bytes(hex: String) -> [UInt8]? {
        let characters = Array(hex.lowercased().utf8)
        guard characters.count % 2 == 0 else { return nil }
        var result: [UInt8] = []
        result.reserveCapacity(characters.count / 2)
        for index in stride(from: 0, to: characters.count, by: 2) {
            guard let high = nibble(characters[index]), let low = nibble(characters[index + 1]) else { return nil }
            result.append(high << 4 | low)
        }
        return result
    }

    private static func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        default: return nil
        }
    }
}
