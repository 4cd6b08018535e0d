import Foundation
import Hummingbird
import HummingbirdAuth
import NIOSSL
import ServalAuth
import ServalTLS
import ServalWire

/// Reads the `Authorization: Bearer` credential with hummingbird-auth's authenticator middleware: the principal
/// it names goes into the request context; a credential that is present but wrong is 401 at once.
/// Without a bearer, on a listener that verifies client certificates (mTLS), the certificate's subject is the
/// principal (`client_certificates:` in auth.yaml). An API key is remembered for the rest of its connection
/// (`CredentialMemo`), so a client that keeps its connection open pays for the key's hash once.
struct BearerAuthenticator: AuthenticatorMiddleware {
    typealias Context = ServalRequestContext
    let authenticator: Authenticator
    let certificates: Bool

    func authenticate(request: Request, context: Context) async throws -> Principal? {
        guard let header = request.headers[.authorization] else {
            guard certificates, let certificate = try? await context.channel.nioSSL_peerCertificate().get(),
                  let subject = ServingCertificate.subject(of: certificate) else { return nil }
            return authenticator.principal(certificateSubject: subject)
        }
        do {
            return try await authenticator.authenticate(authorization: header, memo: context.connection?.credentials)
        } catch let error as AuthenticationError {
            throw ServingError(.unauthenticated, error.message)
        }
    }
}

/// The access decision, made before a route's handler runs, against that route's rule in `EndpointAccess`: an
/// anonymous caller on anything its `anonymous:` scopes do not cover gets 401; a principal without the scope, or
/// asking for a model outside its allow-list, gets 403 naming what is missing; past its token bucket, 429 with
/// `Retry-After` (health probes are never limited: readiness must mean what it says).
struct RequestAccess: Sendable {
    let authenticator: Authenticator

    /// Decides the request (`rule` nil: no route answers it), then runs `next` with the principal in the context.
    func admit(
        _ rule: AccessRule?, _ context: ServalRequestContext, _ next: (ServalRequestContext) async throws -> Response
    ) async throws -> Response {
        let principal = context.identity ?? authenticator.anonymous
        do {
            try authenticator.authorize(principal, anonymous: context.identity == nil, rule: rule)
        } catch .unauthenticated(let message) {
            throw ServingError(.unauthenticated, message)
        } catch .forbidden(let message) {
            throw ServingError(.permissionDenied, message)
        } catch .rateLimited(let message, let wait) {
            throw ServingError(.rateLimited, message, retryAfterSeconds: max(1, Int(wait.rounded(.up))))
        }
        var context = context
        context.identity = principal
        // Logged as `principal` through the log handler's metadata provider (`serval serve` installs it), read only
        // when a line is written: setting logger metadata here re-renders it on every request.
        return try await CurrentPrincipal.$value.withValue(principal) { try await next(context) }
    }
}

/// The access decision for requests no route matched: Hummingbird applies middleware added after the routes only
/// to its not-found responder, so this runs exactly when the router found nothing. An anonymous caller gets 401
/// whether or not the path exists; a method the path does not serve is decided by the rules of the ones it does,
/// so a caller allowed one of them goes on to the 405 with `Allow` (TRACE on a health probe is a 405 for anyone),
/// and anyone else learns nothing from it.
struct UnmatchedAccessMiddleware: RouterMiddleware {
    typealias Context = ServalRequestContext
    let access: RequestAccess
    let routes: RouteTable

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let principal = context.identity ?? access.authenticator.anonymous
        let rule = routes.access(request.method, request.uri.path)
            ?? routes.accessOfOtherMethods(request.uri.path).first { principal.decide($0) == .allowed }
        return try await access.admit(rule, context) { try await next(request, $0) }
    }
}
