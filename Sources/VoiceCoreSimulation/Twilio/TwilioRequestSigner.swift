import Crypto
import Foundation

/// Signs and encodes requests the way Twilio does, from Twilio's documented algorithm, so that
/// simulated traffic does not borrow the edge's own verifier (a shared bug would then pass).
///
/// The signed string is the full URL followed by every POST parameter sorted by name (a repeated
/// name: each of its distinct values, sorted), each as name then value; `X-Twilio-Signature` is
/// the base64 HMAC-SHA1 of that string keyed by the account's auth token
/// (https://www.twilio.com/docs/usage/webhooks/webhooks-security; the vectors of Twilio's helper
/// libraries, twilio-python's `RequestValidator` among them, are in the tests).
///
/// ```swift
/// let signature = TwilioRequestSigner(authToken: "12345").signature(url: url, parameters: parameters)
/// ```
public struct TwilioRequestSigner: Sendable {
    private let key: SymmetricKey

    public init(authToken: String) {
        key = SymmetricKey(data: Array(authToken.utf8))
    }

    /// The `X-Twilio-Signature` of a POST of `parameters` to `url`.
    public func signature(url: String, parameters: [(name: String, value: String)]) -> String {
        var signed = Array(url.utf8)
        let sorted = parameters.sorted { a, b in
            a.name == b.name ? a.value.utf8.lexicographicallyPrecedes(b.value.utf8) : a.name.utf8.lexicographicallyPrecedes(b.name.utf8)
        }
        var previous: (name: String, value: String)?
        for (name, value) in sorted {
            // A value given twice under one name is signed once, as Twilio's helper libraries do.
            if let previous, previous.name == name, previous.value == value { continue }
            signed.append(contentsOf: name.utf8)
            signed.append(contentsOf: value.utf8)
            previous = (name, value)
        }
        return Data(HMAC<Insecure.SHA1>.authenticationCode(for: signed, using: key)).base64EncodedString()
    }

    /// An `application/x-www-form-urlencoded` body: `name=value` pairs joined by `&`, every byte
    /// but the unreserved characters (RFC 3986 §2.3) percent-encoded.
    public static func formBody(_ parameters: [(name: String, value: String)]) -> String {
        parameters.map { percentEncoded($0.name) + "=" + percentEncoded($0.value) }.joined(separator: "&")
    }

    private static let hexDigits = Array("0123456789ABCDEF".utf8)

    private static func percentEncoded(_ text: String) -> String {
        var output: [UInt8] = []
        output.reserveCapacity(text.utf8.count)
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
                output.append(byte)
            default:
                output += [UInt8(ascii: "%"), hexDigits[Int(byte >> 4)], hexDigits[Int(byte & 0x0F)]]
            }
        }
        return String(decoding: output, as: UTF8.self)
    }
}
