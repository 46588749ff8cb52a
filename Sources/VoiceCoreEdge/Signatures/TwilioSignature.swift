import Crypto
import Foundation
import VoiceCoreTenants

/// Twilio's webhook signature (`X-Twilio-Signature`).
///
/// The signed string is the full URL Twilio requested followed by every POST parameter sorted by
/// name, each as name then value (a repeated name: each of its values, sorted). The signature is
/// the base64 HMAC of that string: SHA-1 keyed by the account's auth token by default; when a
/// Twilio Webhook Setting applies, the header `X-Twilio-Webhooks-Signature-Settings:
/// key=…,algorithm=HMAC_SHA256` names the setting's algorithm and the key is its shared key. JSON
/// bodies are not part of the string: the URL carries `bodySHA256`, the hex SHA-256 of the body.
///
/// Behind a proxy the URL Twilio used is not the one this process sees; the edge rebuilds it from
/// its configured public base URL. Twilio may or may not include the default port, so both forms
/// are tried.
public enum TwilioSignature {
    public enum Algorithm: String, Sendable, Hashable {
        case hmacSHA1 = "HMAC_SHA1"
        case hmacSHA256 = "HMAC_SHA256"
    }

    /// Why a request's signature was refused (the metric label; never told to the caller).
    public enum Failure: String, Error, Sendable, Hashable {
        case missing, mismatch, unknownAlgorithm = "unknown_algorithm", noKey = "no_key", bodyHash = "body_hash"
    }

    /// The algorithm the settings header asks for, nil when the header is absent (auth token,
    /// HMAC-SHA1).
    public static func algorithm(settingsHeader: String?) throws(Failure) -> Algorithm? {
        guard let settingsHeader else { return nil }
        for part in settingsHeader.split(separator: ",") {
            let pair = part.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            if pair.count == 2, pair[0].lowercased() == "algorithm" {
                guard let algorithm = Algorithm(rawValue: pair[1].uppercased()) else { throw .unknownAlgorithm }
                return algorithm
            }
        }
        throw .unknownAlgorithm
    }

    /// The string Twilio signs.
    public static func signedString(url: String, parameters: [(name: String, value: String)]) -> [UInt8] {
        Array(url.utf8) + signedParameters(parameters)
    }

    /// The parameters' part of the signed string: sorted by name (a repeated name by value), each
    /// name followed by its value.
    static func signedParameters(_ parameters: [(name: String, value: String)]) -> [UInt8] {
        let sorted = parameters.sorted { a, b in
            a.name == b.name ? a.value.utf8.lexicographicallyPrecedes(b.value.utf8) : a.name.utf8.lexicographicallyPrecedes(b.name.utf8)
        }
        var data: [UInt8] = []
        data.reserveCapacity(sorted.reduce(0) { $0 + $1.name.utf8.count + $1.value.utf8.count })
        for (name, value) in sorted {
            data.append(contentsOf: name.utf8)
            data.append(contentsOf: value.utf8)
        }
        return data
    }

    /// The base64 signature of `url` and `parameters` under `key`.
    public static func sign(url: String, parameters: [(name: String, value: String)], key: [UInt8], algorithm: Algorithm = .hmacSHA1) -> String {
        String(decoding: base64(macs(urls: [Array(url.utf8)], signedParameters: signedParameters(parameters), key: SymmetricKey(data: key), algorithm: algorithm)[0]),
               as: UTF8.self)
    }

    /// Checks `signature` against the URL (with and without its default port) and parameters.
    public static func verify(signature: String, url: String, parameters: [(name: String, value: String)], key: [UInt8], algorithm: Algorithm = .hmacSHA1) -> Bool {
        let presented = Array(signature.utf8)
        let signed = signedParameters(parameters)
        var valid = false
        // Every candidate is computed and compared, so timing does not tell which one matched.
        for mac in macs(urls: urlVariants(Array(url.utf8)), signedParameters: signed, key: SymmetricKey(data: key), algorithm: algorithm) {
            valid = constantTimeEquals(base64(mac), presented) || valid
        }
        return valid
    }

    /// The MAC of each URL followed by the parameters: the key is prepared once and its state
    /// copied for each URL.
    private static func macs(urls: [[UInt8]], signedParameters: [UInt8], key: SymmetricKey, algorithm: Algorithm) -> [[UInt8]] {
        func macs<H: HashFunction>(_ keyed: HMAC<H>) -> [[UInt8]] {
            urls.map { url in
                var hmac = keyed
                hmac.update(data: url)
                hmac.update(data: signedParameters)
                return Array(hmac.finalize())
            }
        }
        switch algorithm {
        case .hmacSHA1: return macs(HMAC<Insecure.SHA1>(key: key))
        case .hmacSHA256: return macs(HMAC<SHA256>(key: key))
        }
    }

    /// Standard base64 with padding (RFC 4648 §4), as Twilio writes signatures.
    static func base64(_ bytes: [UInt8]) -> [UInt8] {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
        var output: [UInt8] = []
        output.reserveCapacity((bytes.count + 2) / 3 * 4)
        var index = 0
        while index < bytes.count {
            let remaining = bytes.count - index
            let chunk = UInt32(bytes[index]) << 16 | (remaining > 1 ? UInt32(bytes[index + 1]) << 8 : 0) | (remaining > 2 ? UInt32(bytes[index + 2]) : 0)
            output.append(alphabet[Int(chunk >> 18 & 63)])
            output.append(alphabet[Int(chunk >> 12 & 63)])
            output.append(remaining > 1 ? alphabet[Int(chunk >> 6 & 63)] : UInt8(ascii: "="))
            output.append(remaining > 2 ? alphabet[Int(chunk & 63)] : UInt8(ascii: "="))
            index += 3
        }
        return output
    }

    /// Checks a JSON body against the `bodySHA256` query parameter of `url`.
    public static func verifyBodyHash(url: String, body: some Collection<UInt8>) -> Bool {
        guard let query = url.split(separator: "?", maxSplits: 1).dropFirst().first,
              let hash = query.split(separator: "&").lazy.compactMap({ item -> Substring? in
                  let pair = item.split(separator: "=", maxSplits: 1)
                  return pair.count == 2 && pair[0] == "bodySHA256" ? pair[1] : nil
              }).first
        else { return false }
        let expected = SHA256.hash(data: Array(body)).map { String(format: "%02x", $0) }.joined()
        return constantTimeEquals(Array(hash.lowercased().utf8), Array(expected.utf8))
    }

    /// `url` as given plus the same URL with its default port added or removed.
    static func urlVariants(_ url: [UInt8]) -> [[UInt8]] {
        let separator = Array("://".utf8)
        guard let schemeEnd = url.indices.first(where: { url[$0...].starts(with: separator) }) else { return [url] }
        let scheme = url[..<schemeEnd].map { $0 | 0x20 }
        let defaultPort: [UInt8]
        if scheme.elementsEqual("https".utf8) {
            defaultPort = Array(":443".utf8)
        } else if scheme.elementsEqual("http".utf8) {
            defaultPort = Array(":80".utf8)
        } else {
            return [url]
        }
        let authorityStart = schemeEnd + separator.count
        let authorityEnd = url[authorityStart...].firstIndex { $0 == UInt8(ascii: "/") || $0 == UInt8(ascii: "?") || $0 == UInt8(ascii: "#") } ?? url.endIndex
        let authority = url[authorityStart..<authorityEnd]
        if authority.count > defaultPort.count, authority.suffix(defaultPort.count).elementsEqual(defaultPort) {
            return [url, Array(url[..<(authorityEnd - defaultPort.count)] + url[authorityEnd...])]
        }
        if authority.contains(UInt8(ascii: ":")) { return [url] }
        return [url, Array(url[..<authorityEnd] + defaultPort + url[authorityEnd...])]
    }
}
