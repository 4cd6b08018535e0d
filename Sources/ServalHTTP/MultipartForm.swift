import Foundation
import Hummingbird
import MultipartKit
import NIOCore
import ServalServing
import ServalWire

/// A parsed `multipart/form-data` body (RFC 7578), parts by name, read with vapor/multipart-kit's parser.
struct MultipartForm {
    private(set) var parts: [String: [UInt8]] = [:]

    init(contentType: String?, body: ByteBuffer) throws {
        guard let contentType, contentType.lowercased().hasPrefix("multipart/form-data") else {
            throw ServingError.invalidArgument("expected Content-Type multipart/form-data with a part 'model' (the ONNX file) and an optional part 'metadata' (JSON)")
        }
        guard let boundary = Self.parameter("boundary", in: contentType), !boundary.isEmpty else {
            throw ServingError.invalidArgument("Content-Type multipart/form-data needs a boundary parameter")
        }
        final class Collector {
            var parts: [String: [UInt8]] = [:]
            var headers: [(String, String)] = []
            var body: [UInt8] = []
        }
        let collector = Collector()
        let parser = MultipartParser(boundary: boundary)
        parser.onHeader = { name, value in collector.headers.append((name, value)) }
        parser.onBody = { buffer in collector.body.append(contentsOf: buffer.readableBytesView) }
        parser.onPartComplete = {
            let disposition = collector.headers.first { $0.0.lowercased() == "content-disposition" }?.1 ?? ""
            if let name = Self.parameter("name", in: disposition) { collector.parts[name] = collector.body }
            collector.headers = []
            collector.body = []
        }
        do { try parser.execute(body) } catch {
            throw ServingError.invalidArgument("multipart body is malformed: \(error)")
        }
        parts = collector.parts
    }

    subscript(_ name: String) -> [UInt8]? { parts[name] }

    /// A `key=value` or `key="value"` parameter of a header value.
    static func parameter(_ key: String, in header: String) -> String? {
        for piece in header.split(separator: ";").dropFirst() {
            let pair = piece.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard pair.count == 2, pair[0].lowercased() == key else { continue }
            var value = pair[1]
            if value.hasPrefix("\""), value.hasSuffix("\""), value.count >= 2 { value = String(value.dropFirst().dropLast()) }
            return value
        }
        return nil
    }
}
