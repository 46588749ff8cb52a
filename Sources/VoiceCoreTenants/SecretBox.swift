import Crypto
import Foundation

/// Seals provider secrets at rest with AES-256-GCM under the deployment's master key.
///
/// A sealed value is `0x01 ‖ nonce (12) ‖ ciphertext ‖ tag (16)`; the leading byte is the format
/// version. Each value is bound to its tenant and field through the authenticated data, so a
/// sealed token copied into another tenant's row (or another column) does not open.
///
/// The master key is 32 random bytes, given base64-encoded in `VOICECORE_MASTER_KEY`
/// (`openssl rand -base64 32`). Losing it makes the stored provider secrets unreadable (re-enter
/// them with `voicecore tenants rotate`); API keys are hashes and do not depend on it.
public struct SecretBox: Sendable {
    private let key: SymmetricKey

    /// The environment variable holding the base64 master key.
    public static let environmentVariable = "VOICECORE_MASTER_KEY"

    public init(masterKey: [UInt8]) throws(TenantError) {
        guard masterKey.count == 32 else {
            throw TenantError.configuration("the master key must be 32 bytes (base64 of 32 random bytes, e.g. `openssl rand -base64 32`), got \(masterKey.count)")
        }
        key = SymmetricKey(data: masterKey)
    }

    public init(base64 text: String) throws(TenantError) {
        guard let bytes = Data(base64Encoded: text.trimmingCharacters(in: .whitespacesAndNewlines)) else {
            throw TenantError.configuration("\(Self.environmentVariable) is not valid base64 (generate one with `openssl rand -base64 32`)")
        }
        try self.init(masterKey: Array(bytes))
    }

    /// The box from `VOICECORE_MASTER_KEY`, or an error saying how to set it.
    public static func fromEnvironment(_ environment: [String: String] = ProcessInfo.processInfo.environment) throws(TenantError) -> SecretBox {
        guard let text = environment[environmentVariable], !text.isEmpty else {
            throw TenantError.configuration("\(environmentVariable) is not set: provider secrets are encrypted with it. Generate one with `openssl rand -base64 32` and keep it safe (tools/dev-env env prints a local one)")
        }
        return try SecretBox(base64: text)
    }

    /// A key of its own for `purpose`, derived from the master key (HKDF-SHA256, no salt, `purpose`
    /// as the info): a keyed hash made with it says nothing about the master key or other purposes.
    func derivedKey(purpose: String) -> SymmetricKey {
        HKDF<SHA256>.deriveKey(inputKeyMaterial: key, info: Array(purpose.utf8), outputByteCount: 32)
    }

    func seal(_ plaintext: [UInt8], tenant: UUID, field: String) throws -> [UInt8] {
        let box = try AES.GCM.seal(plaintext, using: key, authenticating: Array("\(tenant.uuidString.lowercased())/\(field)".utf8))
        return [1] + Array(box.nonce) + Array(box.ciphertext) + Array(box.tag)
    }

    func open(_ sealed: [UInt8], tenant: UUID, field: String) throws(TenantError) -> [UInt8] {
        guard sealed.count >= 1 + 12 + 16, sealed[0] == 1 else { throw TenantError.undecryptable(field) }
        do {
            let box = try AES.GCM.SealedBox(
                nonce: AES.GCM.Nonce(data: sealed[1..<13]), ciphertext: sealed[13..<(sealed.count - 16)], tag: sealed[(sealed.count - 16)...])
            return Array(try AES.GCM.open(box, using: key, authenticating: Array("\(tenant.uuidString.lowercased())/\(field)".utf8)))
        } catch {
            throw TenantError.undecryptable(field)
        }
    }
}
