import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import Testing
import VoiceCoreEvents
import VoiceCorePostgres
import VoiceCoreProjections
import VoiceCoreRedis
import VoiceCoreTenants
import VoiceCoreTime
@testable import VoiceCoreEdge

/// A value the platform cannot store is refused where it enters, naming the field, and nothing is
/// published; the limits are the ones Postgres holds the read models to.
@Suite("What the platform can store is checked at the edge", .serialized)
struct StorableInputTests {
    private static let maxIdentifier = "CA" + String(repeating: "a", count: Storable.identifierLength - 2)

    @Test func twilioValuesThePlatformCannotStoreAre400NamingTheFieldAndNothingIsPublished() async throws {
        let fixture = try await EdgeFixture()
        @Sendable func status(_ change: (inout [(String, String)]) -> Void) -> [(String, String)] {
            var parameters = fixture.statusCallback(callSid: "CA77777777777777777777777777777777", status: "ringing", sequence: 1)
            change(&parameters)
            return parameters
        }
        @Sendable func replacing(_ name: String, with value: String) -> [(String, String)] {
            status { parameters in parameters = parameters.map { $0.0 == name ? (name, value) : $0 } }
        }
        let transcription: [(String, String)] = [
            ("AccountSid", "AC00000000000000000000000000000001"), ("CallSid", "CA77777777777777777777777777777777"), ("TranscriptionSid", "GT1"),
            ("TranscriptionEvent", "transcription-content"), ("TranscriptionData", #"{"transcript":"Hello","confidence":0.9}"#),
            ("Track", "inbound_track"), ("Final", "true"), ("SequenceId", "1"),
        ]
        @Sendable func transcript(_ name: String, _ value: String) -> [(String, String)] {
            transcription.map { $0.0 == name ? (name, value) : $0 }
        }
        try await fixture.test { client in
            let refusals: [(parameters: [(String, String)], route: String, field: String)] = [
                (replacing("CallSid", with: "CA7777777777777777\u{0}7777777777777777"), "status", "CallSid"),
                (replacing("CallSid", with: Self.maxIdentifier + "a"), "status", "CallSid"),
                (replacing("CallSid", with: "CA77 77"), "status", "CallSid"),
                (status { $0.append(("CallerName", "Ann\u{0}")) }, "status", "CallerName"),
                (status { $0.append(("CallerName", "Ann\u{7}")) }, "status", "CallerName"),
                (status { $0.append(("Caller\u{0}Name", "Ann")) }, "status", "Caller\u{0}Name"),
                (status { $0.append(("CallDuration", "2147483648")) }, "status", "CallDuration"),
                (status { $0.append(("CallDuration", "99999999999999999999")) }, "status", "CallDuration"),
                (transcript("SequenceId", "2147483648"), "transcription", "SequenceId"),
                (transcript("TranscriptionSid", "GT\u{0}1"), "transcription", "TranscriptionSid"),
                (transcript("TranscriptionData", #"{"transcript":"Hel\u0000lo","confidence":0.9}"#), "transcription", "TranscriptionData"),
            ]
            for refusal in refusals {
                let response = try await client.post(fixture.twilio(refusal.route, refusal.parameters))
                #expect(response.status == .badRequest, "\(refusal.field): \(response.text)")
                #expect(response.headers[.contentType] == "application/problem+json")
                #expect(response.json["field"] as? String == refusal.field, "\(response.text)")
            }
            let nul = try await client.post(fixture.twilio("status", replacing("CallSid", with: "CA\u{0}1")))
            #expect((nul.json["detail"] as? String)?.contains("NUL") == true, "\(nul.text)")
        }
        #expect(try await fixture.commands().isEmpty)

        // At the limits, and free text with line breaks and tabs: published.
        try await fixture.test { client in
            let longest = try await client.post(fixture.twilio("status", status { parameters in
                parameters = parameters.map { $0.0 == "CallSid" ? ("CallSid", Self.maxIdentifier) : $0 }
                parameters.append(("CallDuration", "2147483647"))
                parameters.append(("CallerName", "Ann\tLee\r\n"))
            }))
            #expect(longest.status == .ok, "\(longest.text)")
            let segment = try await client.post(fixture.twilio("transcription", transcript("TranscriptionData", #"{"transcript":"Line one\nline\ttwo","confidence":0.9}"#)
                .map { $0.0 == "SequenceId" ? ("SequenceId", "2147483647") : $0 }))
            #expect(segment.status == .ok, "\(segment.text)")
        }
        let commands = try await fixture.commands()
        #expect(commands.count == 2)
        let report = try #require(commands.first { $0.type == ReportCallProgress.type })
        let payload = (try JSONSerialization.jsonObject(with: Data(report.data))) as? [String: Any] ?? [:]
        #expect(payload["provider_call_id"] as? String == Self.maxIdentifier)
        #expect(payload["duration_seconds"] as? Int == 2_147_483_647)
        try await fixture.drop()
    }

    @Test func telnyxValuesThePlatformCannotStoreAre400NamingTheField() async throws {
        let fixture = try await EdgeFixture()
        @Sendable func body(_ id: String, _ type: String, callControlID: String = "v3:cc1", occurredAt: String = "2026-11-24T10:00:00.123456Z", extra: String = "") -> String {
            #"{"data":{"event_type":"\#(type)","id":"\#(id)","occurred_at":"\#(occurredAt)","record_type":"event","payload":{"call_control_id":"\#(callControlID)","connection_id":"c1","from":"+14155550100","to":"+14155550199","direction":"incoming"\#(extra)}}}"#
        }
        try await fixture.test { client in
            let refusals: [(body: String, field: String)] = [
                (body("t1", "call.initiated", callControlID: #"v3:\u0000cc"#), "data.payload.call_control_id"),
                (body("t2", "call.initiated", callControlID: "v3:" + String(repeating: "c", count: Storable.identifierLength)), "data.payload.call_control_id"),
                (body("t3\\u0000", "call.initiated"), "data.id"),
                (body("t4", "call.initiated", extra: #","client_state":"a\u0001b""#), "data.payload.client_state"),
                (body("t5", "call.hangup", extra: #","start_time":"0001-01-01T00:00:00Z","end_time":"9999-01-01T00:00:00Z""#), "data.payload.end_time"),
                (body("t6", "call.transcription", extra: #","transcription_data":{"transcript":"a\u0000b","is_final":true}"#), "data.payload.transcription_data.transcript"),
            ]
            for refusal in refusals {
                let response = try await client.post(try fixture.telnyx(refusal.body))
                #expect(response.status == .badRequest, "\(refusal.field): \(response.text)")
                #expect(response.json["field"] as? String == refusal.field, "\(response.text)")
            }
        }
        #expect(try await fixture.commands().isEmpty)
        try await fixture.test { client in
            let segment = try await client.post(try fixture.telnyx(body("t7", "call.transcription",
                                                                        extra: #","transcription_data":{"transcript":"Hello\nthere","is_final":true}"#)))
            #expect(segment.status == .ok, "\(segment.text)")
        }
        let segment = try #require(try await fixture.commands().first)
        let payload = (try JSONSerialization.jsonObject(with: Data(segment.data))) as? [String: Any] ?? [:]
        // Telnyx numbers no segment: the sequence comes from occurred_at and fits the transcripts' integer.
        let sequence = try #require(payload["sequence"] as? Int)
        #expect((0...Storable.integerMaximum).contains(sequence))
        try await fixture.drop()
    }

    @Test func tenantAPIValuesThePlatformCannotStoreAre422NamingTheField() async throws {
        let fixture = try await EdgeFixture()
        let auth: HTTPFields = [.authorization: "Bearer \(fixture.apiKey)", .contentType: "application/json"]
        let longEmail = String(repeating: "a", count: 250) + "@b.co"
        try await fixture.test { client in
            let refusals: [(uri: String, method: HTTPRequest.Method, body: String, field: String)] = [
                ("/v1/leads", .post, #"{"intent":"sales","name":"Ann\u0000"}"#, "body.name"),
                ("/v1/leads", .post, #"{"intent":"sales","name":"Ann\nLee"}"#, "body.name"),
                ("/v1/leads", .post, #"{"intent":"sales","name":"Ann","notes":"call\u0007back"}"#, "body.notes"),
                ("/v1/leads", .post, #"{"intent":"sales","email":"\#(longEmail)"}"#, "body.email"),
                ("/v1/contacts/\(Identifier.v7())", .put, #"{"name":"\u0000"}"#, "body.name"),
                ("/v1/settings", .put, #"{"greeting":"Hi\u0000","intents":[],"business_hours":{"time_zone":"UTC","openings":[]}}"#, "body.settings.greeting"),
                ("/v1/settings", .put, #"{"greeting":"Hi","intents":[],"business_hours":{"time_zone":"Mars/Olympus_Mons","openings":[]}}"#,
                 "body.settings.business_hours.time_zone"),
            ]
            for refusal in refusals {
                let response = try await client.execute(uri: refusal.uri, method: refusal.method, headers: auth, body: ByteBuffer(string: refusal.body))
                #expect(response.status == .unprocessableContent, "\(refusal.field): \(response.text)")
                #expect(response.json["field"] as? String == refusal.field, "\(response.text)")
            }
            var longKey = auth
            longKey[.idempotencyKey] = String(repeating: "k", count: Storable.lineLength + 1)
            let ignored = try await client.execute(uri: "/v1/leads", method: .post, headers: longKey, body: ByteBuffer(string: #"{"intent":"sales","name":"Ann"}"#))
            #expect(ignored.status == .badRequest)
            #expect(ignored.json["field"] as? String == "Idempotency-Key")
        }
        #expect(try await fixture.commands().isEmpty)
        try await fixture.test { client in
            let accepted = try await client.execute(uri: "/v1/leads", method: .post, headers: auth,
                                                    body: ByteBuffer(string: #"{"intent":"sales","name":"Ann","notes":"Line one\nline\ttwo"}"#))
            #expect(accepted.status == .accepted, "\(accepted.text)")
        }
        #expect(try await fixture.commands().count == 1)
        try await fixture.drop()
    }

    @Test func adminValuesOutOfRangeAre422NeverAnOutage() async throws {
        let fixture = try await EdgeFixture()
        let admin: HTTPFields = [.authorization: "Bearer \(EdgeFixture.adminKey)", .contentType: "application/json"]
        try await fixture.test { client in
            let refusals: [(uri: String, method: HTTPRequest.Method, body: String, field: String)] = [
                ("/admin/tenants", .post, #"{"name":"Huge","requests_per_second":40816548636182080}"#, "body.requests_per_second"),
                ("/admin/tenants", .post, #"{"name":"Huge","requests_per_second":2147483648}"#, "body.requests_per_second"),
                ("/admin/tenants", .post, #"{"name":"Zero","requests_per_second":0}"#, "body.requests_per_second"),
                ("/admin/tenants", .post, #"{"name":"Nul\u0000"}"#, "body.name"),
                ("/admin/tenants", .post, #"{"name":"Sid","twilio_account_sid":"AC\u0000"}"#, "body.twilio_account_sid"),
                ("/admin/tenants", .post, #"{"name":"Token","twilio_auth_token":"\#(String(repeating: "t", count: Storable.identifierLength + 1))"}"#, "body.twilio_auth_token"),
                ("/admin/tenants/\(fixture.tenant)", .patch, #"{"requests_per_second":40816548636182080}"#, "body.requests_per_second"),
            ]
            for refusal in refusals {
                let response = try await client.execute(uri: refusal.uri, method: refusal.method, headers: admin, body: ByteBuffer(string: refusal.body))
                #expect(response.status == .unprocessableContent, "\(refusal.field): \(response.text)")
                #expect(response.json["field"] as? String == refusal.field, "\(response.text)")
            }
            let list = try await client.execute(uri: "/admin/tenants", method: .get, headers: admin)
            #expect((list.json["tenants"] as? [Any])?.count == 1)
            // The largest rate Postgres stores is accepted.
            let largest = try await client.execute(uri: "/admin/tenants/\(fixture.tenant)", method: .patch, headers: admin,
                                                   body: ByteBuffer(string: #"{"requests_per_second":2147483647}"#))
            #expect(largest.status == .noContent, "\(largest.text)")
        }
        let summary = try #require(try await fixture.directory.summary(of: fixture.tenant))
        #expect(summary.requestsPerSecond == 2_147_483_647)
        try await fixture.drop()
    }

    /// Whatever still reaches Postgres and is refused there is the request's fault, not an outage.
    @Test func aValuePostgresRefusesIs422AndAnOutageIs503() async throws {
        let router = Router(context: BasicRequestContext.self)
        router.add(middleware: UnexpectedErrorMiddleware(logger: Logger(label: "test")))
        router.post("/refused") { _, _ -> Response in
            throw PostgresError(code: .server, message: "value \"40816548636182080\" is out of range for type integer", sqlState: "22003")
        }
        router.post("/constraint") { _, _ -> Response in
            throw PostgresError(code: .server, message: "new row violates check constraint", sqlState: "23514")
        }
        router.post("/down") { _, _ -> Response in
            throw PostgresError(code: .connectionClosed, message: "the connection is closed")
        }
        let app = Application(router: router)
        try await app.test(.router) { client in
            let refused = try await client.execute(uri: "/refused", method: .post)
            #expect(refused.status == .unprocessableContent)
            #expect(refused.headers[.retryAfter] == nil)
            #expect(refused.headers[.contentType] == "application/problem+json")
            #expect(try await client.execute(uri: "/constraint", method: .post).status == .unprocessableContent)
            let down = try await client.execute(uri: "/down", method: .post)
            #expect(down.status == .serviceUnavailable)
            #expect(down.headers[.retryAfter] == "5")
        }
    }

    /// The proof that the limits are the storage's: what the edge accepts at each limit is stored
    /// by the projections, and the first value past a limit Postgres holds is refused there with
    /// the SQLSTATE the calls projection met (22021, 22003) — and by ``Storable`` first.
    @Test func theEdgesLimitsAreWhatThePostgresReadModelsStore() async throws {
        let fixture = try await EdgeFixture()
        let tenant = fixture.tenant
        var entry: UInt64 = 1
        func project(_ projection: some Projection, _ messages: [any Message]) async throws {
            var events: [ProjectedEvent] = []
            for message in messages {
                let envelope = envelope(of: message, tenant: tenant)
                events.append(ProjectedEvent(stream: "test", entryID: StreamEntryID(milliseconds: entry), envelope: envelope, message: message))
                entry += 1
            }
            let batch = events
            try await fixture.db.withConnection { db in try db.withTransaction { db in try projection.apply(batch, in: db) } }
        }
        func sqlState(_ body: () async throws -> Void) async -> String? {
            do {
                try await body()
                return nil
            } catch let error as PostgresError {
                return error.sqlState
            } catch {
                return "\(error)"
            }
        }
        let now = Timestamp.now

        // A call at every limit: the longest provider id, the longest duration.
        let call = Identifier.v7()
        try await project(CallsProjection(), [
            CallStarted(callID: call, provider: .twilio, providerCallID: Self.maxIdentifier, direction: .inbound, from: "+14155550100", to: "+14155550199", startedAt: now),
            CallEnded(callID: call, endedAt: now, status: .completed, durationSeconds: Storable.integerMaximum, answered: true),
        ])
        let rows = try await fixture.db.query("SELECT provider_call_id, duration_seconds FROM call_sessions WHERE call_id = \(call)")
        let row = try #require(rows.first)
        #expect(try row.decode(String.self, "provider_call_id") == Self.maxIdentifier)
        #expect(try row.decode(Int.self, "duration_seconds") == Storable.integerMaximum)

        // A NUL: what the calls projection met (22021), refused by Storable first.
        let nulSid = "CA\u{0}1"
        #expect(throws: MessageDecodingError.self) { try Storable.check(nulSid, "CallSid", as: .identifier) }
        let nulState = await sqlState {
            try await project(CallsProjection(), [CallStarted(callID: .v7(), provider: .twilio, providerCallID: nulSid, direction: .inbound,
                                                              from: "+14155550100", to: "+14155550199", startedAt: now)])
        }
        #expect(nulState == "22021")

        // One second past the longest duration: 22003, refused by Storable first.
        #expect(throws: MessageDecodingError.self) { try Storable.check(Storable.integerMaximum + 1, "CallDuration") }
        let durationState = await sqlState {
            try await project(CallsProjection(), [CallEnded(callID: .v7(), endedAt: now, status: .completed, durationSeconds: Storable.integerMaximum + 1, answered: true)])
        }
        #expect(durationState == "22003")

        // Transcript sequences: the largest is stored, one more is refused; a Telnyx segment's fits.
        let telnyx = try TelnyxMapping.parse(Array(#"{"data":{"event_type":"call.transcription","id":"t1","occurred_at":"2026-11-24T10:00:00.123456Z","payload":{"call_control_id":"v3:cc","transcription_data":{"transcript":"Hi","is_final":true}}}}"#.utf8))
        guard case .segment(let segment) = try TelnyxMapping.command(telnyx, tenant: tenant) else { Issue.record("no segment"); return }
        try await project(TranscriptsProjection(), [
            TranscriptChunk(callID: call, sequence: Storable.integerMaximum, track: .inbound, text: "last", isFinal: true, confidence: 0.9, startOffsetMs: 0, endOffsetMs: 0),
            TranscriptChunk(callID: call, sequence: segment.sequence, track: .outbound, text: "Hi", isFinal: true, confidence: 0.9, startOffsetMs: 0, endOffsetMs: 0),
        ])
        let stored = try await fixture.db.query("SELECT count(*) AS n FROM transcripts WHERE call_id = \(call)")
        #expect(try stored.first?.decode(Int.self, "n") == 2)
        #expect(throws: MessageDecodingError.self) { try Storable.check(Storable.integerMaximum + 1, "SequenceId") }
        let sequenceState = await sqlState {
            try await project(TranscriptsProjection(), [TranscriptChunk(callID: call, sequence: Storable.integerMaximum + 1, track: .inbound, text: "past",
                                                                        isFinal: true, confidence: 0.9, startOffsetMs: 0, endOffsetMs: 0)])
        }
        #expect(sequenceState == "22003")
        try await fixture.drop()
    }
}

private func envelope(of message: any Message, tenant: Identifier) -> EventEnvelope {
    func wrap<M: Message>(_ message: M) -> EventEnvelope { EventEnvelope(message, tenant: tenant, source: "/test") }
    return wrap(message)
}
