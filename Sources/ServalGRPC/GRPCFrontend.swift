import GRPCCore
import GRPCNIOTransportHTTP2
import GRPCProtobuf
import ServalAuth
import ServalTLS
import ServalServing
import ServalWire
import ServiceLifecycle
import SwiftProtobuf

/// Settings of the gRPC frontend (`serval serve --grpc-*` flags).
public struct GRPCConfiguration: Sendable {
    public var host: String
    public var port: Int
    /// Largest request or response message in bytes (`--grpc-max-message-size`, default 64 MB).
    public var maxMessageSize: Int
    /// Authentication, scopes and rate limits (`--auth-config`); nil: every RPC is open.
    public var authenticator: Authenticator?
    /// What one request may declare (`--max-tensor-elements`, `--max-bytes-element-size`).
    public var limits = WireLimits.standard
    /// TLS (`--tls-cert`, `--tls-key`, `--tls-client-ca`), with the certificate the HTTP listener uses; nil: plaintext.
    public var tls: ServingCertificate?

    public init(host: String = "127.0.0.1", port: Int = 8001, maxMessageSize: Int = 64 * 1024 * 1024) {
        self.host = host
        self.port = port
        self.maxMessageSize = maxMessageSize
    }
}

/// The gRPC server (`inference.GRPCInferenceService` and `grpc.health.v1.Health`) as a lifecycle service:
/// it runs in the same service group as the HTTP server and drains in-flight RPCs on graceful shutdown.
public struct GRPCFrontend: Service {
    let server: GRPCServer<HTTP2ServerTransport.Posix>
    let onListening: @Sendable (Int) async -> Void

    public init(
        lifecycle: ModelLifecycle, configuration: GRPCConfiguration, state: ServerState,
        onListening: @escaping @Sendable (Int) async -> Void = { _ in }
    ) {
        // The transport's own limit only guards memory (it resets the stream, with no useful status); our
        // deserializer enforces the configured limit first, with an error that names the flag.
        let limit = min(configuration.maxMessageSize, Int(UInt32.max))  // gRPC frames carry a 32-bit length
        let transportLimit = min(Int(UInt32.max), max(limit * 2, limit + 1 << 20))
        let transport = HTTP2ServerTransport.Posix(
            address: .ipv4(host: configuration.host, port: configuration.port),
            transportSecurity: Self.security(configuration.tls),
            config: .defaults { $0.rpc.maxRequestPayloadSize = transportLimit })
        let inference = SizeLimitedService(
            service: InferenceService(lifecycle: lifecycle, state: state, limits: configuration.limits), limit: limit)
        let health = HealthService(router: lifecycle.router, state: state)
        let interceptors: [any ServerInterceptor] = configuration.authenticator.map { [AuthInterceptor(authenticator: $0)] } ?? []
        self.server = GRPCServer(transport: transport, services: [inference, health], interceptors: interceptors)
        self.onListening = onListening
    }

    /// TLS 1.2+ (the transport's minimum) with the reloadable certificate; with a client CA, client certificates
    /// are required and verified.
    static func security(_ certificate: ServingCertificate?) -> HTTP2ServerTransport.Posix.TransportSecurity {
        guard let certificate else { return .plaintext }
        let settings = certificate.settings
        var tls = HTTP2ServerTransport.Posix.TransportSecurity.TLS.defaults(
            certificateChain: [.file(path: settings.certificate.path, format: .pem)], privateKey: .file(path: settings.key.path, format: .pem))
        if let clientCA = settings.clientCA {
            tls.clientCertificateVerification = .noHostnameVerification
            tls.trustRoots = .certificates([.file(path: clientCA.path, format: .pem)])
        }
        tls.certificateReloader = certificate
        return .tls(tls)
    }

    public func run() async throws {
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask {
                try await withGracefulShutdownHandler {
                    try await server.serve()
                } onGracefulShutdown: {
                    server.beginGracefulShutdown()
                }
            }
            // Resolves once the listener is bound (or throws if binding failed, which `serve` reports too).
            if let address = try? await server.listeningAddress, let port = address.ipv4?.port ?? address.ipv6?.port {
                await onListening(port)
            }
        }
    }
}

/// Re-registers the inference RPCs that carry tensors with (de)serializers that enforce
/// `--grpc-max-message-size` and answer RESOURCE_EXHAUSTED naming the flag.
struct SizeLimitedService: RegistrableRPCService {
    let service: InferenceService
    let limit: Int

    func registerMethods<Transport: ServerTransport>(with router: inout RPCRouter<Transport>) {
        service.registerMethods(with: &router)
        let checkedIn = LimitedDeserializer<Inference_ModelInferRequest>(limit: limit)
        router.registerHandler(
            forMethod: Inference_GRPCInferenceService.Method.ModelInfer.descriptor, deserializer: checkedIn,
            serializer: LimitedSerializer<Inference_ModelInferResponse>(limit: limit)
        ) { request, context in
            try await service.modelInfer(request: request, context: context)
        }
        router.registerHandler(
            forMethod: Inference_GRPCInferenceService.Method.ModelStreamInfer.descriptor, deserializer: checkedIn,
            serializer: LimitedSerializer<Inference_ModelStreamInferResponse>(limit: limit)
        ) { request, context in
            try await service.modelStreamInfer(request: request, context: context)
        }
    }
}

private func tooLarge(_ what: String, _ size: Int, _ limit: Int) -> RPCError {
    RPCError(code: .resourceExhausted, message: "\(what) of \(size) bytes is larger than --grpc-max-message-size (\(limit) bytes)")
}

struct LimitedDeserializer<Message: SwiftProtobuf.Message>: MessageDeserializer {
    let limit: Int
    private let inner = ProtobufDeserializer<Message>()

    init(limit: Int) { self.limit = limit }

    func deserialize<Bytes: GRPCContiguousBytes>(_ serializedMessageBytes: Bytes) throws -> Message {
        guard serializedMessageBytes.count <= limit else { throw tooLarge("request message", serializedMessageBytes.count, limit) }
        return try inner.deserialize(serializedMessageBytes)
    }
}

struct LimitedSerializer<Message: SwiftProtobuf.Message>: MessageSerializer {
    let limit: Int
    private let inner = ProtobufSerializer<Message>()

    init(limit: Int) { self.limit = limit }

    func serialize<Bytes: GRPCContiguousBytes>(_ message: Message) throws -> Bytes {
        let bytes: Bytes = try inner.serialize(message)
        guard bytes.count <= limit else { throw tooLarge("response message", bytes.count, limit) }
        return bytes
    }
}
