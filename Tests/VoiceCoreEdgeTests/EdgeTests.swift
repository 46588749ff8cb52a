import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Prometheus
import Testing
import VoiceCoreBus
import VoiceCoreEvents
import VoiceCorePostgres
import VoiceCoreRedis
import VoiceCoreTenants
import VoiceCoreTestSupport
import VoiceCoreTime
@testable import VoiceCoreEdge

private func data(_ envelope: EventEnvelope) -> [String: Any] {
    (try? JSONSerialization.jsonObject(with: Data(envelope.data))) as? [String: Any] ?? [:]
}

@Suite("The edge against real Redis and Postgres", .serialized)
struct EdgeTests {
    @Test func signedTwilioStatusCallbackBecomesOneCommandWithEveryField() async throws {
        let fixture = try await EdgeFixture()
        let parameters = fixture.statusCallback(callSid: "CA11111111111111111111111111111111", status: "completed", sequence: 3,
                                                extra: [("CallDuration", "42"), ("ForwardedFrom", "+14155550123"), ("SomethingTwilioAddsLater", "kept")])
        try await fixture.test { client in
            let response = try await client.post(fixture.twilio("status", parameters))
            #expect(response.status == .ok)
        }
        let commands = try await fixture.commands()
        try #require(commands.count == 1)
        let command = commands[0]
        let callID = CallID.derive(tenant: fixture.tenant, provider: .twilio, providerCallID: "CA11111111111111111111111111111111")
        #expect(command.type == ReportCallProgress.type)
        #expect(command.tenantID == fixture.tenant)
        #expect(command.subject == callID.description)
        #expect(command.source == "/edge/twilio")
        let payload = data(command)
        #expect(payload["status"] as? String == "completed")
        #expect(payload["sequence"] as? Int == 3)
        #expect(payload["duration_seconds"] as? Int == 42)
        #expect(payload["occurred_at"] as? String == "2026-11-24T10:00:03.000000Z")
        let fields = payload["provider_fields"] as? [String: String] ?? [:]
        #expect(fields.count == parameters.count)
        #expect(fields["SomethingTwilioAddsLater"] == "kept")
        #expect(fields["ForwardedFrom"] == "+14155550123")
        // The stream is the call's partition of the calls command stream.
        let stream = fixture.naming.stream(for: .calls, kind: .command, tenant: fixture.tenant, subject: callID.description)
        #expect(try await fixture.redis.execute(.xrange(stream)).count == 1)
        try await fixture.drop()
    }

    @Test func retriedWebhooksArePublishedOnce() async throws {
        let fixture = try await EdgeFixture()
        let first = fixture.statusCallback(callSid: "CA22222222222222222222222222222222", status: "ringing", sequence: 1)
        let second = fixture.statusCallback(callSid: "CA22222222222222222222222222222222", status: "in-progress", sequence: 2)
        try await fixture.test { client in
            for _ in 0..<3 { #expect(try await client.post(fixture.twilio("status", first)).status == .ok) }
            // Concurrent duplicates too: the check and the XADD are one script.
            try await withThrowingTaskGroup(of: HTTPResponse.Status.self) { group in
                for _ in 0..<8 { group.addTask { try await client.post(fixture.twilio("status", second)).status } }
                for try await status in group { #expect(status == .ok) }
            }
            // Twilio's idempotency token, when sent, is the key.
            let token: HTTPFields = [.twilioIdempotencyToken: "idem-\(UUID().uuidString)"]
            let third = fixture.statusCallback(callSid: "CA22222222222222222222222222222222", status: "completed", sequence: 3)
            let response1 = try await client.post(fixture.twilio("status", third, headers: token))
            #expect(response1.status == .ok)
            let response2 = try await client.post(fixture.twilio("status", third, headers: token))
            #expect(response2.status == .ok)
        }
        let statuses = try await fixture.commands().map { data($0)["status"] as? String }
        #expect(statuses.sorted { ($0 ?? "") < ($1 ?? "") } == ["completed", "in-progress", "ringing"])
        try await fixture.drop()
    }

    @Test func forgedOrUnsignedWebhooksAreRefusedAndNothingIsPublished() async throws {
        let fixture = try await EdgeFixture()
        let parameters = fixture.statusCallback(callSid: "CA33333333333333333333333333333333", status: "ringing", sequence: 1)
        try await fixture.test { client in
            // Signed with another token.
            var response = try await client.post(fixture.twilio("status", parameters, token: "not-the-token"))
            #expect(response.status == .forbidden)
            #expect(response.json["detail"] == nil)
            #expect(!response.text.contains("signature"))
            // Valid signature, altered body.
            var (uri, headers, _) = fixture.twilio("status", parameters)
            var altered = parameters
            altered[3].1 = "completed"
            response = try await client.execute(uri: uri, method: .post, headers: headers, body: ByteBuffer(string: EdgeFixture.formEncode(altered)))
            #expect(response.status == .forbidden)
            // No signature at all.
            headers[.twilioSignature] = nil
            response = try await client.execute(uri: uri, method: .post, headers: headers, body: ByteBuffer(string: EdgeFixture.formEncode(parameters)))
            #expect(response.status == .forbidden)
            // Signed for another tenant's URL.
            let other = Identifier.v7()
            response = try await client.execute(uri: "/webhooks/twilio/\(other)/status", method: .post, headers: fixture.twilio("status", parameters).1,
                                                body: ByteBuffer(string: EdgeFixture.formEncode(parameters)))
            #expect(response.status == .notFound)
            // Another Twilio account's callback, correctly signed with this token.
            var foreign = parameters
            foreign[0].1 = "AC99999999999999999999999999999999"
            let response3 = try await client.post(fixture.twilio("status", foreign))
            #expect(response3.status == .forbidden)
            // SHA-256 settings header: the shared key signs, the auth token does not.
            let settings: HTTPFields = [.twilioSignatureSettings: "key=WS1,algorithm=HMAC_SHA256"]
            (uri, headers, _) = fixture.twilio("status", parameters, headers: settings)
            let response4 = try await client.execute(uri: uri, method: .post, headers: headers, body: ByteBuffer(string: EdgeFixture.formEncode(parameters)))
            #expect(response4.status == .forbidden)
        }
        #expect(try await fixture.commands().isEmpty)
        try await fixture.test { client in
            let settings: HTTPFields = [.twilioSignatureSettings: "key=WS1,algorithm=HMAC_SHA256"]
            let uri = "/webhooks/twilio/\(fixture.tenant)/status"
            let signature = TwilioSignature.sign(url: EdgeFixture.publicBase + uri, parameters: parameters.map { (name: $0.0, value: $0.1) },
                                                 key: Array(fixture.twilioSharedKey.utf8), algorithm: .hmacSHA256)
            var headers: HTTPFields = [.contentType: "application/x-www-form-urlencoded", .twilioSignature: signature]
            headers.append(contentsOf: settings)
            let response5 = try await client.execute(uri: uri, method: .post, headers: headers, body: ByteBuffer(string: EdgeFixture.formEncode(parameters)))
            #expect(response5.status == .ok)
        }
        #expect(try await fixture.commands().count == 1)
        try await fixture.drop()
    }

    @Test func twilioJSONBodiesAreVerifiedThroughBodySHA256() async throws {
        let fixture = try await EdgeFixture()
        let body = #"{"AccountSid":"AC00000000000000000000000000000001","CallSid":"CA44","CallStatus":"ringing","From":"+14155550100","To":"+14155550199","SequenceNumber":"0"}"#
        let hash = SHA256.hash(data: Array(body.utf8)).map { String(format: "%02x", $0) }.joined()
        let uri = "/webhooks/twilio/\(fixture.tenant)/status?bodySHA256=\(hash)"
        let signature = TwilioSignature.sign(url: EdgeFixture.publicBase + uri, parameters: [], key: Array(fixture.twilioToken.utf8))
        try await fixture.test { client in
            let headers: HTTPFields = [.contentType: "application/json", .twilioSignature: signature]
            let response6 = try await client.execute(uri: uri, method: .post, headers: headers, body: ByteBuffer(string: body))
            #expect(response6.status == .ok)
            let response7 = try await client.execute(uri: uri, method: .post, headers: headers, body: ByteBuffer(string: body + " "))
            #expect(response7.status == .forbidden)
        }
        #expect(try await fixture.commands().count == 1)
        try await fixture.drop()
    }

    @Test func incomingCallAnswersTwiMLAndTranscriptionsBecomeSegments() async throws {
        let fixture = try await EdgeFixture()
        let callSid = "CA55555555555555555555555555555555"
        try await fixture.test { client in
            let voice = try await client.post(fixture.twilio("voice", [
                ("AccountSid", "AC00000000000000000000000000000001"), ("CallSid", callSid), ("CallStatus", "ringing"), ("Direction", "inbound"),
                ("From", "+14155550100"), ("To", "+14155550199"),
            ]))
            #expect(voice.status == .ok)
            #expect(voice.headers[.contentType]?.hasPrefix("text/xml") == true)
            #expect(voice.text.contains(#"<Transcription statusCallbackUrl="https://edge.example.com/webhooks/twilio/\#(fixture.tenant)/transcription""#))
            #expect(voice.text.contains("<Say>"))
            let content: [(String, String)] = [
                ("AccountSid", "AC00000000000000000000000000000001"), ("CallSid", callSid), ("TranscriptionSid", "GT1"),
                ("TranscriptionEvent", "transcription-content"), ("TranscriptionData", #"{"transcript":"I'd like an appointment, my number is 415 555 0100","confidence":0.93}"#),
                ("Track", "inbound_track"), ("Final", "true"), ("SequenceId", "7"), ("Timestamp", "2026-11-24T10:00:05.250Z"),
            ]
            let response8 = try await client.post(fixture.twilio("transcription", content))
            #expect(response8.status == .ok)
            let response9 = try await client.post(fixture.twilio("transcription", content))
            #expect(response9.status == .ok)
            let started: [(String, String)] = [("CallSid", callSid), ("TranscriptionSid", "GT1"), ("TranscriptionEvent", "transcription-started"), ("SequenceId", "1")]
            let response10 = try await client.post(fixture.twilio("transcription", started))
            #expect(response10.status == .ok)
            var malformed = content
            malformed[4].1 = "{not json"
            let bad = try await client.post(fixture.twilio("transcription", malformed))
            #expect(bad.status == .badRequest)
            #expect(bad.json["field"] as? String == "TranscriptionData")
        }
        let commands = try await fixture.commands()
        #expect(commands.map(\.type).sorted() == [ReportCallProgress.type, ReportTranscriptSegment.type].sorted())
        let segment = try #require(commands.first { $0.type == ReportTranscriptSegment.type })
        #expect(data(segment)["text"] as? String == "I'd like an appointment, my number is 415 555 0100")
        #expect(data(segment)["sequence"] as? Int == 7)
        #expect(data(segment)["is_final"] as? Bool == true)
        // Both commands of the call share its partition, so they are ordered.
        #expect(Set(commands.map(\.subject)).count == 1)
        try await fixture.drop()
    }

    @Test func telnyxWebhooksVerifiedByEd25519() async throws {
        let fixture = try await EdgeFixture()
        @Sendable func body(_ id: String, _ type: String, extra: String = "") -> String {
            #"{"data":{"event_type":"\#(type)","id":"\#(id)","occurred_at":"2026-11-24T10:00:00.123456Z","record_type":"event","payload":{"call_control_id":"v3:cc1","call_session_id":"s1","connection_id":"c1","from":"+14155550100","to":"+14155550199","direction":"incoming"\#(extra)}},"meta":{"attempt":1}}"#
        }
        try await fixture.test { client in
            let initiated = try fixture.telnyx(body("e1", "call.initiated"))
            let response11 = try await client.post(initiated)
            #expect(response11.status == .ok)
            let response12 = try await client.post(initiated)  // a retry
            #expect(response12.status == .ok)
            let response13 = try await client.post(try fixture.telnyx(body("e2", "call.hangup", extra: #","hangup_cause":"user_busy""#)))
            #expect(response13.status == .ok)
            let response14 = try await client.post(try fixture.telnyx(body("e3", "call.bridged")))  // accepted, nothing to publish
            #expect(response14.status == .ok)
            // Stale timestamp (a replay) and a tampered body.
            let response15 = try await client.post(try fixture.telnyx(body("e4", "call.answered"), timestamp: Int64(Date().timeIntervalSince1970) - 301))
            #expect(response15.status == .forbidden)
            var (uri, headers, _) = try fixture.telnyx(body("e5", "call.answered"))
            let response16 = try await client.execute(uri: uri, method: .post, headers: headers, body: ByteBuffer(string: body("e5", "call.hangup")))
            #expect(response16.status == .forbidden)
            headers[.telnyxSignature] = nil
            let response17 = try await client.execute(uri: uri, method: .post, headers: headers, body: ByteBuffer(string: body("e5", "call.answered")))
            #expect(response17.status == .forbidden)
        }
        let commands = try await fixture.commands()
        #expect(commands.count == 2)
        let statuses = Set(commands.map { data($0)["status"] as? String ?? "" })
        #expect(statuses == ["initiated", "busy"])
        let fields = try #require(commands.first.map { data($0)["provider_fields"] as? [String: String] ?? [:] })
        #expect(fields["data.payload.call_session_id"] == "s1")
        #expect(fields["meta.attempt"] == "1")
        try await fixture.drop()
    }

    @Test func badInputGetsAPreciseAnswerAndPublishesNothing() async throws {
        let fixture = try await EdgeFixture()
        let parameters = fixture.statusCallback(callSid: "CA66666666666666666666666666666666", status: "ringing", sequence: 1)
        try await fixture.test { client in
            let (uri, headers, body) = fixture.twilio("status", parameters)
            var wrongType = headers
            wrongType[.contentType] = "text/plain"
            var response = try await client.execute(uri: uri, method: .post, headers: wrongType, body: body)
            #expect(response.status == .unsupportedMediaType)
            #expect(response.headers[.contentType] == "application/problem+json")
            response = try await client.execute(uri: uri, method: .post, headers: headers, body: ByteBuffer(repeating: UInt8(ascii: "a"), count: 70_000))
            #expect(response.status == .contentTooLarge)
            response = try await client.execute(uri: "/webhooks/twilio/not-a-tenant/status", method: .post, headers: headers, body: body)
            #expect(response.status == .notFound)
            response = try await client.execute(uri: "/webhooks/twilio/\(Identifier.v7())/status", method: .post, headers: headers, body: body)
            #expect(response.status == .notFound)
            // A malformed form, correctly signed over what the parser would see: 400 naming the field.
            response = try await client.execute(uri: uri, method: .post, headers: headers, body: ByteBuffer(string: "CallSid=CA1&From=%zz"))
            #expect(response.status == .badRequest)
            #expect(response.json["field"] as? String == "From")
            // Signed but missing CallStatus: 422 naming it.
            response = try await client.post(fixture.twilio("status", parameters.filter { $0.0 != "CallStatus" }))
            #expect(response.status == .unprocessableContent)
            #expect(response.json["field"] as? String == "CallStatus")
            response = try await client.post(fixture.twilio("status", parameters.map { $0.0 == "From" ? ("From", "12345") : $0 }))
            #expect(response.status == .unprocessableContent)
            #expect(response.json["field"] as? String == "From")
            // The tenant API.
            let auth: HTTPFields = [.authorization: "Bearer \(fixture.apiKey)", .contentType: "application/json"]
            response = try await client.execute(uri: "/v1/leads", method: .post, headers: auth, body: ByteBuffer(string: #"{"name":"Ann","#))
            #expect(response.status == .badRequest)
            response = try await client.execute(uri: "/v1/leads", method: .post, headers: auth, body: ByteBuffer(string: #"{"name":"Ann","phone":"+14155550100"}"#))
            #expect(response.status == .unprocessableContent)
            #expect(response.headers[.contentType] == "application/problem+json")
            #expect(response.json["field"] as? String == "body.intent")
            response = try await client.execute(uri: "/v1/leads", method: .post, headers: auth,
                                                body: ByteBuffer(string: #"{"name":"Ann","phone":"555","intent":"sales"}"#))
            #expect(response.status == .unprocessableContent)
            #expect(response.json["field"] as? String == "body.phone")
            var plain = auth
            plain[.contentType] = "text/plain"
            let response18 = try await client.execute(uri: "/v1/leads", method: .post, headers: plain, body: ByteBuffer(string: "{}"))
            #expect(response18.status == .unsupportedMediaType)
            response = try await client.execute(uri: "/v1/leads", method: .post, headers: [.contentType: "application/json"], body: ByteBuffer(string: "{}"))
            #expect(response.status == .unauthorized)
            #expect(response.headers[.wwwAuthenticate] == "Bearer")
            let forged = "vck_" + fixture.apiKey.dropFirst(4).prefix(16) + "_" + String(repeating: "A", count: 43)
            #expect(try await client.execute(uri: "/v1/leads", method: .post, headers: [.authorization: "Bearer \(forged)", .contentType: "application/json"],
                                             body: ByteBuffer(string: #"{"intent":"sales","name":"Ann"}"#)).status == .unauthorized)
        }
        #expect(try await fixture.commands().isEmpty)
        try await fixture.drop()
    }

    @Test func redisUnreachableAnswers503WithRetryAfter() async throws {
        // A Redis of this test's own, stopped mid-test: the shared one keeps serving the others.
        // Test ports stay apart by suite (runner Redis 20000–22999, this 23000–25999, `up` 28000–31999,
        // publisher Redis 12000–14999), away from the test clusters' bus ports (27101–27136) and the
        // ephemeral range (32768+): suites run in parallel in one process.
        let redis = RestartableRedis(ports: 23_000..<26_000, appendOnly: false)
        try await redis.start()
        let edgeFixture = try await EdgeFixture(redisURL: redis.url)
        try await edgeFixture.test { client in
            let ok = edgeFixture.statusCallback(callSid: "CA77777777777777777777777777777777", status: "ringing", sequence: 1)
            let response19 = try await client.post(edgeFixture.twilio("status", ok))
            #expect(response19.status == .ok)
            let response20 = try await client.execute(uri: "/ready", method: .get)
            #expect(response20.status == .ok)
            // Stop it the way an outage does: the server goes away (killed; the port refuses).
            try await redis.stop()
            let lost = edgeFixture.statusCallback(callSid: "CA77777777777777777777777777777777", status: "completed", sequence: 2)
            let response = try await client.post(edgeFixture.twilio("status", lost))
            #expect(response.status == .serviceUnavailable)
            #expect(response.headers[.retryAfter] == "5")
            let response21 = try await client.execute(uri: "/ready", method: .get)
            #expect(response21.status == .serviceUnavailable)
            let response22 = try await client.execute(uri: "/health", method: .get)
            #expect(response22.status == .ok)
        }
        try await edgeFixture.drop()
    }

    @Test func tenantAPIPublishesCommandsWithinItsRateLimit() async throws {
        let fixture = try await EdgeFixture(requestsPerSecond: 2)
        let auth: HTTPFields = [.authorization: "Bearer \(fixture.apiKey)", .contentType: "application/json"]
        try await fixture.test { client in
            var headers = auth
            headers[.idempotencyKey] = "lead-1"
            let body = #"{"name":"Ann Lee","phone":"+14155550100","email":"ann@example.com","intent":"appointment","notes":"Tuesday morning"}"#
            let first = try await client.execute(uri: "/v1/leads", method: .post, headers: headers, body: ByteBuffer(string: body))
            #expect(first.status == .accepted)
            #expect(first.json["duplicate"] as? Bool == false)
            let retry = try await client.execute(uri: "/v1/leads", method: .post, headers: headers, body: ByteBuffer(string: body))
            #expect(retry.status == .accepted)
            #expect(retry.json["duplicate"] as? Bool == true)
            #expect(retry.json["command_id"] as? String == first.json["command_id"] as? String)
            // Burst of 2 × 2 per second spent (two above, two more here): the next is limited.
            let contact = Identifier.v7()
            let response23 = try await client.execute(uri: "/v1/contacts/\(contact)", method: .put, headers: auth, body: ByteBuffer(string: #"{"email":"ann@example.com"}"#))
            #expect(response23.status == .accepted)
            let settings = #"{"greeting":"Hi, Acme Dental","intents":[{"intent":"appointment","phrases":["book","appointment"]}],"business_hours":{"time_zone":"UTC","openings":[{"day":"mon","opens":"09:00","closes":"17:00"}]}}"#
            let response24 = try await client.execute(uri: "/v1/settings", method: .put, headers: auth, body: ByteBuffer(string: settings))
            #expect(response24.status == .accepted, "\(response24.text)")
            let limited = try await client.execute(uri: "/v1/contacts/\(contact)", method: .put, headers: auth, body: ByteBuffer(string: #"{"name":"Ann"}"#))
            #expect(limited.status == .tooManyRequests)
            #expect(limited.headers[.retryAfter] == "1")
        }
        let types = try await fixture.commands().map(\.type).sorted()
        #expect(types == [ChangeSettings.type, CreateLead.type, UpdateContact.type].sorted())
        try await fixture.drop()
    }

    @Test func adminAPIProvisionsAndRotatesWithoutRevealingSecrets() async throws {
        let fixture = try await EdgeFixture()
        let admin: HTTPFields = [.authorization: "Bearer \(EdgeFixture.adminKey)", .contentType: "application/json"]
        let token = "twilio-token-\(UUID().uuidString)"
        try await fixture.test { client in
            let response25 = try await client.execute(uri: "/admin/tenants", method: .get, headers: [.authorization: "Bearer nope"])
            #expect(response25.status == .unauthorized)
            let created = try await client.execute(uri: "/admin/tenants", method: .post, headers: admin,
                                                   body: ByteBuffer(string: #"{"name":"Bright Plumbing","plan":"growth","time_zone":"America/Chicago","twilio_auth_token":"\#(token)"}"#))
            #expect(created.status == .created)
            let key = try #require(created.json["api_key"] as? String)
            let tenant = try #require((created.json["tenant_id"] as? String).flatMap(Identifier.init))
            #expect(created.json["announced"] as? Bool == true, "Redis answered: TenantProvisioned is on its stream")
            #expect((created.json["webhooks"] as? [String: String])?["twilio_status"] == "https://edge.example.com/webhooks/twilio/\(tenant)/status")
            #expect(!created.text.contains(token))
            let list = try await client.execute(uri: "/admin/tenants", method: .get, headers: admin)
            #expect(list.status == .ok)
            #expect(!list.text.contains(token) && !list.text.contains(key))
            #expect(list.text.contains("Bright Plumbing"))
            // The new key works; after rotation it does not, and the new one does.
            let lead = ByteBuffer(string: #"{"intent":"sales","name":"Bo","phone":"+14155550111"}"#)
            let response26 = try await client.execute(uri: "/v1/leads", method: .post, headers: [.authorization: "Bearer \(key)", .contentType: "application/json"], body: lead)
            #expect(response26.status == .accepted)
            let rotated = try await client.execute(uri: "/admin/tenants/\(tenant)/api-keys", method: .post, headers: admin)
            #expect(rotated.status == .created)
            let newKey = try #require(rotated.json["api_key"] as? String)
            let response27 = try await client.execute(uri: "/v1/leads", method: .post, headers: [.authorization: "Bearer \(key)", .contentType: "application/json"], body: lead)
            #expect(response27.status == .unauthorized)
            let response28 = try await client.execute(uri: "/v1/leads", method: .post, headers: [.authorization: "Bearer \(newKey)", .contentType: "application/json"], body: lead)
            #expect(response28.status == .accepted)
            let duplicate = try await client.execute(uri: "/admin/tenants", method: .post, headers: admin,
                                                     body: ByteBuffer(string: #"{"tenant_id":"\#(tenant)","name":"Again"}"#))
            #expect(duplicate.status == .conflict)
            let badZone = try await client.execute(uri: "/admin/tenants", method: .post, headers: admin, body: ByteBuffer(string: #"{"name":"X","time_zone":"Mars/Base"}"#))
            #expect(badZone.status == .unprocessableContent)
            #expect(badZone.json["field"] as? String == "body.time_zone")
        }
        // TenantProvisioned was published for both tenants (the fixture's and this one).
        var provisioned = 0
        for partition in 0..<fixture.naming.partitions {
            provisioned += try await fixture.redis.execute(.xrange(fixture.naming.stream(.tenants, kind: .event, partition: partition))).count
        }
        #expect(provisioned == 2)
        try await fixture.drop()
    }

    @Test func metricsCountRequestsSignatureFailuresAndDedupHits() async throws {
        let registry = PrometheusCollectorRegistry()
        let fixture = try await EdgeFixture(registry: registry)
        let parameters = fixture.statusCallback(callSid: "CA88888888888888888888888888888888", status: "ringing", sequence: 1)
        try await fixture.test { client in
            try await client.post(fixture.twilio("status", parameters))
            try await client.post(fixture.twilio("status", parameters))
            try await client.post(fixture.twilio("status", parameters, token: "forged"))
            let metrics = try await client.execute(uri: "/metrics", method: .get)
            #expect(metrics.status == .ok)
            let text = metrics.text
            #expect(text.contains(#"voicecore_edge_signature_failures_total{provider="twilio",reason="mismatch"} 1"#), "\(text)")
            #expect(text.contains(#"voicecore_edge_dedup_hits_total{source="twilio"} 1"#))
            #expect(text.contains(#"voicecore_edge_requests_total{route="/webhooks/twilio/{tenant}/status",method="POST",status="200"} 2"#))
            #expect(text.contains(#"voicecore_edge_requests_total{route="/webhooks/twilio/{tenant}/status",method="POST",status="403"} 1"#))
            #expect(text.contains("voicecore_edge_publish_duration_seconds_count 2"))
        }
        try await fixture.drop()
    }

    @Test func openAPIDocumentsEveryRoute() async throws {
        let document = try String(contentsOf: TestServers.root.appendingPathComponent("schemas/openapi.yaml"), encoding: .utf8)
        var documented: Set<String> = []
        var path: String?
        for line in document.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("  /"), line.hasSuffix(":") {
                path = String(line.dropFirst(2).dropLast())
            } else if !line.hasPrefix(" "), !line.isEmpty {
                path = nil
            } else if let path, line.hasPrefix("    "), !line.hasPrefix("     "), line.hasSuffix(":") {
                let method = line.trimmingCharacters(in: .whitespaces).dropLast().uppercased()
                if ["GET", "POST", "PUT", "PATCH", "DELETE"].contains(method) { documented.insert("\(method) \(path)") }
            }
        }
        // The routes the edge really serves (admin API on), as Hummingbird's router lists them;
        // the console's HTML pages (`/app`) are for browsers, not part of the API.
        let fixture = try await EdgeFixture()
        let routes = Set(fixture.edge.router().routes.map { "\($0.method) \($0.path)" }.filter { !$0.contains(" /app") })
        #expect(routes.count >= 14)
        for route in routes { #expect(documented.contains(route), "\(route) is missing from schemas/openapi.yaml") }
        for route in documented { #expect(routes.contains(route), "schemas/openapi.yaml documents \(route), which the edge does not serve") }
        try await fixture.drop()
    }

    /// The document is valid OpenAPI 3.1 by an independent validator (`openapi-spec-validator`
    /// from PyPI, installed by `tools/test`): a YAML slip such as an unquoted `: ` in a summary
    /// made it unreadable by every OpenAPI tool while the route test above still passed.
    @Test func openAPIDocumentIsValidOpenAPI() async throws {
        let document = TestServers.root.appendingPathComponent("schemas/openapi.yaml")
        // tools/test points VOICECORE_PYTHON at a venv holding openapi-spec-validator.
        let python = ProcessInfo.processInfo.environment["VOICECORE_PYTHON"] ?? "python3"
        let (status, output) = try await runProcess([python, "-m", "openapi_spec_validator", document.path])
        if output.contains("No module named openapi_spec_validator") {
            Issue.record("openapi-spec-validator is not installed: run the tests with `tools/test`, or `python3 -m pip install openapi-spec-validator`")
        }
        #expect(status == 0, "schemas/openapi.yaml is not valid OpenAPI:\n\(output)")
        #expect(output.contains("OK"), "\(output)")
    }
}
