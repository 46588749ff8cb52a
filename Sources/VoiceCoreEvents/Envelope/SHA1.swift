import Crypto

/// The SHA-1 of some bytes as 40 lowercase hex digits (swift-crypto's `Insecure.SHA1`): the name
/// Redis gives a script (`EVALSHA`) and a migration's checksum. Not for security.
public enum SHA1 {
    /// The digest of `message` as 40 lowercase hex digits.
    public static func hex(_ message: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var text: [UInt8] = []
        text.reserveCapacity(40)
        for byte in Insecure.SHA1.hash(data: message) {
            text.append(digits[Int(byte >> 4)])
            text.append(digits[Int(byte & 0x0f)])
        }
        return String(decoding: text, as: UTF8.self)
    }
}
