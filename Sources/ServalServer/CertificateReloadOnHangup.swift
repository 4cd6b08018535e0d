import Logging
import ServalTLS
import ServiceLifecycle
import UnixSignals

/// Reloads the TLS certificate and key on SIGHUP, as nginx and most servers do: new connections get the new pair,
/// open ones are not dropped. A pair that cannot be used (unreadable, or a key that is not the certificate's) is
/// logged and the old one kept.
struct CertificateReloadOnHangup: Service {
    let certificate: ServingCertificate
    let logger: Logger

    func run() async throws {
        let hangups = await UnixSignalsSequence(trapping: .sighup)
        for await _ in hangups.cancelOnGracefulShutdown() {
            do {
                try certificate.reload()
                logger.info("TLS certificate reloaded", metadata: ["certificate": "\(certificate.settings.certificate.path)", "generation": "\(certificate.generation)"])
            } catch {
                logger.error("TLS certificate reload failed; still serving the previous one", metadata: ["error": "\(error)"])
            }
        }
    }
}
