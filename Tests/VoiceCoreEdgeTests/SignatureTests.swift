import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import Testing
import VoiceCoreBus
import VoiceCoreEvents
import VoiceCoreTime
@testable import VoiceCoreEdge
@testable import VoiceCoreTenants

@Suite("Webhook signatures and parsing (no server)")
struct SignatureTests {
    static let twilioParameters: [(name: String, value: String)] = [
        ("CallSid", "CA1234567890ABCDE"), ("Caller", "+14158675309"), ("Digits", "1234"), ("From", "+14158675309"), ("To", "+18005551212"),
    ]

    @Test func twilioPublishedVector() {
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2"
        #expect(TwilioSignature.sign(url: url, parameters: Self.twilioParameters, key: Array("12345".utf8)) == "RSOYDt4T1cUTdK1PDd93/VVr8B8=")
        #expect(TwilioSignature.verify(signature: "RSOYDt4T1cUTdK1PDd93/VVr8B8=", url: url, parameters: Self.twilioParameters.reversed(), key: Array("12345".utf8)))
        // Another token, another parameter value, another URL: refused.
        #expect(!TwilioSignature.verify(signature: "RSOYDt4T1cUTdK1PDd93/VVr8B8=", url: url, parameters: Self.twilioParameters, key: Array("12346".utf8)))
        var changed = Self.twilioParameters
        changed[2].value = "1235"
        #expect(!TwilioSignature.verify(signature: "RSOYDt4T1cUTdK1PDd93/VVr8B8=", url: url, parameters: changed, key: Array("12345".utf8)))
        #expect(!TwilioSignature.verify(signature: "RSOYDt4T1cUTdK1PDd93/VVr8B8=", url: url + "&x=3", parameters: Self.twilioParameters, key: Array("12345".utf8)))
    }

    @Test func twilioURLWithAndWithoutDefaultPort() {
        let signedWithoutPort = TwilioSignature.sign(url: "https://mycompany.com/myapp.php?foo=1&bar=2", parameters: Self.twilioParameters, key: Array("12345".utf8))
        #expect(TwilioSignature.verify(signature: signedWithoutPort, url: "https://mycompany.com:443/myapp.php?foo=1&bar=2", parameters: Self.twilioParameters, key: Array("12345".utf8)))
        let signedWithPort = TwilioSignature.sign(url: "https://mycompany.com:443/myapp.php", parameters: [], key: Array("12345".utf8))
        #expect(TwilioSignature.verify(signature: signedWithPort, url: "https://mycompany.com/myapp.php", parameters: [], key: Array("12345".utf8)))
        // A non-default port is never dropped.
        let signed8443 = TwilioSignature.sign(url: "https://mycompany.com:8443/x", parameters: [], key: Array("12345".utf8))
        #expect(!TwilioSignature.verify(signature: signed8443, url: "https://mycompany.com/x", parameters: [], key: Array("12345".utf8)))
    }

    @Test func twilioRepeatedNamesSignEachValueSorted() {
        let string = TwilioSignature.signedString(url: "https://a.example/x", parameters: [("B", "2"), ("A", "z"), ("A", "y")])
        #expect(String(decoding: string, as: UTF8.self) == "https://a.example/xAyAzB2")
    }

    @Test func twilioHMACSHA256WithSharedKey() throws {
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2"
        let key = Array("shared-secret-key".utf8)
        // Expected value computed independently: HMAC-SHA256 over the same signed string.
        let expected = Data(HMAC<SHA256>.authenticationCode(for: TwilioSignature.signedString(url: url, parameters: Self.twilioParameters), using: SymmetricKey(data: key))).base64EncodedString()
        #expect(TwilioSignature.sign(url: url, parameters: Self.twilioParameters, key: key, algorithm: .hmacSHA256) == expected)
        #expect(try TwilioSignature.algorithm(settingsHeader: "key=WS123,algorithm=HMAC_SHA256") == .hmacSHA256)
        #expect(try TwilioSignature.algorithm(settingsHeader: nil) == nil)
        #expect(throws: TwilioSignature.Failure.unknownAlgorithm) { try TwilioSignature.algorithm(settingsHeader: "key=WS123,algorithm=MD5") }
        // A SHA-1 signature does not pass as SHA-256.
        let sha1 = TwilioSignature.sign(url: url, parameters: Self.twilioParameters, key: key)
        #expect(!TwilioSignature.verify(signature: sha1, url: url, parameters: Self.twilioParameters, key: key, algorithm: .hmacSHA256))
    }

    @Test func twilioJSONBodyThroughBodySHA256() {
        let body = Array(#"{"CallSid":"CA1","CallStatus":"ringing"}"#.utf8)
        let hash = SHA256.hash(data: body).map { String(format: "%02x", $0) }.joined()
        #expect(hash.count == 64)
        #expect(TwilioSignature.verifyBodyHash(url: "https://e.example/hook?bodySHA256=\(hash)", body: body))
        #expect(!TwilioSignature.verifyBodyHash(url: "https://e.example/hook?bodySHA256=\(hash)", body: body + [32]))
        #expect(!TwilioSignature.verifyBodyHash(url: "https://e.example/hook", body: body))
    }

    /// Key seed 00 01 … 1f; the signature was computed with Python's `cryptography` (Ed25519 is
    /// deterministic), not with the code under test.
    static let telnyxSeed = Array(UInt8(0)...UInt8(31))
    static let telnyxPublicKey = "A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg="
    static let telnyxBody = #"{"data":{"event_type":"call.initiated","id":"0ccc7b54-4df3-4bca-a65a-3da1ecc777f0","occurred_at":"2026-11-24T10:00:00.000000Z","payload":{"call_control_id":"v3:abc","from":"+14155550100","to":"+14155550199","direction":"incoming"}}}"#
    static let telnyxSignature = "XzDvOIPA0EZYK5ALyrejpVHAbmbrx52P9o2FJPy6qAH31CcQi2ijIDTPTNqZQcF9rZ6H5F3mU0ey+RzeX/9OCw=="

    @Test func telnyxVector() throws {
        let key = try Curve25519.Signing.PrivateKey(rawRepresentation: Self.telnyxSeed)
        #expect(key.publicKey.rawRepresentation.base64EncodedString() == Self.telnyxPublicKey)
        #expect(try TelnyxSignature.sign(body: Array(Self.telnyxBody.utf8), timestamp: 1_700_000_000, privateKey: key) == Self.telnyxSignature)
        let publicKey = Array(Data(base64Encoded: Self.telnyxPublicKey)!)
        let at = Date(timeIntervalSince1970: 1_700_000_100)
        try TelnyxSignature.verify(signature: Self.telnyxSignature, timestamp: "1700000000", body: Array(Self.telnyxBody.utf8), publicKey: publicKey, now: at)
        #expect(throws: TelnyxSignature.Failure.mismatch) {
            try TelnyxSignature.verify(signature: Self.telnyxSignature, timestamp: "1700000000", body: Array((Self.telnyxBody + " ").utf8), publicKey: publicKey, now: at)
        }
        #expect(throws: TelnyxSignature.Failure.mismatch) {
            try TelnyxSignature.verify(signature: Self.telnyxSignature, timestamp: "1700000001", body: Array(Self.telnyxBody.utf8), publicKey: publicKey, now: at)
        }
        // 301 s away from this clock: a replay.
        #expect(throws: TelnyxSignature.Failure.stale) {
            try TelnyxSignature.verify(signature: Self.telnyxSignature, timestamp: "1700000000", body: Array(Self.telnyxBody.utf8), publicKey: publicKey,
                                       now: Date(timeIntervalSince1970: 1_700_000_301))
        }
        #expect(throws: TelnyxSignature.Failure.missing) {
            try TelnyxSignature.verify(signature: nil, timestamp: "1700000000", body: Array(Self.telnyxBody.utf8), publicKey: publicKey, now: at)
        }
    }

    @Test func formBodiesKeepOrderRepeatsAndEncoding() throws {
        let form = try FormBody(parsing: Array("A=1&B=x+y%2Bz&A=2&Empty=&Caf%C3%A9=%E2%82%AC".utf8))
        #expect(form.parameters.map(\.name) == ["A", "B", "A", "Empty", "Café"])
        #expect(form["B"] == "x y+z")
        #expect(form["Café"] == "€")
        #expect(form.dictionary["A"] == "1,2")
        #expect(throws: FormBody.Malformed.self) { try FormBody(parsing: Array("A=%zz".utf8)) }
        #expect(throws: FormBody.Malformed.self) { try FormBody(parsing: Array("A=%C3%28".utf8)) }
        // Empty pieces are skipped, a name alone has an empty value, a value may hold '='.
        let edges = try FormBody(parsing: Array("&&A=1&&Flag&B==x=y&".utf8))
        #expect(edges.parameters.map { "\($0.name)|\($0.value)" } == ["A|1", "Flag|", "B|=x=y"])
        #expect(throws: FormBody.Malformed.self) { try FormBody(parsing: Array("A=1&=2".utf8)) }
        #expect(try FormBody(parsing: []).parameters.isEmpty)
        // Raw bytes that are not UTF-8, with nothing to percent-decode, in a value and in a name.
        #expect(throws: FormBody.Malformed.self) { try FormBody(parsing: [UInt8(ascii: "A"), UInt8(ascii: "="), 0xC3, 0x28]) }
        #expect(throws: FormBody.Malformed.self) { try FormBody(parsing: [0xFF, UInt8(ascii: "="), UInt8(ascii: "1")]) }
    }

    @Test func theKeyedMACIsSwiftCryptosHMACForEveryKeyLength() {
        // Empty, short, one short of a block, a block (64 bytes for both), longer (hashed first).
        var generator = SystemRandomNumberGenerator()
        for keyLength in [0, 1, 20, 63, 64, 65, 200] {
            let key = (0..<keyLength).map { _ in UInt8.random(in: 0...255, using: &generator) }
            let url = Array("https://edge.example.com/webhooks/twilio/t/status".utf8)
            let parameters = (0..<Int.random(in: 0...300, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator) }
            let sha1 = TwilioSignature.Keyed(key: key, algorithm: .hmacSHA1).mac(url: url, signedParameters: parameters)
            #expect(sha1 == Array(HMAC<Insecure.SHA1>.authenticationCode(for: url + parameters, using: SymmetricKey(data: key))), "SHA-1, \(keyLength)-byte key")
            let sha256 = TwilioSignature.Keyed(key: key, algorithm: .hmacSHA256).mac(url: url, signedParameters: parameters)
            #expect(sha256 == Array(HMAC<SHA256>.authenticationCode(for: url + parameters, using: SymmetricKey(data: key))), "SHA-256, \(keyLength)-byte key")
        }
    }

    @Test func formValuesKeepTheirTextWhetherASCIIOrNot() throws {
        let form = try FormBody(parsing: Array("Plain=Tue, 24 Nov 2026&Raw=Zoë&Encoded=Zo%C3%AB".utf8))
        #expect(form["Plain"] == "Tue, 24 Nov 2026")
        #expect(form["Raw"] == "Zoë")
        #expect(form["Encoded"] == "Zoë")
    }

    @Test func telnyxFieldsKeepEveryValueAsText() throws {
        let body = #"{"data":{"event_type":"call.initiated","id":"ev-1","occurred_at":"2026-11-24T10:00:00Z","record_type":"event","#
            + #""payload":{"call_control_id":"v3:abc","from":"+14155550100","to":"+14155550199","client_state":null,"#
            + #""custom_headers":[{"name":"X-A/B","value":"1"}],"is_final":false,"confidence":0.9,"count":3,"caf\u00e9":"cr\u00e8me \"br\u00fbl\u00e9e\"","#
            + #""transcription_data":{"transcript":"hello","is_final":true}}},"meta":{"attempt":1}}"#
        let webhook = try TelnyxMapping.parse(Array(body.utf8))
        #expect(webhook.id == "ev-1" && webhook.eventType == "call.initiated")
        #expect(webhook.fields["data.payload.from"] == "+14155550100")
        #expect(webhook.fields["data.payload.client_state"] == "")
        #expect(webhook.fields["data.payload.is_final"] == "false")
        #expect(webhook.fields["data.payload.confidence"] == "0.9")
        #expect(webhook.fields["data.payload.count"] == "3")
        #expect(webhook.fields["data.payload.café"] == "crème \"brûlée\"")
        #expect(webhook.fields["data.payload.transcription_data.is_final"] == "true")
        #expect(webhook.fields["meta.attempt"] == "1")
        // An array stays JSON: the same value JSONSerialization reads from it.
        let array = try #require(webhook.fields["data.payload.custom_headers"])
        #expect(try JSONSerialization.jsonObject(with: Data(array.utf8)) as? [[String: String]] == [["name": "X-A/B", "value": "1"]])
        #expect(webhook.payload["transcription_data.transcript"] == "hello")
        #expect(webhook.payload["call_control_id"] == "v3:abc")
        #expect(webhook.fields.count == 16, "\(webhook.fields.keys.sorted())")
        for refused in ["", "[]", #"{"data":1}"#, #"{"data":{"id":"x"},}"#, #"{"data":{"id":"x","event_type":"call.initiated"}}"#] {
            #expect(throws: Problem.self, "\(refused)") { try TelnyxMapping.parse(Array(refused.utf8)) }
        }
    }

    @Test func twilioJSONCallbacksAreReadAsParameters() throws {
        let form = try TwilioMapping.flatJSON(Array(#"{"CallSid":"CA1","SequenceNumber":2,"Final":true,"Nested":{"b":"x/y","a":null},"Empty":null}"#.utf8))
        #expect(form.parameters.map(\.name) == ["CallSid", "Empty", "Final", "Nested", "SequenceNumber"])
        #expect(form["CallSid"] == "CA1" && form["SequenceNumber"] == "2" && form["Final"] == "true" && form["Empty"] == "")
        #expect(try JSONSerialization.jsonObject(with: Data((form["Nested"] ?? "").utf8)) as? NSDictionary == ["a": NSNull(), "b": "x/y"] as NSDictionary)
        #expect(throws: Problem.self) { try TwilioMapping.flatJSON(Array("[1]".utf8)) }
    }

    @Test func readinessAnswersNameEveryCheck() throws {
        let ready = ReadinessAnswer.answer([("consumer:billing", .ready), ("projection:calls", .ready)])
        #expect(ready.status == .ok && ready.mediaType.description == "application/json")
        let readyBody = ready.body
        #expect(try JSONSerialization.jsonObject(with: Data(readyBody)) as? NSDictionary == [
            "status": "ready", "checks": [["name": "consumer:billing", "status": "ready"], ["name": "projection:calls", "status": "ready"]],
        ] as NSDictionary)
        let down = ReadinessAnswer.answer([("consumer:billing", .notReady("Redis is unreachable")), ("projection:calls", .ready)])
        #expect(down.status == .serviceUnavailable && down.mediaType.description == "application/problem+json")
        let downBody = down.body
        #expect(try JSONSerialization.jsonObject(with: Data(downBody)) as? NSDictionary == [
            "type": "about:blank", "title": "Not ready", "status": 503, "detail": "consumer:billing: Redis is unreachable",
            "checks": [["name": "consumer:billing", "status": "not ready", "reason": "Redis is unreachable"], ["name": "projection:calls", "status": "ready"]],
        ] as NSDictionary)
    }

    @Test func tenantSummariesAreWrittenAsTheyWereShown() throws {
        for sid in ["AC123", nil] {
            let summary = TenantSummary(id: Identifier("0193a1b2-7c4d-7e5f-8a9b-0c1d2e3f4a5b")!, name: "Bright \"Plumbing\" / Co", plan: "growth",
                                        timeZone: "America/Chicago", twilioAccountSID: sid, hasTwilioAuthToken: true, hasTwilioSharedKey: false,
                                        hasTelnyxPublicKey: sid == nil, hasTelnyxAPIKey: sid != nil, requestsPerSecond: 50, activeAPIKeys: 2,
                                        createdAt: Timestamp(rfc3339: "2026-11-24T10:00:00.123456Z")!)
            let written = JSONObjectWriter.object { summary.writeJSON(to: &$0) }
            var expected: [String: Any] = [
                "tenant_id": "0193a1b2-7c4d-7e5f-8a9b-0c1d2e3f4a5b", "name": "Bright \"Plumbing\" / Co", "plan": "growth", "time_zone": "America/Chicago",
                "twilio_auth_token_set": true, "twilio_shared_key_set": false, "telnyx_public_key_set": sid == nil, "telnyx_api_key_set": sid != nil, "requests_per_second": 50,
                "active_api_keys": 2, "created_at": "2026-11-24T10:00:00.123456Z",
            ]
            expected["twilio_account_sid"] = sid
            #expect(try JSONSerialization.jsonObject(with: Data(written)) as? NSDictionary == expected as NSDictionary)
            #expect(try TenantSummary(json: JSONObject.parse(written)) == summary)
        }
    }

    @Test func mediaTypesAreReadWithoutParametersBlanksOrCase() {
        #expect(Edge.mediaType("application/x-www-form-urlencoded")?.description == "application/x-www-form-urlencoded")
        #expect(Edge.mediaType(" Application/X-WWW-Form-URLEncoded ; charset=UTF-8")?.description == "application/x-www-form-urlencoded")
        #expect(Edge.mediaType("application/json;charset=utf-8")?.description == "application/json")
        #expect(Edge.mediaType("\ttext/plain\t")?.description == "text/plain")
        #expect(Edge.mediaType("") == nil)
        #expect(Edge.mediaType(";") == nil)
    }

    @Test func twilioTimestamps() {
        #expect(TwilioMapping.timestamp("Mon, 16 Aug 2010 03:45:01 +0000")?.rfc3339 == "2010-08-16T03:45:01.000000Z")
        #expect(TwilioMapping.timestamp("Tue, 24 Nov 2026 10:00:00 +0130")?.rfc3339 == "2026-11-24T08:30:00.000000Z")
        #expect(TwilioMapping.timestamp("2026-11-24T10:00:00.123Z")?.rfc3339 == "2026-11-24T10:00:00.123000Z")
        #expect(TwilioMapping.timestamp("yesterday") == nil)
        // Without the weekday, a one-digit day, a negative offset, the last day of a leap February.
        #expect(TwilioMapping.timestamp("6 Aug 2010 03:45:01 -0500")?.rfc3339 == "2010-08-06T08:45:01.000000Z")
        #expect(TwilioMapping.timestamp("Thu, 29 Feb 2024 23:59:59 +0000")?.rfc3339 == "2024-02-29T23:59:59.000000Z")
        // Anything off the shape is refused rather than guessed at.
        for bad in ["Mon, 16 Aug 2010 03:45:01", "Mon, 16 Agu 2010 03:45:01 +0000", "Mon, 16 Aug 2010 3:45:01 +0000", "Mon, 16 Aug 2010 03:45:01 +00",
                    "Mon, 16 Aug 2010 03:45:01 +0000 ", "Mon, 16 Aug 2010 24:00:00 +0000", "Mon, 32 Aug 2010 03:45:01 +0000", "Mon, 16 Aug 10 03:45:01 +0000", ""] {
            #expect(TwilioMapping.timestamp(bad) == nil, "\(bad)")
        }
    }
}
