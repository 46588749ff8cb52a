import Crypto
import Foundation

/// Telnyx's webhook signature: Ed25519 over `"{telnyx-timestamp}|{raw body}"`, verified with the
/// account's public key; the timestamp (Unix seconds) must be within the tolerance of this clock,
/// so a captured request cannot be replayed later.
public enum TelnyxSignature {
    public enum Failure: String, Error, Sendable, Hashable {
        case missing, malformed, stale, mismatch, noKey = "no_key"
    }

    /// Verifies a request; throws why it is refused.
    public static func verify(signature: String?, timestamp: String?, body: some Collection<UInt8>, publicKey: [UInt8],
                              now: Date = Date(), tolerance: Duration = .seconds(300)) throws(Failure) {
        guard let signature, let timestamp else { throw .missing }
        guard let seconds = Int64(timestamp), let signatureBytes = Data(base64Encoded: signature), signatureBytes.count == 64 else { throw .malformed }
        guard abs(Int64(now.timeIntervalSince1970) - seconds) <= tolerance.components.seconds else { throw .stale }
        guard let key = try? Curve25519.Signing.PublicKey(rawRepresentation: publicKey) else { throw .noKey }
        var message = Array(timestamp.utf8)
        message.append(UInt8(ascii: "|"))
        message.append(contentsOf: body)
        guard key.isValidSignature(signatureBytes, for: message) else { throw .mismatch }
    }

    /// Signs like Telnyx does (for tests, the demo and the load generator).
    public static func sign(body: some Collection<UInt8>, timestamp: Int64, privateKey: Curve25519.Signing.PrivateKey) throws -> String {
        var message = Array(String(timestamp).utf8)
        message.append(UInt8(ascii: "|"))
        message.append(contentsOf: body)
        return try privateKey.signature(for: message).base64EncodedString()
    }
}
