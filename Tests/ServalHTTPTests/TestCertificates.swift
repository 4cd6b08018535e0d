import Crypto
import Foundation
import SwiftASN1
import X509

/// A throwaway certificate authority made at test time, issuing server and client certificates (P-256), written
/// as PEM files for `--tls-cert`, `--tls-key` and `--tls-client-ca`.
struct TestCertificateAuthority {
    let key = P256.Signing.PrivateKey()
    let name: DistinguishedName
    let certificate: Certificate
    let folder: URL

    init(commonName: String = "Serval Test CA") throws {
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("serval-tls-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        name = try DistinguishedName { CommonName(commonName) }
        let now = Date()
        certificate = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(key.publicKey), notValidBefore: now - 3600, notValidAfter: now + 86400,
            issuer: name, subject: name, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: nil))
                Critical(KeyUsage(digitalSignature: true, keyCertSign: true, cRLSign: true))
            },
            issuerPrivateKey: .init(key))
    }

    /// The CA certificate as a PEM file (the client's trust root, or the server's `--tls-client-ca`).
    func caFile() throws -> URL { try write(Self.pem(certificate), "ca.pem") }

    /// A certificate for `commonName`, signed by this CA, and its key: (certificate file, key file).
    /// Server certificates name `localhost`; client certificates carry `O=Serval Tests`.
    func issue(_ commonName: String, server: Bool, file: String) throws -> (certificate: URL, key: URL) {
        let leafKey = P256.Signing.PrivateKey()
        let subject = try server ? DistinguishedName { CommonName(commonName) } : DistinguishedName { OrganizationName("Serval Tests"); CommonName(commonName) }
        let now = Date()
        let leaf = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(leafKey.publicKey), notValidBefore: now - 3600, notValidAfter: now + 86400,
            issuer: name, subject: subject, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true))
                try ExtendedKeyUsage([server ? .serverAuth : .clientAuth])
                if server { SubjectAlternativeNames([.dnsName("localhost")]) }
            },
            issuerPrivateKey: .init(key))
        return (try write(Self.pem(leaf), "\(file).pem"), try write(leafKey.pemRepresentation, "\(file)-key.pem"))
    }

    static func pem(_ certificate: Certificate) throws -> String {
        var serializer = DER.Serializer()
        try serializer.serialize(certificate)
        return PEMDocument(type: "CERTIFICATE", derBytes: serializer.serializedBytes).pemString
    }

    private func write(_ text: String, _ name: String) throws -> URL {
        let url = folder.appendingPathComponent(name)
        try text.write(to: url, atomically: true, encoding: .utf8)
        return url
    }
}
