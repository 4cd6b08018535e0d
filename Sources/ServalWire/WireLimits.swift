import ServalTensor

/// What one request may declare, checked while it is decoded and before anything is allocated for it: JSON
/// nesting and element count, tensor elements (per request, over every input) and the length of one BYTES
/// element. Each has a `serval serve` flag; a request over one gets 400 naming the flag.
public struct WireLimits: Sendable, Equatable {
    /// Deepest JSON nesting (`--max-json-depth`).
    public var maxJSONDepth = 64
    /// Most JSON values in one document, every array element and member counted (`--max-json-elements`).
    public var maxJSONElements = 16 * 1024 * 1024
    /// Most tensor elements in one request, over all its inputs (`--max-tensor-elements`).
    public var maxTensorElements = 64 * 1024 * 1024
    /// Longest BYTES element in bytes (`--max-bytes-element-size`).
    public var maxBytesElementSize = 16 * 1024 * 1024

    public static let standard = WireLimits()

    public init() {}

    /// The element count `shape` declares, refused when it overflows or is over `maxTensorElements` (with what the
    /// request already declared in `total`, which grows by it).
    public func elements(of shape: [Int], what: String, total: inout Int) throws -> Int {
        var count = 1
        for dimension in shape {
            guard dimension >= 0 else { throw ServingError.invalidArgument("\(what): shape \(shape) has a negative size") }
            let (product, overflow) = count.multipliedReportingOverflow(by: dimension)
            guard !overflow else { throw tooMany(shape, what) }
            count = product
        }
        let (sum, overflow) = total.addingReportingOverflow(count)
        guard !overflow, sum <= maxTensorElements else { throw tooMany(shape, what) }
        total = sum
        return count
    }

    /// `elements(of:)` for one tensor on its own.
    public func elements(of shape: [Int], what: String) throws -> Int {
        var total = 0
        return try elements(of: shape, what: what, total: &total)
    }

    /// One dimension of a JSON `shape`: a non-negative integer. An integral number too large to hold exactly is
    /// refused by the element limit it necessarily breaks, not as a malformed shape.
    public func dimension(_ value: JSONValue, what: String) throws -> Int {
        if let dimension = value.int, dimension >= 0 { return dimension }
        if case .number(let number) = value, number.isFinite, number >= 0, number == number.rounded() {
            throw ServingError.invalidArgument("\(what): a shape dimension of \(number) makes the request hold more than --max-tensor-elements (\(maxTensorElements)) elements")
        }
        throw ServingError.invalidArgument("\(what) shape must be a list of non-negative integers")
    }

    private func tooMany(_ shape: [Int], _ what: String) -> ServingError {
        ServingError.invalidArgument("\(what): shape \(shape) makes the request hold more than --max-tensor-elements (\(maxTensorElements)) elements")
    }

    /// Refuses a BYTES element longer than `maxBytesElementSize`.
    public func checkBytesElement(_ length: Int, what: String) throws {
        guard length <= maxBytesElementSize else {
            throw ServingError.invalidArgument("\(what): a BYTES element of \(length) bytes is longer than --max-bytes-element-size (\(maxBytesElementSize))")
        }
    }
}
