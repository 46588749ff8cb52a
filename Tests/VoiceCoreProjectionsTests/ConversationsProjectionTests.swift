import Foundation
import Testing
import VoiceCoreBus
import VoiceCoreEvents
import VoiceCorePostgres
@testable import VoiceCoreProjections
import VoiceCoreSimulation
import VoiceCoreTime

/// The conversations projection against real Redis and Postgres: a call's turns and outcomes,
/// exactly once in effect, rebuilt by a replay, readable by the tenant's own role only.
@Suite("Conversations projection", .serialized)
struct ConversationsProjectionTests {
    static let start = Timestamp(rfc3339: "2026-12-01T09:00:00Z") ?? .now
    static func at(_ seconds: Int64) -> Timestamp { start.adding(microseconds: seconds * 1_000_000) }

    static let tenant = Identifier.v7(), other = Identifier.v7()
    static let call = Identifier.v7(), otherCall = Identifier.v7()

    static func item<M: Message>(_ message: M, tenant: Identifier = tenant, id: Identifier? = nil, causation: Identifier? = nil,
                                 at time: Timestamp) -> CallWorkload.Item {
        CallWorkload.Item(envelope: EventEnvelope(message, tenant: tenant, source: "/test", causationID: causation, id: id, time: time),
                          category: M.category)
    }

    /// The receptionist's reply to a turn, under the id it derives from the turn's command.
    static func reply(_ turn: Int, call: Identifier = call, tenant: Identifier = tenant, text: String, action: ReceptionistAction = .continue,
                      transferTo: String? = nil, slots: [String: String] = [:], id: Identifier? = nil) -> CallWorkload.Item {
        let command = ReportCallerTurn.commandID(callID: call, turn: turn)
        let message = ReceptionistReplied(callID: call, provider: .twilio, providerCallID: "CA1", turn: turn, channel: .gather,
                                          heard: "turn \(turn) of the caller", text: text, action: action, transferTo: transferTo, slots: slots,
                                          intent: turn == 1 ? nil : .appointment, decidedBy: turn == 3 ? .fallback : .builtIn, repliedAt: at(Int64(turn) * 10))
        return item(message, tenant: tenant, id: id ?? ReceptionistReplied.replyID(commandID: command), causation: command, at: at(Int64(turn) * 10))
    }

    /// The items as a projector hands them to a projection (decoded, in order, on one stream).
    static func projected(_ items: [CallWorkload.Item]) -> [ProjectedEvent] {
        items.enumerated().map { index, item in
            var message: (any Message)?
            if case .known(_, let decoded)? = try? MessageRegistry.standard.decode(item.envelope) { message = decoded }
            return ProjectedEvent(stream: "test", entryID: StreamEntryID(milliseconds: UInt64(index + 1)), envelope: item.envelope, message: message)
        }
    }

    /// `call_turns` and `call_outcomes` of the tenant, one line per row.
    static func rows(_ db: PostgresConnection, tenant: Identifier = tenant) async throws -> [String] {
        let turns = try await db.query("""
            SELECT format('turn %s %s %s heard=%s reply=%s action=%s to=%s slots=%s intent=%s by=%s at=%s', call_id, turn, channel, heard, reply,
                          action, transfer_to, slots::text, intent, decided_by, replied_at AT TIME ZONE 'UTC') AS line
            FROM call_turns WHERE tenant_id = \(tenant.uuid) ORDER BY call_id, turn
            """)
        let outcomes = try await db.query("""
            SELECT format('outcome %s %s turn=%s %s at=%s', call_id, kind, turn, details::text, occurred_at AT TIME ZONE 'UTC') AS line
            FROM call_outcomes WHERE tenant_id = \(tenant.uuid) ORDER BY call_id, occurred_at, kind
            """)
        return try (turns.map { try $0.decode(String.self, "line") }) + (outcomes.map { try $0.decode(String.self, "line") })
    }

    @Test("turns and outcomes projected once: redelivered and republished events change nothing, a second reply of a turn does not replace the first, replay rebuilds the same rows")
    func projectedOnceAndReplayed() async throws {
        let fixture = try await ProjectorFixture(partitions: 4)
        defer { Task { try? await fixture.drop() } }
        let first = Self.reply(1, text: "Hello, how can I help?", slots: [:])
        let second = Self.reply(2, text: "Which day suits you?", slots: ["job": "appointment"])
        let appointment = Self.item(AppointmentRequested(callID: Self.call, name: "Ada Lovelace", phone: "+14155550111", preferredTime: "Tuesday morning",
                                                         turn: 3, requestedAt: Self.at(31)), at: Self.at(31))
        let items = [
            first, second, second,  // the same reply twice (the turn answered again)
            Self.reply(3, text: "Booked. Anything else?", slots: ["job": "appointment", "name": "Ada Lovelace", "preferred_time": "Tuesday morning"]),
            appointment, appointment,
            Self.item(MessageTaken(callID: Self.call, name: nil, phone: nil, message: "Please call back", turn: 4, takenAt: Self.at(41)), at: Self.at(41)),
            Self.reply(4, text: "Connecting you now.", action: .transfer, transferTo: "+18005550100"),
            Self.item(CallTransferred(callID: Self.call, to: "+18005550100", reason: nil, turn: 4, transferredAt: Self.at(42)), at: Self.at(42)),
            Self.item(VoicemailRecorded(callID: Self.call, recordingID: "RE1", recordingURL: "https://api.twilio.com/rec/RE1", durationSeconds: 17,
                                        recordedAt: Self.at(90)), at: Self.at(90)),
            // A second reply of turn 2 under another id, after the first: the first stays.
            Self.reply(2, text: "A different answer", id: .v7()),
            // Another tenant's conversation on a call of the same id (call ids derive from the
            // tenant, so its reply's id is another: the archive keeps an event id once).
            Self.reply(1, call: Self.call, tenant: Self.other, text: "Other tenant's greeting", id: .v7()),
            Self.item(VoicemailRecorded(callID: Self.call, recordingID: "RE2", recordingURL: nil, durationSeconds: 3, recordedAt: Self.at(95)),
                      tenant: Self.other, at: Self.at(95)),
        ]
        try await fixture.publish(items)
        let projections: [any Projection] = [ArchiveProjection(), ConversationsProjection()]
        let projector = try fixture.runner(projections: projections)
        try await eventually("the conversations caught up", within: .seconds(60)) { try await fixture.status(projections).allSatisfy { $0.gap == 0 } }
        try await projector.stop()

        let c = Self.call.description
        let expected = [
            "turn \(c) 1 gather heard=turn 1 of the caller reply=Hello, how can I help? action=continue to= slots={} intent= by=built-in at=2026-12-01 09:00:10",
            "turn \(c) 2 gather heard=turn 2 of the caller reply=Which day suits you? action=continue to= slots={\"job\": \"appointment\"} intent=appointment by=built-in at=2026-12-01 09:00:20",
            "turn \(c) 3 gather heard=turn 3 of the caller reply=Booked. Anything else? action=continue to= slots={\"job\": \"appointment\", \"name\": \"Ada Lovelace\", \"preferred_time\": \"Tuesday morning\"} intent=appointment by=fallback at=2026-12-01 09:00:30",
            "turn \(c) 4 gather heard=turn 4 of the caller reply=Connecting you now. action=transfer to=+18005550100 slots={} intent=appointment by=built-in at=2026-12-01 09:00:40",
            "outcome \(c) appointment turn=3 {\"name\": \"Ada Lovelace\", \"phone\": \"+14155550111\", \"reason\": null, \"preferred_time\": \"Tuesday morning\"} at=2026-12-01 09:00:31",
            "outcome \(c) message turn=4 {\"name\": null, \"phone\": null, \"message\": \"Please call back\"} at=2026-12-01 09:00:41",
            "outcome \(c) transfer turn=4 {\"to\": \"+18005550100\", \"reason\": null} at=2026-12-01 09:00:42",
            "outcome \(c) voicemail turn= {\"recording_id\": \"RE1\", \"recording_url\": \"https://api.twilio.com/rec/RE1\", \"duration_seconds\": 17} at=2026-12-01 09:01:30",
        ]
        let projected = try await Self.rows(fixture.db)
        #expect(projected == expected)
        #expect(try await Self.rows(fixture.db, tenant: Self.other).count == 2, "the other tenant's turn and voicemail, apart")
        #expect(try await fixture.db.query("SELECT count(*) AS n FROM projection_failures")[0].decode(Int.self, "n") == 0)

        // Redelivered (the same envelopes on the streams again) and re-derived (an outcome's facts
        // under the same id): nothing changes.
        try await fixture.publish(items)
        let again = try fixture.runner(projections: projections)
        try await eventually("the redelivered events projected", within: .seconds(60)) { try await fixture.status(projections).allSatisfy { $0.gap == 0 } }
        try await again.stop()
        #expect(again.runner.statistics["conversations"]?.applied ?? 0 > 0, "the redelivered events were read and applied")
        #expect(try await Self.rows(fixture.db) == expected, "a redelivery changes nothing")

        // The same batch applied twice in one transaction changes nothing either.
        let events = Self.projected(items)
        try await fixture.db.withTransaction { db in
            try ConversationsProjection().apply(events + events, in: db)
        }
        #expect(try await Self.rows(fixture.db) == expected)

        // Replay: the same rows, and damaged rows repaired.
        let tables = ConversationsProjection().tables
        let before = try await ReplayTests.snapshot(fixture.db, tables: tables)
        let replayer = try ReplayTests.replayer(fixture, "conversations")
        let verify = try await replayer.run(ReplayOptions(mode: .verify, batchSize: 3))
        #expect(verify.differences.isEmpty, "\(verify.differences)")
        #expect(verify.eventsRead > 0)
        try await fixture.db.query("UPDATE call_turns SET reply = 'tampered' WHERE turn = 2")
        try await fixture.db.query("DELETE FROM call_outcomes WHERE kind = 'voicemail'")
        _ = try await replayer.run(ReplayOptions(mode: .rebuild, batchSize: 3))
        let after = try await ReplayTests.snapshot(fixture.db, tables: tables)
        for table in tables { #expect(after[table] == before[table], "\(table) rebuilt as it was") }
        #expect(try await Self.rows(fixture.db) == expected)
    }

    @Test("the tenant role reads its own turns and outcomes only, and writes none")
    func tenantRoleReadsItsOwnOnly() async throws {
        let fixture = try await ProjectorFixture(partitions: 2)
        defer { Task { try? await fixture.drop() } }
        let items = [
            Self.reply(1, text: "Hello"), Self.reply(1, call: Self.otherCall, tenant: Self.other, text: "Hi there"),
            Self.item(VoicemailRecorded(callID: Self.call, recordingID: "RE1", recordingURL: nil, durationSeconds: 5, recordedAt: Self.at(9)), at: Self.at(9)),
            Self.item(VoicemailRecorded(callID: Self.otherCall, recordingID: "RE2", recordingURL: nil, durationSeconds: 5, recordedAt: Self.at(9)),
                      tenant: Self.other, at: Self.at(9)),
        ]
        let events = Self.projected(items)
        try await fixture.db.withTransaction { db in try ConversationsProjection().apply(events, in: db) }

        let session = try await PostgresConnection.connect(try PostgresConfiguration(url: fixture.databaseURL))
        try await session.query("SET ROLE voicecore_tenant")
        for table in ["call_turns", "call_outcomes"] {
            #expect(try await session.query(PostgresQuery(unsafeSQL: "SELECT count(*) AS n FROM \(table)"))[0].decode(Int.self, "n") == 0, "\(table): no tenant set, nothing visible")
        }
        try await session.query("SELECT set_config('app.tenant_id', \(Self.tenant.description), false)")
        let turns = try await session.query("SELECT call_id, reply FROM call_turns")
        #expect(try turns.map { try $0.decode(String.self, "reply") } == ["Hello"])
        let outcomes = try await session.query("SELECT call_id FROM call_outcomes")
        #expect(try outcomes.map { try $0.decode(Identifier.self, "call_id") } == [Self.call])
        await #expect(throws: PostgresError.self) {
            try await session.query("UPDATE call_turns SET reply = 'rewritten'")
        }
        await session.close()
        #expect(try await Self.rows(fixture.db).first?.contains("reply=Hello ") == true)
    }
}
