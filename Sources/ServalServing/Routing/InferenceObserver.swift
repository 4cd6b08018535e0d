import Foundation
import ServalWire

/// One answered request as an observer sees it: the request and response themselves (tensors are shared, not
/// copied), where it was routed and how long it took.
public struct Observation: Sendable {
    public let model: String
    public let version: Int
    public let arm: String?
    public let request: InferenceRequest
    public let response: InferenceResponse
    /// Seconds from routing to the answer.
    public let latency: Double
    /// Wall-clock seconds since 1970 when the answer was ready.
    public let time: Double

    public init(model: String, version: Int, arm: String?, request: InferenceRequest, response: InferenceResponse, latency: Double, time: Double) {
        self.model = model
        self.version = version
        self.arm = arm
        self.request = request
        self.response = response
        self.latency = latency
        self.time = time
    }
}

/// Something that watches answered requests (the model monitor). `observe` is called on the request path after
/// the answer is ready, so it must only hand the observation off: never wait, never touch the store.
public protocol InferenceObserver: Sendable {
    func observe(_ observation: Observation)
}

/// Request ids Serval assigns when a client sends none: 32 hex digits, random, unique for practical purposes.
public enum RequestID {
    public static func next() -> String {
        var generator = SystemRandomNumberGenerator()
        let high = generator.next() as UInt64, low = generator.next() as UInt64
        return FNV1a.hex(high) + FNV1a.hex(low)
    }
}

/// The 64-bit FNV-1a hash: stable across processes (unlike `Hasher`), for traffic buckets and alert fingerprints.
public struct FNV1a {
    public private(set) var value: UInt64 = 0xcbf2_9ce4_8422_2325

    public init() {}

    public mutating func combine(_ text: String) {
        for byte in text.utf8 {
            value ^= UInt64(byte)
            value = value &* 0x0000_0100_0000_01b3
        }
    }

    /// `value` as 16 hex digits.
    public static func hex(_ value: UInt64) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }
}
