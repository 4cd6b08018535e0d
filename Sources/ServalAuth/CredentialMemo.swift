import Synchronization

/// One connection's last verified API key and its principal. Clients keep a connection open and send the same
/// key on every request; a later request presenting the same bytes is that principal without hashing the key
/// again. The bytes are compared in constant time, and only with what this connection itself sent, so the time
/// taken tells a client nothing it did not already know. Only API keys are remembered: a JWT can expire, so it is
/// verified every time. The memo goes with the connection.
public final class CredentialMemo: Sendable {
    private let remembered = Mutex<(credential: [UInt8], principal: Principal)?>(nil)

    public init() {}

    /// The principal remembered for exactly `credential`, else nil.
    func principal(presenting credential: Substring) -> Principal? {
        remembered.withLock { remembered in
            guard let remembered else { return nil }
            var presented = credential
            let equal = presented.withUTF8 { presented in
                remembered.credential.withUnsafeBytes { APIKey.constantTimeEquals(presented, $0) }
            }
            return equal ? remembered.principal : nil
        }
    }

    func remember(_ credential: Substring, as principal: Principal) {
        remembered.withLock { $0 = (Array(credential.utf8), principal) }
    }
}
