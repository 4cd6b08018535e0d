import Foundation
import Hummingbird
import NIOCore
import ServalRegistry
import ServalServing
import ServalWire

/// Control-plane request and response bodies (registry, labels, history). Tensors keep their hand-written
/// streaming codec; everything else is `Codable`, with snake_case names as the OpenAPI document gives them.
enum ControlPlane {
    struct LabelMoveRequest: Decodable {
        var version: String
        var reason: String?

        enum CodingKeys: String, CodingKey { case version, reason }

        init(from decoder: Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            // Versions are strings in v2; a bare number is accepted too.
            if let number = try? container.decode(Int.self, forKey: .version) {
                version = String(number)
            } else {
                version = try container.decode(String.self, forKey: .version)
            }
            reason = try container.decodeIfPresent(String.self, forKey: .reason)
        }
    }

    struct ReasonRequest: Decodable {
        var reason: String?
    }

    struct LabelsResponse: Encodable {
        var name: String
        var labels: [String: String]
    }

    struct LabelMoveResponse: Encodable {
        var name: String
        var label: String
        var version: String?
        var previous: String?
    }

    struct RegisterResponse: Encodable {
        var name: String
        var version: String
        var state: String
        var sha256: String
    }

    struct VersionsResponse: Encodable {
        var name: String
        var versions: [Version]
    }

    struct Version: Encodable {
        var version: String
        var state: String
        var reason: String?
        var labels: [String]
        var createdAt: String?
        var sha256: String?
        var size: Int?
        var registeredBy: String?
        var metadata: VersionMetadata?

        enum CodingKeys: String, CodingKey {
            case version, state, reason, labels, createdAt = "created_at", sha256, size, registeredBy = "registered_by", metadata
        }
    }

    struct HistoryResponse: Encodable {
        var name: String
        var entries: [Entry]
    }

    struct Entry: Encodable {
        var time: String
        var actor: String
        var action: String
        var details: JSONDocument
        var reason: String?
    }

    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }()

    static func response<T: Encodable>(_ body: T, status: HTTPResponse.Status = .ok) throws -> Response {
        Response.json(String(decoding: try encoder.encode(body), as: UTF8.self), status: status)
    }

    /// Decodes a JSON body; errors name the field and what was expected.
    static func decode<T: Decodable>(_ type: T.Type, from buffer: ByteBuffer, what: String = "request body") throws -> T {
        let data = Data(buffer.readableBytesView)
        do {
            return try JSONDecoder().decode(type, from: data.isEmpty ? Data("{}".utf8) : data)
        } catch let error as DecodingError {
            throw ServingError.invalidArgument("\(what): \(error.fieldDescription)")
        }
    }

}
