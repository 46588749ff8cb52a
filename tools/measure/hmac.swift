// Twilio's webhook HMAC two ways, alternating three times, medians in ns per signature check:
// the construction of TwilioSignature.Keyed (RFC 2104 over swift-crypto's hash functions, copied
// here because it is internal to VoiceCoreEdge) and swift-crypto's HMAC<Insecure.SHA1>, each with
// the key prepared per request, one URL variant, Foundation's base64. Run by tools/measure/hmac.
import Crypto
import Foundation

struct Keyed {
    private enum States {
        case sha1(inner: Insecure.SHA1, outer: Insecure.SHA1)
        case sha256(inner: SHA256, outer: SHA256)
    }
    private let states: States

    init(key: [UInt8], algorithm: Algorithm) {
        switch algorithm {
        case .hmacSHA1:
            let (inner, outer) = Self.prepare(Insecure.SHA1.self, key: key)
            states = .sha1(inner: inner, outer: outer)
        case .hmacSHA256:
            let (inner, outer) = Self.prepare(SHA256.self, key: key)
            states = .sha256(inner: inner, outer: outer)
        }
    }

    /// The base64 MAC (RFC 4648 §4, padded), as Twilio writes signatures.
    func signature(url: [UInt8], signedParameters: [UInt8]) -> String {
        Data(mac(url: url, signedParameters: signedParameters)).base64EncodedString()
    }

    func mac(url: [UInt8], signedParameters: [UInt8]) -> [UInt8] {
        switch states {
        case .sha1(let inner, let outer): Self.mac(inner, outer, [url, signedParameters])
        case .sha256(let inner, let outer): Self.mac(inner, outer, [url, signedParameters])
        }
    }

    /// The hash states after the key XOR ipad and XOR opad blocks.
    private static func prepare<H: HashFunction>(_: H.Type, key: [UInt8]) -> (inner: H, outer: H) {
        // A key longer than a block is replaced by its hash; a shorter one is padded with zeros.
        var block = key
        if key.count > H.blockByteCount {
            var hash = H()
            key.withUnsafeBytes { hash.update(bufferPointer: $0) }
            block = hash.finalize().withUnsafeBytes { Array($0) }
        }
        block += Array(repeating: 0, count: H.blockByteCount - block.count)
        var inner = H()
        var outer = H()
        block.map { $0 ^ 0x36 }.withUnsafeBytes { inner.update(bufferPointer: $0) }
        block.map { $0 ^ 0x5c }.withUnsafeBytes { outer.update(bufferPointer: $0) }
        return (inner, outer)
    }

    private static func mac<H: HashFunction>(_ inner: H, _ outer: H, _ parts: [[UInt8]]) -> [UInt8] {
        var inner = inner
        for part in parts { part.withUnsafeBytes { inner.update(bufferPointer: $0) } }
        var outer = outer
        inner.finalize().withUnsafeBytes { outer.update(bufferPointer: $0) }
        return outer.finalize().withUnsafeBytes { Array($0) }
    }
}

enum Algorithm { case hmacSHA1, hmacSHA256 }

let key = Array("0123456789abcdef0123456789abcdef".utf8)
let url = Array("https://edge.example.com/webhooks/twilio/0190b0a4-2b7e-7cc0-9a3c-2f0e1b9d4c11/status".utf8)
// A status callback's signed parameters (names and values, sorted by name).
let parameters = Array(("AccountSidAC0123456789abcdef0123456789abcdefApiVersion2010-04-01CallDuration42CallSidCA0123456789abcdef0123456789abcdef"
    + "CallStatuscompletedCalled+15005550006Caller+14155551234DirectioninboundFrom+14155551234SequenceNumber3Timestamp"
    + "Mon, 16 Aug 2010 03:45:01 +0000To+15005550006").utf8)
let expected = Keyed(key: key, algorithm: .hmacSHA1).signature(url: url, signedParameters: parameters)

func keyed() -> UInt8 {
    Keyed(key: key, algorithm: .hmacSHA1).signature(url: url, signedParameters: parameters) == expected ? 1 : 0
}

func library() -> UInt8 {
    var hmac = HMAC<Insecure.SHA1>(key: SymmetricKey(data: key))
    hmac.update(data: url)
    hmac.update(data: parameters)
    return Data(hmac.finalize()).base64EncodedString() == expected ? 1 : 0
}

precondition(keyed() == 1 && library() == 1, "the two constructions disagree")

func nanosecondsPerCall(_ iterations: Int, _ body: () -> UInt8) -> Double {
    var matched = 0
    let start = ContinuousClock.now
    for _ in 0..<iterations { matched &+= Int(body()) }
    let elapsed = ContinuousClock.now - start
    precondition(matched == iterations)
    return (Double(elapsed.components.seconds) * 1e9 + Double(elapsed.components.attoseconds) / 1e9) / Double(iterations)
}

var runs: [String: [Double]] = [:]
for _ in 0..<3 {
    runs["TwilioSignature.Keyed", default: []].append(nanosecondsPerCall(300_000, keyed))
    runs["HMAC<Insecure.SHA1>", default: []].append(nanosecondsPerCall(300_000, library))
}
for name in ["TwilioSignature.Keyed", "HMAC<Insecure.SHA1>"] {
    let sorted = runs[name, default: []].sorted()
    print("\(name): median \(Int(sorted[1])) ns per check (runs \(sorted.map { String(Int($0)) }.joined(separator: ", ")))")
}
