import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import ServalAuth
import ServalServer
import ServalTLS
import Testing

/// TLS on the HTTP listener with certificates made at test time: TLS 1.2+ only, a certificate reload that new
/// connections see and open ones survive, a reload that fails keeping the old pair, and mTLS (a client without
/// a certificate refused; a client certificate's subject as the principal).
struct TLSTests {
    static let ready = "/v2/health/ready"

    @Test func servesTLSAndReloadsTheCertificateWithoutDroppingConnections() async throws {
        let ca = try TestCertificateAuthority()
        let first = try ca.issue("serval-a", server: true, file: "server")
        let trust = try ca.caFile()
        try await TestServer.with(configure: { $0.tls = TLSSettings(certificate: first.certificate, key: first.key) }) { server, _ in
            try await TLSClient.connect(port: server.port, trust: trust) { open async throws in
                #expect(try await open.request("GET", Self.ready)?.status == 200)
                #expect(try await open.peerSubject() == "CN=serval-a")
                // New files in place, then the reload SIGHUP triggers.
                let second = try ca.issue("serval-b", server: true, file: "server-b")
                try FileManager.default.removeItem(at: first.certificate)
                try FileManager.default.removeItem(at: first.key)
                try FileManager.default.moveItem(at: second.certificate, to: first.certificate)
                try FileManager.default.moveItem(at: second.key, to: first.key)
                try server.server.reloadCertificate()
                // The open connection keeps working, on the certificate it negotiated.
                #expect(try await open.request("GET", Self.ready)?.status == 200)
                #expect(try await open.peerSubject() == "CN=serval-a")
            }
            try await TLSClient.connect(port: server.port, trust: trust) { fresh async throws in
                #expect(try await fresh.request("GET", "/v2/models/iris")?.status == 200)
                #expect(try await fresh.peerSubject() == "CN=serval-b")
            }
            // A key that is not the certificate's: the reload is refused and the server keeps serving serval-b.
            let other = try ca.issue("serval-c", server: true, file: "server-c")
            try FileManager.default.removeItem(at: first.key)
            try FileManager.default.copyItem(at: other.key, to: first.key)
            #expect(throws: TLSSetupError.self) { try server.server.reloadCertificate() }
            try await TLSClient.connect(port: server.port, trust: trust) { after async throws in
                #expect(try await after.request("GET", Self.ready)?.status == 200)
                #expect(try await after.peerSubject() == "CN=serval-b")
            }
        }
    }

    @Test func tlsBelow1Point2AndPlaintextAreRefused() async throws {
        let ca = try TestCertificateAuthority()
        let pair = try ca.issue("serval", server: true, file: "server")
        let trust = try ca.caFile()
        try await TestServer.with(configure: { $0.tls = TLSSettings(certificate: pair.certificate, key: pair.key) }) { server, _ in
            try await TLSClient.connect(port: server.port, trust: trust, maximumVersion: .tlsv11) { old async throws in
                #expect(await old.refused(Self.ready))
            }
            // Plain HTTP on the TLS port gets no HTTP answer.
            let plain = try? await server.get(Self.ready)
            #expect(plain == nil || plain?.status == 0)
            try await TLSClient.connect(port: server.port, trust: trust) { modern async throws in
                #expect(try await modern.request("GET", Self.ready)?.status == 200)
            }
        }
    }

    @Test func mutualTLSRefusesClientsWithoutACertificateAndNamesThePrincipal() async throws {
        let ca = try TestCertificateAuthority()
        let pair = try ca.issue("serval", server: true, file: "server")
        let trust = try ca.caFile()
        let reader = try ca.issue("dashboard", server: false, file: "reader")
        let stranger = try ca.issue("stranger", server: false, file: "stranger")
        let outsider = try TestCertificateAuthority(commonName: "Other CA").issue("dashboard", server: false, file: "outsider")
        let auth = try AuthConfig.parse("""
            client_certificates:
              - {subject: "CN=dashboard,O=Serval Tests", scopes: [read]}
            """, directory: ca.folder)
        let authenticator = try await Authenticator.make(config: auth, clock: { 0 })
        try await TestServer.with(configure: {
            $0.tls = TLSSettings(certificate: pair.certificate, key: pair.key, clientCA: trust)
            $0.http.authenticator = authenticator
        }) { server, _ in
            try await TLSClient.connect(port: server.port, trust: trust) { anonymous async throws in
                #expect(await anonymous.refused(Self.ready))
            }
            try await TLSClient.connect(port: server.port, trust: trust, identity: outsider) { forged async throws in
                #expect(await forged.refused(Self.ready))
            }
            try await TLSClient.connect(port: server.port, trust: trust, identity: reader) { client async throws in
                #expect(try await client.request("GET", "/v2/models/iris")?.status == 200)
                let unload = try await client.request("POST", "/v2/repository/models/iris/unload")
                #expect(unload?.status == 403)
                #expect(unload?.body.contains("CN=dashboard,O=Serval Tests lacks the 'admin' scope") == true, "\(unload?.body ?? "")")
            }
            try await TLSClient.connect(port: server.port, trust: trust, identity: stranger) { client async throws in
                // Verified but not listed: named by its subject, with the anonymous scopes only.
                #expect(try await client.request("GET", Self.ready)?.status == 200)
                let read = try await client.request("GET", "/v2/models/iris")
                #expect(read?.status == 403)
                #expect(read?.body.contains("CN=stranger,O=Serval Tests") == true)
            }
        }
    }
}

/// An HTTP/1.1 client over swift-nio-ssl, one connection per `connect`, so a test can hold a connection open
/// across a certificate reload and ask which certificate it negotiated.
final class TLSClient {
    struct Reply { let status: Int; let body: String }

    private var inbound: NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator
    private let outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>
    private let channel: any Channel
    private var buffer = ByteBuffer()

    private init(_ inbound: NIOAsyncChannelInboundStream<ByteBuffer>, _ outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>, _ channel: any Channel) {
        self.inbound = inbound.makeAsyncIterator()
        self.outbound = outbound
        self.channel = channel
    }

    static func connect(
        port: Int, trust: URL, identity: (certificate: URL, key: URL)? = nil, maximumVersion: TLSVersion? = nil,
        _ body: (TLSClient) async throws -> Void
    ) async throws {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.trustRoots = .file(trust.path)
        if let maximumVersion {
            configuration.minimumTLSVersion = .tlsv1
            configuration.maximumTLSVersion = maximumVersion
        }
        if let identity {
            configuration.certificateChain = try NIOSSLCertificate.fromPEMFile(identity.certificate.path).map { .certificate($0) }
            configuration.privateKey = .privateKey(try NIOSSLPrivateKey(file: identity.key.path, format: .pem))
        }
        let context = try NIOSSLContext(configuration: configuration)
        let connection = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton).connect(host: "127.0.0.1", port: port) { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: context, serverHostname: "localhost"))
                return try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
            }
        }
        try await connection.executeThenClose { inbound, outbound in
            try await body(TLSClient(inbound, outbound, connection.channel))
        }
    }

    /// One request; nil when the connection ended before an answer.
    func request(_ method: String, _ path: String) async throws -> Reply? {
        try await outbound.write(ByteBuffer(string: "\(method) \(path) HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n"))
        while true {
            if let reply = parse() { return reply }
            guard var chunk = try await inbound.next() else { return nil }
            buffer.writeBuffer(&chunk)
        }
    }

    /// Whether the server refused to talk: the handshake or the first request failed, or no answer came.
    func refused(_ path: String) async -> Bool {
        do { return try await request("GET", path) == nil } catch { return true }
    }

    /// The subject of the certificate the server presented on this connection.
    func peerSubject() async throws -> String? {
        try await channel.nioSSL_peerCertificate().get().flatMap(ServingCertificate.subject(of:))
    }

    private func parse() -> Reply? {
        let text = String(buffer: buffer)
        guard let end = text.range(of: "\r\n\r\n") else { return nil }
        let head = text[..<end.lowerBound]
        let status = Int(head.split(separator: " ").dropFirst().first ?? "") ?? 0
        let length = head.split(separator: "\r\n").compactMap { line -> Int? in
            let parts = line.split(separator: ":", maxSplits: 1)
            return parts.count == 2 && parts[0].lowercased() == "content-length" ? Int(parts[1].trimmingCharacters(in: .whitespaces)) : nil
        }.first ?? 0
        let headBytes = text.utf8.distance(from: text.utf8.startIndex, to: end.upperBound)
        guard buffer.readableBytes >= headBytes + length else { return nil }
        buffer.moveReaderIndex(forwardBy: headBytes)
        let body = buffer.readString(length: length) ?? ""
        buffer.discardReadBytes()
        return Reply(status: status, body: body)
    }
}

/// `--admin-port`: the public listener serves inference only; the admin listener serves every route.
struct AdminPortTests {
    @Test func thePublicPortServesInferenceAndTheAdminPortEverything() async throws {
        try await TestServer.with(configure: { $0.adminPort = 0 }) { server, _ in
            let admin = try #require(server.adminURL)
            let row = #"{"inputs":[{"name":"X","shape":[1,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}]}"#
            #expect(try await server.post("/v2/models/iris/infer", row).status == 200)
            #expect(try await server.post("/v1/models/iris:predict", #"{"instances":[[5.1,3.5,1.4,0.2]]}"#).status == 200)
            #expect(try await server.get("/v2/health/ready").status == 200)
            #expect(try await server.get("/openapi.json").status == 200)
            for path in ["/v2/models/iris", "/v2/models/iris/history", "/metrics", "/v2", "/monitoring"] {
                #expect(try await server.get(path).status == 404, "\(path) on the public port")
            }
            #expect(try await server.post("/v2/repository/models/iris/unload", "").status == 404)
            let control = TestServer(baseURL: admin, server: server.server, repository: server.repository, dataDirectory: server.dataDirectory)
            for path in ["/v2/models/iris", "/v2/models/iris/history", "/metrics", "/v2", "/v2/health/ready"] {
                #expect(try await control.get(path).status == 200, "\(path) on the admin port")
            }
            #expect(try await control.post("/v2/models/iris/infer", row).status == 200)
            #expect(server.server.httpRoutes.contains("POST /v2/repository/models/:model/unload"))
        }
    }
}
