import Crypto
import Foundation

/// A tenant's API key: `vck_<key id>_<secret>`.
///
/// The key id (16 hex digits) finds the row; the secret (32 random bytes, base64url) is checked
/// against its SHA-256, the only form stored. The whole key is shown once, when it is made.
public struct APIKey: Sendable, Hashable, CustomStringConvertible {
    public let keyID: String
    let secret: String

    /// The full key, to hand to the tenant once. Never log it.
    public var plaintext: String { "vck_\(keyID)_\(secret)" }

    /// Redacted, so an API key printed by mistake shows only its id.
    public var description: String { "vck_\(keyID)_…" }

    static func generate() -> APIKey {
        var generator = SystemRandomNumberGenerator()
        let id = (0..<8).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &generator)) }.joined()
        let secretBytes = (0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) }
        return APIKey(keyID: id, secret: Self.base64url(secretBytes))
    }

    init(keyID: String, secret: String) {
        self.keyID = keyID
        self.secret = secret
    }

    /// Parses a presented key; nil when it does not have the key's shape.
    public init?(_ text: Substring) {
        let parts = text.split(separator: "_", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0] == "vck", parts[1].count == 16, parts[1].allSatisfy(\.isHexDigit),
              parts[2].count == 43, parts[2].utf8.allSatisfy({ Self.base64urlAlphabet.contains($0) })
        else { return nil }
        self.init(keyID: String(parts[1]), secret: String(parts[2]))
    }

    var secretDigest: [UInt8] { Array(SHA256.hash(data: Array(secret.utf8))) }

    private static let base64urlAlphabet = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)

    static func base64url(_ bytes: [UInt8]) -> String {
        Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }
}

/// Compares two byte strings in time that depends only on their lengths.
@inlinable
public func constantTimeEquals(_ a: some Collection<UInt8>, _ b: some Collection<UInt8>) -> Bool {
    guard a.count == b.count else { return false }
    var difference: UInt8 = 0
    for (x, y) in zip(a, b) { difference |= x ^ y }
    return difference == 0
}
