import Foundation
import NIOCertificateReloading
import NIOSSL
import Synchronization
import X509

/// `--tls-cert`, `--tls-key` and `--tls-client-ca`: PEM files for the HTTP and gRPC listeners.
public struct TLSSettings: Sendable, Equatable {
    /// The server's certificate chain (leaf first).
    public var certificate: URL
    /// Its private key.
    public var key: URL
    /// With it, every client must present a certificate signed by one of these CAs (mTLS).
    public var clientCA: URL?

    public init(certificate: URL, key: URL, clientCA: URL? = nil) {
        self.certificate = certificate
        self.key = key
        self.clientCA = clientCA
    }
}

/// Why the TLS files cannot be used; names the file and the flag.
public struct TLSSetupError: Error, Sendable, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// The certificate chain and key both listeners offer, replaceable while serving: `reload()` reads the files
/// again, checks that the key belongs to the certificate, and swaps them in. Every handshake asks for the current
/// pair, so new connections get the new certificate and open ones keep theirs. A reload that fails changes nothing.
public final class ServingCertificate: CertificateReloader, Sendable {
    public let settings: TLSSettings
    private let current: Mutex<NIOSSLContextConfigurationOverride>
    private let reloads = Atomic(0)

    public init(_ settings: TLSSettings) throws {
        self.settings = settings
        current = Mutex(try Self.read(settings))
    }

    public var sslContextConfigurationOverride: NIOSSLContextConfigurationOverride { current.withLock { $0 } }

    /// How many times the pair was replaced (for logs and tests).
    public var generation: Int { reloads.load(ordering: .relaxed) }

    /// Reads the files again; throws (and keeps serving the old pair) when they are unusable.
    public func reload() throws {
        let pair = try Self.read(settings)
        current.withLock { $0 = pair }
        reloads.add(1, ordering: .relaxed)
    }

    /// The server side of the handshake: TLS 1.2 or later, this pair (reloadable), and with `clientCA` a client
    /// certificate required and verified against it (the client's host name is not checked: clients have none).
    public func serverConfiguration() throws -> TLSConfiguration {
        let pair = sslContextConfigurationOverride
        var configuration = TLSConfiguration.makeServerConfiguration(certificateChain: pair.certificateChain ?? [], privateKey: pair.privateKey!)
        configuration.minimumTLSVersion = .tlsv12
        if let clientCA = settings.clientCA {
            configuration.certificateVerification = .noHostnameVerification
            configuration.trustRoots = .certificates(try Self.certificates(clientCA, flag: "--tls-client-ca"))
        }
        configuration.setCertificateReloader(self)
        return configuration
    }

    /// The principal name of a verified client certificate: its subject as RFC 4514 text (`CN=ops,O=Example`).
    public static func subject(of certificate: NIOSSLCertificate) -> String? {
        guard let der = try? certificate.toDERBytes(), let parsed = try? Certificate(derEncoded: der) else { return nil }
        return subject(of: parsed)
    }

    public static func subject(of certificate: Certificate) -> String { certificate.subject.description }

    private static func read(_ settings: TLSSettings) throws -> NIOSSLContextConfigurationOverride {
        let chain = try certificates(settings.certificate, flag: "--tls-cert")
        let key: NIOSSLPrivateKey
        do { key = try NIOSSLPrivateKey(file: settings.key.path, format: .pem) } catch {
            throw TLSSetupError("--tls-key \(settings.key.path): not a readable PEM private key (\(error))")
        }
        // The key must be the certificate's: otherwise every handshake would fail after a bad reload.
        let leaf = try Certificate(derEncoded: try chain[0].toDERBytes())
        let privateKey: Certificate.PrivateKey
        do { privateKey = try Certificate.PrivateKey(pemEncoded: try String(contentsOf: settings.key, encoding: .utf8)) } catch {
            throw TLSSetupError("--tls-key \(settings.key.path): not a supported private key (RSA, P-256, P-384, P-521 or Ed25519): \(error)")
        }
        guard privateKey.publicKey == leaf.publicKey else {
            throw TLSSetupError("--tls-key \(settings.key.path) is not the key of --tls-cert \(settings.certificate.path)")
        }
        var pair = NIOSSLContextConfigurationOverride()
        pair.certificateChain = chain.map { .certificate($0) }
        pair.privateKey = .privateKey(key)
        return pair
    }

    private static func certificates(_ url: URL, flag: String) throws -> [NIOSSLCertificate] {
        let chain: [NIOSSLCertificate]
        do { chain = try NIOSSLCertificate.fromPEMFile(url.path) } catch {
            throw TLSSetupError("\(flag) \(url.path): not a readable PEM certificate file (\(error))")
        }
        guard !chain.isEmpty else { throw TLSSetupError("\(flag) \(url.path) holds no certificate") }
        return chain
    }
}
