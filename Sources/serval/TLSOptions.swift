import ArgumentParser
import Foundation
import ServalServer
import ServalTLS

/// `serval serve` flags for transport security and the admin listener.
struct TLSOptions: ParsableArguments {
    @Option(name: .customLong("tls-cert"), help: "PEM certificate chain (leaf first): HTTP, the admin port and gRPC serve TLS 1.2+ only. Reloaded on SIGHUP.")
    var tlsCert: String?

    @Option(name: .customLong("tls-key"), help: "PEM private key of --tls-cert.")
    var tlsKey: String?

    @Option(name: .customLong("tls-client-ca"), help: "PEM CA certificates: clients must present a certificate they signed (mTLS); its subject is the principal when no bearer is given.")
    var tlsClientCA: String?

    @Option(name: .customLong("admin-port"), help: "Serve the admin and read APIs and /metrics on this port only; the --http-port then serves inference, health, jobs and feedback.")
    var adminPort: Int?

    @Option(name: .customLong("admin-host"), help: "Address of the --admin-port listener (keep it on loopback or a cluster-internal interface).")
    var adminHost = "127.0.0.1"

    func validate(httpPort: Int) throws {
        if (tlsCert == nil) != (tlsKey == nil) { throw ValidationError("--tls-cert and --tls-key go together") }
        if tlsClientCA != nil, tlsCert == nil { throw ValidationError("--tls-client-ca needs --tls-cert and --tls-key (mTLS is TLS first)") }
        for (flag, path) in [("--tls-cert", tlsCert), ("--tls-key", tlsKey), ("--tls-client-ca", tlsClientCA)] {
            if let path, !FileManager.default.isReadableFile(atPath: path) { throw ValidationError("\(flag) \(path): no such readable file") }
        }
        if let adminPort {
            guard adminPort >= 0, adminPort <= 65535 else { throw ValidationError("--admin-port must be 0-65535") }
            guard adminPort == 0 || adminPort != httpPort else { throw ValidationError("--admin-port must differ from --http-port") }
        }
    }

    func apply(to options: inout ServerOptions) {
        if let tlsCert, let tlsKey {
            options.tls = TLSSettings(certificate: URL(fileURLWithPath: tlsCert), key: URL(fileURLWithPath: tlsKey), clientCA: tlsClientCA.map { URL(fileURLWithPath: $0) })
        }
        options.adminPort = adminPort
        options.adminHost = adminHost
    }
}
