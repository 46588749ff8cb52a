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
        var data = Array(url.utf8)
        let sorted = parameters.sorted { a, b in
            a.name == b.name ? a.value.utf8.lexicographicallyPrecedes(b.value.utf8) : a.name.utf8.lexicographicallyPrecedes(b.name.utf8)
        }
        for (name, value) in sorted {
            data.append(contentsOf: name.utf8)
            data.append(contentsOf: value.utf8)
        }
        return data
    }

    /// The base64 signature of `url` and `parameters` under `key`.
    public static func sign(url: String, parameters: [(name: String, value: String)], key: [UInt8], algorithm: Algorithm = .hmacSHA1) -> String {
        let data = signedString(url: url, parameters: parameters)
        let key = SymmetricKey(data: key)
        switch algorithm {
        case .hmacSHA1: return Data(HMAC<Insecure.SHA1>.authenticationCode(for: data, using: key)).base64EncodedString()
        case .hmacSHA256: return Data(HMAC<SHA256>.authenticationCode(for: data, using: key)).base64EncodedString()
        }
    }

    /// Checks `signature` against the URL (with and without its default port) and parameters.
    public static func verify(signature: String, url: String, parameters: [(name: String, value: String)], key: [UInt8], algorithm: Algorithm = .hmacSHA1) -> Bool {
        let presented = Array(signature.utf8)
        var valid = false
        // Every candidate is computed and compared, so timing does not tell which one matched.
        for candidate in urlVariants(url) {
            valid = constantTimeEquals(Array(sign(url: candidate, parameters: parameters, key: key, algorithm: algorithm).utf8), presented) || valid
        }
        return valid
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
    static func urlVariants(_ url: String) -> [String] {
        guard let schemeEnd = url.range(of: "://") else { return [url] }
        let scheme = url[..<schemeEnd.lowerBound].lowercased()
        let defaultPort = scheme == "https" ? "443" : scheme == "http" ? "80" : nil
        guard let defaultPort else { return [url] }
        let rest = url[schemeEnd.upperBound...]
        let authorityEnd = rest.firstIndex { $0 == "/" || $0 == "?" || $0 == "#" } ?? rest.endIndex
        let authority = rest[..<authorityEnd]
        let tail = rest[authorityEnd...]
        let prefix = url[..<schemeEnd.upperBound]
        if authority.hasSuffix(":" + defaultPort) {
            return [url, String(prefix + authority.dropLast(defaultPort.count + 1) + tail)]
        }
        if authority.contains(":") { return [url] }
        return [url, String(prefix + authority + ":" + defaultPort + tail)]
    }
}
