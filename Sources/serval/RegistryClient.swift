import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// A small HTTP client for the registry routes of a running server (`serval models ...` is a client of the REST
/// API, not a second way to write state). Errors are the server's `{"error": ...}` text, one line.
struct RegistryClient {
    let base: URL
    let actor: String?

    struct Failure: Error, CustomStringConvertible {
        let description: String
        /// The HTTP status of a refused request (0 when the server was not reached).
        var status = 0
    }

    init(url: String, actor: String?) throws {
        guard let base = URL(string: url), base.scheme == "http" || base.scheme == "https", base.host != nil else {
            throw Failure(description: "--url must be an http(s) URL like http://127.0.0.1:8000, got '\(url)'")
        }
        self.base = base
        self.actor = actor
    }

    /// Sends a request and returns the JSON body of a 2xx answer.
    func send(_ method: String, _ path: String, json: Any? = nil, body: Data? = nil, contentType: String? = nil) async throws -> Any {
        let data = try await sendRaw(method, path, json: json.map { try JSONSerialization.data(withJSONObject: $0) }, body: body, contentType: contentType)
        return (try? JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed])) ?? [:]
    }

    /// Sends a request and returns the bytes of a 2xx answer; `json` is a body already encoded as JSON.
    func sendRaw(_ method: String, _ path: String, json: Data? = nil, body: Data? = nil, contentType: String? = nil) async throws -> Data {
        let (route, query) = path.firstIndex(of: "?").map { (String(path[..<$0]), String(path[path.index(after: $0)...])) } ?? (path, nil)
        var components = URLComponents(url: base.appendingPathComponent(route), resolvingAgainstBaseURL: false)
        components?.percentEncodedQuery = query
        guard let url = components?.url else { throw Failure(description: "cannot form a URL for \(path)") }
        var request = URLRequest(url: url)
        request.httpMethod = method
        request.timeoutInterval = 120
        if let json {
            request.httpBody = json
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        } else if let body {
            request.httpBody = body
            request.setValue(contentType, forHTTPHeaderField: "Content-Type")
        }
        if let actor { request.setValue(actor, forHTTPHeaderField: "Serval-Actor") }
        let (data, response): (Data, URLResponse)
        do {
            (data, response) = try await URLSession.shared.data(for: request)
        } catch {
            throw Failure(description: "cannot reach \(base.absoluteString): \(error.localizedDescription)")
        }
        let status = (response as? HTTPURLResponse)?.statusCode ?? 0
        guard (200..<300).contains(status) else {
            let parsed = try? JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed])
            let message = (parsed as? [String: Any])?["error"] as? String ?? String(decoding: data, as: UTF8.self)
            throw Failure(description: "\(method) \(path): \(status): \(message)", status: status)
        }
        return data
    }

    /// A multipart/form-data body with the given parts (name, filename, bytes).
    static func multipart(_ parts: [(name: String, filename: String?, bytes: Data)]) -> (body: Data, contentType: String) {
        let boundary = "serval-\(UUID().uuidString)"
        var body = Data()
        for part in parts {
            var header = "--\(boundary)\r\nContent-Disposition: form-data; name=\"\(part.name)\""
            if let filename = part.filename { header += "; filename=\"\(filename)\"" }
            header += "\r\nContent-Type: application/octet-stream\r\n\r\n"
            body.append(Data(header.utf8))
            body.append(part.bytes)
            body.append(Data("\r\n".utf8))
        }
        body.append(Data("--\(boundary)--\r\n".utf8))
        return (body, "multipart/form-data; boundary=\(boundary)")
    }
}

/// Fixed-width text tables for people; `--json` prints the server's JSON instead.
enum TextTable {
    static func render(_ header: [String], _ rows: [[String]]) -> String {
        let widths = header.indices.map { column in ([header] + rows).map { $0[column].count }.max() ?? 0 }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { $0.element.padding(toLength: widths[$0.offset], withPad: " ", startingAt: 0) }.joined(separator: "  ")
                .trimmingCharacters(in: .whitespaces)
        }
        return ([line(header)] + rows.map(line)).joined(separator: "\n")
    }

    static func json(_ value: Any) -> String {
        guard let data = try? JSONSerialization.data(withJSONObject: value, options: [.prettyPrinted, .sortedKeys, .fragmentsAllowed]) else { return "\(value)" }
        return String(decoding: data, as: UTF8.self)
    }
}
