import Testing
import VoiceCoreEdge
import VoiceCoreEvents
import VoiceCoreSimulation

/// Simulated Twilio traffic is signed and encoded as Twilio does it: by Twilio's published
/// vectors, and as the edge (an implementation of its own) verifies and parses it.
@Suite("Simulated Twilio requests")
struct TwilioRequestSignerTests {
    static let documentedURL = "https://mycompany.com/myapp.php?foo=1&bar=2"

    @Test func theSignatureIsTwiliosOnItsPublishedExample() {
        // Twilio's request-validation example (its helper libraries test against it), parameters out of order.
        let parameters: [(name: String, value: String)] = [
            ("Digits", "1234"), ("To", "+18005551212"), ("From", "+14158675309"), ("Caller", "+14158675309"), ("CallSid", "CA1234567890ABCDE"),
        ]
        #expect(TwilioRequestSigner(authToken: "12345").signature(url: Self.documentedURL, parameters: parameters) == "RSOYDt4T1cUTdK1PDd93/VVr8B8=")
        #expect(TwilioRequestSigner(authToken: "12346").signature(url: Self.documentedURL, parameters: parameters) != "RSOYDt4T1cUTdK1PDd93/VVr8B8=")
    }

    @Test func aRepeatedNameSignsEachOfItsDistinctValuesInOrderOfValue() {
        // twilio-python's vector: "Sid" sorts before "SidAccount" (a prefix first), the values of
        // Digits among themselves, and 1234 given twice is signed once.
        let parameters: [(name: String, value: String)] = [("Sid", "CA123"), ("SidAccount", "AC123"), ("Digits", "5678"), ("Digits", "1234"), ("Digits", "1234")]
        #expect(TwilioRequestSigner(authToken: "12345").signature(url: Self.documentedURL, parameters: parameters) == "IK+Dwps556ElfBT0I3Rgjkr1wJU=")
    }

    @Test func everyWebhookOfASimulatedCallParsesBackAndVerifiesAtTheEdge() throws {
        let token = "e5f1c8a2d7b94f03a6c1e2d3f4a5b6c7"
        var call = TwilioCallSimulation.appointmentCall(tenant: .v7(), accountSID: "AC00000000000000000000000000000001", authToken: token,
                                                        publicBase: "https://edge.example.com/")
        // Text that must be percent-encoded: non-ASCII, the form's own delimiters, a plus and a percent sign.
        call.utterances.append(.init(.inbound, "Grüße ¿sí? 50% off & more=yes +1 (415) 555-0199", at: 20))
        let unsigned = call.unsignedWebhooks
        let signed = call.webhooks
        #expect(signed.count == unsigned.count && signed.count == 11)
        for (hook, parameters) in zip(signed, unsigned) {
            #expect(hook.path == "/webhooks/twilio/\(call.tenant)/\(hook.kind.rawValue)")
            let parsed = try FormBody(parsing: Array(hook.body.utf8)).parameters
            #expect(parsed.map(\.name) == parameters.parameters.map(\.name))
            #expect(parsed.map(\.value) == parameters.parameters.map(\.value))
            let url = "https://edge.example.com" + hook.path
            #expect(TwilioSignature.verify(signature: hook.signature, url: url, parameters: parsed, key: Array(token.utf8)), "\(hook.kind) \(hook.body)")
            #expect(!TwilioSignature.verify(signature: hook.signature, url: url, parameters: parsed, key: Array("another token".utf8)))
            #expect(hook.headers.map(\.name) == ["Content-Type", "X-Twilio-Signature"])
        }
        #expect(signed.contains { $0.body.contains("Gr%C3%BC%C3%9Fe%20%C2%BFs%C3%AD%3F%2050%25%20off%20%26%20more%3Dyes%20%2B1") })
    }
}
