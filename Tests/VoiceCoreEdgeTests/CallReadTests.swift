import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Testing
import VoiceCoreBus
import VoiceCoreEvents
import VoiceCorePostgres
import VoiceCoreProjections
import VoiceCoreQueries
import VoiceCoreRedis
import VoiceCoreTenants
import VoiceCoreTime
@testable import VoiceCoreEdge

/// Calls of the fixture's tenant (and one of another tenant), put into the read models by the
/// real projections from real events, and what the tests expect of them.
struct SeededCalls {
    struct Call {
        let id: Identifier
        let start: Timestamp?
        let status: String
        let direction: CallDirection
        let from: String
        let to: String
        let intent: Intent?
    }

    let base = Timestamp(year: 2026, month: 12, day: 1, hour: 9, minute: 0, second: 0) ?? .now
    var calls: [Call] = []
    /// The call with everything: transcript of both tracks, intent, summary, lead, interaction, usage.
    var rich = Identifier(UUID())
    /// A call of another tenant, with the same numbers.
    var foreign = Identifier(UUID())
    let other = Identifier(UUID())

    /// The time `minute` minutes after the first call's start.
    func at(_ minute: Int) -> Timestamp { base.adding(microseconds: Int64(minute) * 60_000_000) }

    /// Calls in the order the list must give them: newest start first, ties by id descending,
    /// calls without a start last.
    var newestFirst: [Call] {
        calls.sorted { a, b in
            let ka = a.start?.microsecondsSinceEpoch ?? .min, kb = b.start?.microsecondsSinceEpoch ?? .min
            return ka != kb ? ka > kb : a.id.description > b.id.description
        }
    }

    init(fixture: EdgeFixture) async throws {
        let tenant = fixture.tenant
        var messages: [(Identifier, any Message)] = []
        func call(_ index: Int, minute: Int?, status: CallEnded.FinalStatus?, direction: CallDirection = .inbound,
                  from: String = "+14155550100", to: String = "+14155550199", intent: Intent? = nil) -> Identifier {
            let id = Identifier(UUID())
            let start = minute.map { base.adding(microseconds: Int64($0) * 60_000_000) }
            if let start {
                messages.append((tenant, CallStarted(callID: id, provider: .twilio, providerCallID: "CA\(index)", direction: direction, from: from, to: to, startedAt: start)))
            }
            let end = (start ?? base).adding(microseconds: 30_000_000)
            if status == .completed { messages.append((tenant, CallAnswered(callID: id, answeredAt: (start ?? base).adding(microseconds: 2_000_000)))) }
            if let status {
                messages.append((tenant, CallEnded(callID: id, endedAt: end, status: status, durationSeconds: 28, answered: status == .completed, hungUpBy: .caller)))
            }
            if let intent {
                messages.append((tenant, IntentDetected(callID: id, intent: intent, confidence: 0.8, sourceSequence: 0, detectedAt: end)))
            }
            calls.append(Call(id: id, start: start, status: status?.rawValue ?? "initiated", direction: direction, from: from, to: to, intent: intent))
            return id
        }
        _ = call(0, minute: 0, status: .completed, intent: .sales)
        _ = call(1, minute: 5, status: .noAnswer)
        _ = call(2, minute: 10, status: .completed, direction: .outbound, from: "+14155550199", to: "+442071838750", intent: .support)
        _ = call(3, minute: 10, status: .busy)                       // the same start as 2: the id decides
        _ = call(4, minute: 20, status: .completed, from: "+442071838750", intent: .appointment)
        _ = call(5, minute: 30, status: nil)                          // still running
        _ = call(6, minute: 40, status: .noAnswer, direction: .outbound, to: "+14155550123")
        _ = call(7, minute: 50, status: .completed, intent: .appointment)
        _ = call(8, minute: nil, status: .completed)                  // its CallStarted is not projected
        rich = call(9, minute: 60, status: .completed, from: "+14155550111", intent: .appointment)
        // Both tracks, arriving out of order: the detail interleaves them as spoken.
        let lines: [(TranscriptTrack, Int, String, Int)] = [
            (.outbound, 1, "We have 3 pm free.", 4000), (.inbound, 0, "Hi, I'd like to book a cleaning.", 500),
            (.outbound, 0, "Sure, which day?", 2000), (.inbound, 1, "Tuesday please.", 3000), (.inbound, 2, "Great, thanks!", 6000),
        ]
        for (track, sequence, text, offset) in lines {
            messages.append((tenant, TranscriptChunk(callID: rich, sequence: sequence, track: track, text: text, isFinal: true, confidence: 0.9,
                                                     startOffsetMs: offset, endOffsetMs: offset + 900, language: "en-US")))
        }
        let end = base.adding(microseconds: 60 * 60_000_000 + 30_000_000)
        messages.append((tenant, CallSummarized(callID: rich, summary: "Caller booked a cleaning for Tuesday 3 pm.",
                                                keySentences: ["Hi, I'd like to book a cleaning."], sentiment: .positive, sentimentScore: 0.6,
                                                wordCount: 21, summarizedAt: end)))
        let contact = Identifier(UUID())
        messages.append((tenant, LeadCreated(leadID: Identifier(UUID()), callID: rich, name: "Ada Lovelace", phone: "+14155550111",
                                             intent: .appointment, source: .call, createdAt: end)))
        messages.append((tenant, InteractionLogged(interactionID: Identifier(UUID()), contactID: contact, callID: rich, channel: .call,
                                                   summary: "Inbound call, completed, 28 s", durationSeconds: 28, occurredAt: end)))
        for meter in [UsageRecorded.Meter.callMinutes, .aiRequests] {
            messages.append((tenant, UsageRecorded(meter: meter, quantity: 1, callID: rich, sourceEventID: Identifier(UUID()),
                                                   sourceEventType: CallEnded.type, occurredAt: end)))
        }
        // The receptionist's conversation on the rich call, answered out of order, and what came of it.
        for (turn, text, action) in [(2, "Which day suits you?", ReceptionistAction.continue), (1, "Bright Smiles, how can I help?", .continue),
                                     (3, "Tuesday at 3 pm is noted. Goodbye!", .hangup)] {
            messages.append((tenant, ReceptionistReplied(callID: rich, provider: .twilio, providerCallID: "CA9", turn: turn, channel: .gather,
                                                         heard: turn == 1 ? "" : "Tuesday please", text: text, action: action,
                                                         slots: turn == 3 ? ["job": "appointment", "preferred_time": "Tuesday 3 pm"] : [:],
                                                         intent: turn == 1 ? nil : .appointment, decidedBy: turn == 2 ? .model : .builtIn,
                                                         repliedAt: base.adding(microseconds: 60 * 60_000_000 + Int64(turn) * 5_000_000))))
        }
        let turnTime = base.adding(microseconds: 60 * 60_000_000 + 16_000_000)
        messages.append((tenant, AppointmentRequested(callID: rich, name: "Ada Lovelace", phone: "+14155550111", preferredTime: "Tuesday 3 pm",
                                                      reason: "a cleaning", turn: 3, requestedAt: turnTime)))
        messages.append((tenant, MessageTaken(callID: rich, name: nil, phone: "+14155550111", message: "Please confirm by text", turn: 3,
                                              takenAt: turnTime.adding(microseconds: 1_000_000))))
        messages.append((tenant, CallTransferred(callID: rich, to: "+14155550199", reason: nil, turn: 3, transferredAt: turnTime.adding(microseconds: 2_000_000))))
        messages.append((tenant, VoicemailRecorded(callID: rich, recordingID: "RE9", recordingURL: nil, durationSeconds: 12,
                                                   recordedAt: turnTime.adding(microseconds: 3_000_000))))
        foreign = Identifier(UUID())
        // Another tenant's turn and outcome on a call of the rich call's id: never shown with it.
        messages.append((other, ReceptionistReplied(callID: rich, provider: .twilio, providerCallID: "CAX", turn: 1, channel: .relay, heard: "hi",
                                                    text: "Other Dental, hello", action: .continue, decidedBy: .builtIn, repliedAt: end)))
        messages.append((other, VoicemailRecorded(callID: rich, recordingID: "REX", recordingURL: nil, durationSeconds: 1, recordedAt: end)))
        messages.append((other, CallStarted(callID: foreign, provider: .twilio, providerCallID: "CAX", direction: .inbound,
                                            from: "+14155550100", to: "+14155550199", startedAt: base.adding(microseconds: 90 * 60_000_000))))
        try await Self.project(messages, into: fixture.db)
    }

    /// Applies the events with the projections the platform runs, in one transaction.
    static func project(_ messages: [(Identifier, any Message)], into db: PostgresConnection) async throws {
        let events = messages.enumerated().map { index, pair in
            let (tenant, message) = pair
            return ProjectedEvent(stream: "test", entryID: StreamEntryID(milliseconds: UInt64(index + 1)),
                                  envelope: EventEnvelope(message, tenant: tenant, source: "/test"), message: message)
        }
        try await db.withTransaction { db in
            let projections: [any Projection] = [CallsProjection(), TranscriptsProjection(), ConversationsProjection(), CRMProjection(),
                                                 AnalyticsProjection(), BillingProjection()]
            for projection in projections {
                try projection.apply(events.filter { projection.eventTypes?.contains($0.envelope.type) ?? true }, in: db)
            }
        }
    }
}

@Suite("Read API: calls", .serialized)
struct CallReadTests {
    static func bearer(_ key: String) -> HTTPFields { [.authorization: "Bearer \(key)"] }

    /// Every item of every page of `query`, following `next_cursor`, and the pages' sizes.
    static func allPages(_ client: any TestClientProtocol, _ query: String, key: String, base: String = "/v1/calls") async throws -> (ids: [String], pages: [Int]) {
        var ids: [String] = [], pages: [Int] = []
        var cursor: String?
        repeat {
            let separator = query.isEmpty ? "" : "&"
            let uri = base + "?" + query + (cursor.map { separator + "cursor=\($0)" } ?? "")
            let response = try await client.execute(uri: uri, method: .get, headers: bearer(key))
            #expect(response.status == .ok, "\(uri): \(response.text)")
            guard response.status == .ok else { break }
            let items = response.json["items"] as? [[String: Any]] ?? []
            ids += items.compactMap { $0["call_id"] as? String }
            pages.append(items.count)
            cursor = response.json["next_cursor"] as? String
        } while cursor != nil && pages.count < 50
        return (ids, pages)
    }

    @Test func listsNewestFirstAcrossPagesWithoutGapsOrDuplicates() async throws {
        let fixture = try await EdgeFixture()
        let seeded = try await SeededCalls(fixture: fixture)
        try await fixture.test { client in
            let expected = seeded.newestFirst.map(\.id.description)
            let paged = try await Self.allPages(client, "limit=3", key: fixture.apiKey)
            #expect(paged.ids == expected, "every call once, newest first, the unstarted one last")
            #expect(paged.pages == [3, 3, 3, 1])
            #expect(expected.last == seeded.calls[8].id.description, "a call whose start is not projected sorts last")

            // One page of everything, checked field by field against the events.
            let response = try await client.execute(uri: "/v1/calls", method: .get, headers: Self.bearer(fixture.apiKey))
            #expect(response.headers[.contentType] == "application/json")
            let items = response.json["items"] as? [[String: Any]] ?? []
            #expect(items.count == 10)
            #expect(response.json.keys.contains("next_cursor") && response.json["next_cursor"] is NSNull)
            let rich = items.first { $0["call_id"] as? String == seeded.rich.description } ?? [:]
            #expect(rich["from"] as? String == "+14155550111" && rich["to"] as? String == "+14155550199")
            #expect(rich["status"] as? String == "completed" && rich["end_status"] as? String == "completed")
            #expect(rich["intent"] as? String == "appointment" && rich["sentiment"] as? String == "positive" && rich["outcome"] as? String == "completed")
            #expect(rich["has_lead"] as? Bool == true && rich["duration_seconds"] as? Int == 28 && rich["hung_up_by"] as? String == "caller")
            #expect((rich["started_at"] as? String).flatMap(Timestamp.init(rfc3339:)) == seeded.base.adding(microseconds: 60 * 60_000_000))
            let running = items.first { $0["call_id"] as? String == seeded.calls[5].id.description } ?? [:]
            #expect(running["status"] as? String == "initiated" && running["ended_at"] is NSNull && running["end_status"] is NSNull)
            #expect(running["intent"] is NSNull && running["has_lead"] as? Bool == false, "absent values are null, not omitted")
            let unstarted = items.last ?? [:]
            #expect(unstarted["started_at"] is NSNull && unstarted["from"] is NSNull)
            #expect(!items.contains { $0["call_id"] as? String == seeded.foreign.description }, "another tenant's call is not listed")
        }
        try await fixture.drop()
    }

    /// Pages through `query` (two calls a page) and expects the seeded calls `keep` selects, in order.
    static func expectFilter(_ query: String, _ seeded: SeededCalls, key: String, client: any TestClientProtocol,
                             _ keep: (SeededCalls.Call) -> Bool) async throws {
        let paged = try await allPages(client, query + "&limit=2", key: key)
        let wanted = seeded.newestFirst.filter(keep).map(\.id.description)
        #expect(!wanted.isEmpty || query.contains("intent=billing"), "\(query) selects something")
        #expect(paged.ids == wanted, "\(query)")
    }

    @Test func filtersSelectTheCallsTheyName() async throws {
        let fixture = try await EdgeFixture()
        let seeded = try await SeededCalls(fixture: fixture)
        let key = fixture.apiKey
        try await fixture.test { client in
            func check(_ query: String, _ keep: (SeededCalls.Call) -> Bool) async throws {
                try await Self.expectFilter(query, seeded, key: key, client: client, keep)
            }
            try await check("status=no-answer") { $0.status == "no-answer" }
            try await check("status=initiated") { $0.status == "initiated" }
            try await check("direction=outbound") { $0.direction == .outbound && $0.start != nil }
            try await check("intent=appointment") { $0.intent == .appointment }
            try await check("intent=billing") { $0.intent == .billing }
            // Caller or callee; `%2B` is the +, and a + sent raw (a space) is taken as one too.
            try await check("number=%2B442071838750") { $0.start != nil && ($0.from == "+442071838750" || $0.to == "+442071838750") }
            try await check("number=+14155550123") { $0.start != nil && ($0.from == "+14155550123" || $0.to == "+14155550123") }
            // from inclusive, to exclusive, on the start.
            try await check("from=\(seeded.at(10).rfc3339)&to=\(seeded.at(40).rfc3339)") { ($0.start.map { $0 >= seeded.at(10) && $0 < seeded.at(40) }) ?? false }
            try await check("from=2026-12-01T10:10:00%2B01:00") { ($0.start.map { $0 >= seeded.at(10) }) ?? false }
            try await check("status=completed&intent=appointment&direction=inbound&to=\(seeded.at(55).rfc3339)") {
                $0.status == "completed" && $0.intent == .appointment && $0.direction == .inbound && ($0.start.map { $0 < seeded.at(55) } ?? false)
            }
        }
        try await fixture.drop()
    }

    @Test func detailIsTheWholeCallWithItsTranscriptInOrder() async throws {
        let fixture = try await EdgeFixture()
        let seeded = try await SeededCalls(fixture: fixture)
        try await fixture.test { client in
            let response = try await client.execute(uri: "/v1/calls/\(seeded.rich)", method: .get, headers: Self.bearer(fixture.apiKey))
            #expect(response.status == .ok, "\(response.text)")
            let call = response.json
            #expect(call["call_id"] as? String == seeded.rich.description && call["provider"] as? String == "twilio")
            #expect(call["provider_call_id"] as? String == "CA9" && call["direction"] as? String == "inbound")
            let transcript = call["transcript"] as? [[String: Any]] ?? []
            #expect(transcript.map { "\($0["track"] ?? "") \($0["sequence"] ?? "")" } == ["inbound 0", "outbound 0", "inbound 1", "outbound 1", "inbound 2"],
                    "both tracks, as spoken")
            #expect(transcript.first?["text"] as? String == "Hi, I'd like to book a cleaning." && transcript.first?["language"] as? String == "en-US")
            let analytics = call["analytics"] as? [String: Any] ?? [:]
            #expect(analytics["intent"] as? String == "appointment" && analytics["sentiment"] as? String == "positive" && analytics["word_count"] as? Int == 21)
            let summary = call["summary"] as? [String: Any] ?? [:]
            #expect(summary["text"] as? String == "Caller booked a cleaning for Tuesday 3 pm.")
            #expect(summary["key_sentences"] as? [String] == ["Hi, I'd like to book a cleaning."])
            let lead = call["lead"] as? [String: Any] ?? [:]
            #expect(lead["name"] as? String == "Ada Lovelace" && lead["source"] as? String == "call" && lead["phone"] as? String == "+14155550111")
            let interaction = call["interaction"] as? [String: Any] ?? [:]
            #expect(lead["call_id"] as? String == seeded.rich.description && interaction["call_id"] as? String == seeded.rich.description)
            #expect(interaction["channel"] as? String == "call" && interaction["summary"] as? String == "Inbound call, completed, 28 s")
            let usage = call["usage_items"] as? [[String: Any]] ?? []
            #expect(Set(usage.compactMap { $0["meter"] as? String }) == ["call_minutes", "ai_requests"])
            #expect(call["has_lead"] as? Bool == true)

            // A bare call: the parts it lacks are null or empty, never missing.
            let bare = try await client.execute(uri: "/v1/calls/\(seeded.calls[5].id)", method: .get, headers: Self.bearer(fixture.apiKey))
            #expect(bare.status == .ok)
            #expect(bare.json["analytics"] is NSNull && bare.json["summary"] is NSNull && bare.json["lead"] is NSNull && bare.json["interaction"] is NSNull)
            #expect((bare.json["transcript"] as? [Any])?.isEmpty == true && (bare.json["usage_items"] as? [Any])?.isEmpty == true)
            #expect((bare.json["turns"] as? [Any])?.isEmpty == true && (bare.json["outcomes"] as? [Any])?.isEmpty == true)

            // Another tenant's call, an unknown one and a malformed id: the same 404, no hint.
            for id in [seeded.foreign.description, UUID().uuidString, "not-a-uuid"] {
                let missing = try await client.execute(uri: "/v1/calls/\(id)", method: .get, headers: Self.bearer(fixture.apiKey))
                #expect(missing.status == .notFound, "\(id)")
                #expect(missing.headers[.contentType] == "application/problem+json")
                #expect(missing.json["detail"] as? String == "no call with this id")
            }
            let unauthorized = try await client.execute(uri: "/v1/calls/\(seeded.rich)", method: .get, headers: Self.bearer("vck_nope"))
            #expect(unauthorized.status == .unauthorized)
        }
        try await fixture.drop()
    }

    @Test("the detail carries the receptionist's turns in order and what came of the call, of the tenant's own call only")
    func detailCarriesTheConversation() async throws {
        let fixture = try await EdgeFixture()
        let seeded = try await SeededCalls(fixture: fixture)
        _ = try await fixture.directory.provision(NewTenant(id: seeded.other, name: "Other Dental"), publisher: fixture.publisher)
        try await fixture.test { client in
            let response = try await client.execute(uri: "/v1/calls/\(seeded.rich)", method: .get, headers: Self.bearer(fixture.apiKey))
            #expect(response.status == .ok, "\(response.text)")
            let turns = response.json["turns"] as? [[String: Any]] ?? []
            #expect(turns.map { $0["turn"] as? Int } == [1, 2, 3], "in turn order, the tenant's own only")
            #expect(turns.map { $0["reply"] as? String } == ["Bright Smiles, how can I help?", "Which day suits you?", "Tuesday at 3 pm is noted. Goodbye!"])
            let last = turns.last ?? [:]
            #expect(last["action"] as? String == "hangup" && last["decided_by"] as? String == "built-in" && last["channel"] as? String == "gather")
            #expect(last["slots"] as? [String: String] == ["job": "appointment", "preferred_time": "Tuesday 3 pm"] && last["heard"] as? String == "Tuesday please")
            #expect(last["intent"] as? String == "appointment" && last["transfer_to"] is NSNull)
            #expect(turns.first?["intent"] is NSNull && turns.first?["heard"] as? String == "" && turns.first?["slots"] as? [String: String] == [:])
            #expect(turns[1]["decided_by"] as? String == "model")

            let outcomes = response.json["outcomes"] as? [[String: Any]] ?? []
            #expect(outcomes.map { $0["kind"] as? String } == ["appointment", "message", "transfer", "voicemail"], "oldest first, the tenant's own only")
            let appointment = outcomes.first?["details"] as? [String: Any] ?? [:]
            #expect(appointment["name"] as? String == "Ada Lovelace" && appointment["preferred_time"] as? String == "Tuesday 3 pm")
            #expect(appointment["reason"] as? String == "a cleaning" && outcomes.first?["turn"] as? Int == 3)
            let message = outcomes.count > 1 ? outcomes[1]["details"] as? [String: Any] ?? [:] : [:]
            #expect(message["message"] as? String == "Please confirm by text" && message["name"] is NSNull)
            let voicemail = outcomes.last ?? [:]
            #expect(voicemail["turn"] is NSNull && (voicemail["details"] as? [String: Any])?["recording_id"] as? String == "RE9")
            #expect((voicemail["details"] as? [String: Any])?["duration_seconds"] as? Int == 12)
            #expect(outcomes.allSatisfy { ($0["event_id"] as? String).flatMap(UUID.init(uuidString:)) != nil })

            // The admin mirror shows the same; under the other tenant the call is not found at all
            // (its turn and voicemail there have no call of theirs).
            let admin = try await client.execute(uri: "/admin/tenants/\(fixture.tenant)/calls/\(seeded.rich)", method: .get, headers: Self.bearer(EdgeFixture.adminKey))
            #expect((admin.json["turns"] as? [Any])?.count == 3 && (admin.json["outcomes"] as? [Any])?.count == 4)
            let crossed = try await client.execute(uri: "/admin/tenants/\(seeded.other)/calls/\(seeded.rich)", method: .get, headers: Self.bearer(EdgeFixture.adminKey))
            #expect(crossed.status == .notFound)
        }
        try await fixture.drop()
    }

    @Test func badParametersAreRefusedNamingTheParameter() async throws {
        let fixture = try await EdgeFixture()
        _ = try await SeededCalls(fixture: fixture)
        let otherListCursor = PageCursor(list: "leads", values: ["2026-12-01 09:00:00+00", UUID().uuidString]).encoded
        let alteredCursor = PageCursor(list: "calls", values: ["yesterday", UUID().uuidString]).encoded
        let yearZeroCursor = PageCursor(list: "calls", values: ["0000-01-01 00:00:00+00", UUID().uuidString]).encoded
        try await fixture.test { client in
            let cases: [(String, String)] = [
                ("from=yesterday", "from"), ("to=2026-12-01", "to"), ("from=2026-12-02T00:00:00Z&to=2026-12-01T00:00:00Z", "from"),
                ("status=ringing", "status"), ("status=", "status"), ("intent=booking", "intent"), ("direction=sideways", "direction"),
                ("number=4155550100", "number"), ("number=%2B0123", "number"), ("number=%2B1415555010012345678", "number"),
                ("limit=201", "limit"), ("limit=0", "limit"), ("limit=-1", "limit"), ("limit=ten", "limit"),
                ("cursor=garbage!", "cursor"), ("cursor=\(otherListCursor)", "cursor"), ("cursor=\(alteredCursor)", "cursor"),
                ("cursor=\(yearZeroCursor)", "cursor"), ("limit=5&limit=6", "limit"), ("sort=asc", "sort"), ("tenant_id=x", "tenant_id"),
            ]
            for (query, field) in cases {
                let response = try await client.execute(uri: "/v1/calls?\(query)", method: .get, headers: Self.bearer(fixture.apiKey))
                #expect(response.status == .badRequest, "\(query): \(response.status)")
                #expect(response.headers[.contentType] == "application/problem+json", "\(query)")
                #expect(response.json["field"] as? String == field, "\(query): \(response.text)")
            }
            let detail = try await client.execute(uri: "/v1/calls/\(UUID())?expand=all", method: .get, headers: Self.bearer(fixture.apiKey))
            #expect(detail.status == .badRequest && detail.json["field"] as? String == "expand")
            // Without a valid key the answer is 401 whatever the parameters: nothing about them leaks.
            for uri in ["/v1/calls?limit=201", "/v1/calls?sort=asc", "/v1/events?types=nope"] {
                let response = try await client.execute(uri: uri, method: .get, headers: Self.bearer("vck_0000000000000000_nope"))
                #expect(response.status == .unauthorized, "\(uri): \(response.status)")
            }
            // The limits themselves are fine.
            for query in ["limit=200", "limit=1", "from=2026-12-01T00:00:00Z&to=2026-12-01T00:00:00Z"] {
                let response = try await client.execute(uri: "/v1/calls?\(query)", method: .get, headers: Self.bearer(fixture.apiKey))
                #expect(response.status == .ok, "\(query)")
            }
        }
        try await fixture.drop()
    }

    @Test func theAdminMirrorReadsAnyTenantWithTheAdminKeyOnly() async throws {
        let fixture = try await EdgeFixture()
        let seeded = try await SeededCalls(fixture: fixture)
        // The admin reads tenants of the directory: the other tenant is provisioned there too.
        _ = try await fixture.directory.provision(NewTenant(id: seeded.other, name: "Other Dental"), publisher: fixture.publisher)
        try await fixture.test { client in
            let admin = "/admin/tenants/\(fixture.tenant)/calls"
            let unknown = try await client.execute(uri: "/admin/tenants/\(UUID())/calls", method: .get, headers: Self.bearer(EdgeFixture.adminKey))
            #expect(unknown.status == .notFound, "a tenant the directory does not know is a 404, not an empty list")
            let paged = try await Self.allPages(client, "limit=4", key: EdgeFixture.adminKey, base: admin)
            #expect(paged.ids == seeded.newestFirst.map(\.id.description))
            let other = try await client.execute(uri: "/admin/tenants/\(seeded.other)/calls", method: .get, headers: Self.bearer(EdgeFixture.adminKey))
            #expect((other.json["items"] as? [[String: Any]])?.compactMap { $0["call_id"] as? String } == [seeded.foreign.description])
            let detail = try await client.execute(uri: "\(admin)/\(seeded.rich)", method: .get, headers: Self.bearer(EdgeFixture.adminKey))
            #expect(detail.status == .ok && (detail.json["transcript"] as? [Any])?.count == 5)
            let crossed = try await client.execute(uri: "/admin/tenants/\(seeded.other)/calls/\(seeded.rich)", method: .get, headers: Self.bearer(EdgeFixture.adminKey))
            #expect(crossed.status == .notFound, "a call is read under its own tenant only")
            let bad = try await client.execute(uri: "\(admin)?limit=201", method: .get, headers: Self.bearer(EdgeFixture.adminKey))
            #expect(bad.status == .badRequest && bad.json["field"] as? String == "limit")
            for key in [fixture.apiKey, "nope"] {
                let refused = try await client.execute(uri: admin, method: .get, headers: Self.bearer(key))
                #expect(refused.status == .unauthorized, "a tenant's API key is not the admin key")
                #expect(refused.json["items"] == nil)
            }
        }
        try await fixture.drop()
    }

    /// Every kind of answer of the calls routes, with the richest and the barest call, validates
    /// against its schema in `schemas/openapi.yaml` (JSON Schema 2020-12 by `jsonschema` from PyPI,
    /// in the venv `tools/test` makes): clients generate code from that document, and schemathesis
    /// checks what it happens to generate, not a call with a transcript, a lead and usage.
    @Test func answersValidateAgainstTheOpenAPIDocument() async throws {
        let fixture = try await EdgeFixture()
        let seeded = try await SeededCalls(fixture: fixture)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("call-answers-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let key = fixture.apiKey
        let answers: [(schema: String, uri: String, key: String, status: HTTPResponse.Status)] = [
            ("CallPage", "/v1/calls?limit=3", key, .ok), ("CallPage", "/v1/calls?limit=200", key, .ok),
            ("CallPage", "/v1/calls?intent=billing", key, .ok),
            ("CallDetail", "/v1/calls/\(seeded.rich)", key, .ok), ("CallDetail", "/v1/calls/\(seeded.calls[5].id)", key, .ok),
            ("CallDetail", "/v1/calls/\(seeded.calls[8].id)", key, .ok),
            ("CallDetail", "/admin/tenants/\(fixture.tenant)/calls/\(seeded.rich)", EdgeFixture.adminKey, .ok),
            ("Problem", "/v1/calls?limit=201", key, .badRequest), ("Problem", "/v1/calls/\(seeded.foreign)", key, .notFound),
            ("Problem", "/v1/calls", "nope", .unauthorized),
        ]
        try await fixture.test { client in
            for (index, answer) in answers.enumerated() {
                let response = try await client.execute(uri: answer.uri, method: .get, headers: Self.bearer(answer.key))
                #expect(response.status == answer.status, "\(answer.uri)")
                try Data(response.text.utf8).write(to: directory.appendingPathComponent("\(index)-\(answer.schema).json"))
            }
        }
        let script = """
            import json, os, sys, yaml
            from jsonschema import Draft202012Validator
            from referencing import Registry, Resource
            from referencing.jsonschema import DRAFT202012
            document = yaml.safe_load(open(sys.argv[1]))
            registry = Registry().with_resource("urn:openapi", Resource.from_contents(document, default_specification=DRAFT202012))
            failed = 0
            for name in sorted(os.listdir(sys.argv[2])):
                schema = {"$ref": "urn:openapi#/components/schemas/" + name.split("-", 1)[1][:-5]}
                validator = Draft202012Validator(schema, registry=registry, format_checker=Draft202012Validator.FORMAT_CHECKER)
                for error in validator.iter_errors(json.load(open(os.path.join(sys.argv[2], name)))):
                    failed += 1
                    print(name, list(error.absolute_path), error.message[:300])
            print("checked", len(os.listdir(sys.argv[2])), "answers")
            sys.exit(1 if failed else 0)
            """
        let python = ProcessInfo.processInfo.environment["VOICECORE_PYTHON"] ?? "python3"
        let document = TestServers.root.appendingPathComponent("schemas/openapi.yaml").path
        let (status, output) = try await runProcess([python, "-c", script, document, directory.path])
        if output.contains("No module named") {
            Issue.record("jsonschema or PyYAML is not installed: run the tests with `tools/test` (VOICECORE_PYTHON), or pip install jsonschema pyyaml")
        }
        #expect(status == 0, "answers that do not match schemas/openapi.yaml:\n\(output)")
        #expect(output.contains("checked \(answers.count) answers"), "\(output)")
        try? FileManager.default.removeItem(at: directory)
        try await fixture.drop()
    }

    @Test func postgresUnreachableAnswers503WithRetryAfter() async throws {
        let fixture = try await EdgeFixture()
        let port = try ClosedPort.find()
        let pool = PostgresPool(configuration: try PostgresConfiguration(url: "postgres://voicecore:voicecore@127.0.0.1:\(port)/voicecore_test"), size: 2)
        let edge = Edge(configuration: EdgeConfiguration(publicBaseURL: EdgeFixture.publicBase, tenantCacheTTL: .seconds(60), adminKey: EdgeFixture.adminKey),
                        publisher: fixture.publisher, lookup: fixture.directory, directory: fixture.directory, reads: TenantReads(pool: pool))
        try await Application(router: edge.router()).test(.router) { client in
            for uri in ["/v1/calls", "/v1/calls?status=completed&limit=10", "/v1/calls/\(UUID())"] {
                let response = try await client.execute(uri: uri, method: .get, headers: Self.bearer(fixture.apiKey))
                #expect(response.status == .serviceUnavailable, "\(uri)")
                #expect(response.headers[.retryAfter].flatMap(Int.init).map { $0 > 0 } == true, "\(uri)")
                #expect(response.headers[.contentType] == "application/problem+json")
            }
            // A client error stays a client error while the database is down.
            let bad = try await client.execute(uri: "/v1/calls?limit=500", method: .get, headers: Self.bearer(fixture.apiKey))
            #expect(bad.status == .badRequest)
        }
        await pool.close()
        try await fixture.drop()
    }
}

/// A loopback port nothing listens on: bound, then closed.
enum ClosedPort {
    static func find() throws -> Int {
        let socket = Foundation.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard socket >= 0 else { throw ClosedPortError() }
        defer { close(socket) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(socket, $0, length) == 0 && getsockname(socket, $0, &length) == 0 }
        }
        guard bound else { throw ClosedPortError() }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    struct ClosedPortError: Error {}
}
