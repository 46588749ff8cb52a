import Foundation
import Logging
import Testing
import VoiceCoreBus
import VoiceCoreEvents
import VoiceCorePostgres
import VoiceCoreRedis
import VoiceCoreTenants
import VoiceCoreTime
@testable import VoiceCoreProjections

/// One caller's rows in every read model and the archive, seeded directly (what the projections
/// would have written), with a distinctive phrase in everything they said.
private struct SeededCaller {
    let tenant: Identifier
    let call = Identifier.v7()
    let contact = Identifier.v7()
    let lead = Identifier.v7()
    let interaction = Identifier.v7()
    let phone: String
    let email: String
    let name: String
    let phrase: String
    let startedAt: Timestamp

    var callStarted: CallStarted {
        CallStarted(callID: call, provider: .twilio, providerCallID: "CA\(call.description.prefix(8))", direction: .inbound,
                    from: phone, to: "+14155550000", startedAt: startedAt)
    }
    var chunk: TranscriptChunk {
        TranscriptChunk(callID: call, sequence: 0, track: .inbound, text: phrase, isFinal: true, confidence: 0.9, startOffsetMs: 0, endOffsetMs: 900)
    }
    var leadCreated: LeadCreated {
        LeadCreated(leadID: lead, callID: call, name: name, phone: phone, email: email, intent: .appointment, source: .call, notes: phrase,
                    createdAt: startedAt)
    }

    func envelopes() -> [(EventEnvelope, StreamCategory)] {
        [(EventEnvelope(callStarted, tenant: tenant, source: "/test", time: startedAt), .calls),
         (EventEnvelope(chunk, tenant: tenant, source: "/test", time: startedAt.adding(microseconds: 1_000_000)), .calls),
         (EventEnvelope(leadCreated, tenant: tenant, source: "/test", time: startedAt.adding(microseconds: 2_000_000)), .crm)]
    }

    func seed(_ db: PostgresConnection) async throws {
        let ended = startedAt.adding(microseconds: 60_000_000)
        let (t, c) = (tenant, call)
        try await db.query("""
            INSERT INTO call_sessions (tenant_id, call_id, provider, provider_call_id, direction, from_number, to_number, status, started_at, ended_at, duration_seconds)
            VALUES (\(t), \(c), 'twilio', \(callStarted.providerCallID), 'inbound', \(phone), '+14155550000', 'completed', \(startedAt), \(ended), 60)
            """)
        try await db.query("""
            INSERT INTO transcripts (tenant_id, call_id, track, sequence, text, confidence, start_offset_ms, end_offset_ms)
            VALUES (\(t), \(c), 'inbound', 0, \(phrase), 0.9, 0, 900), (\(t), \(c), 'inbound', 1, \(phrase), 0.9, 900, 1800)
            """)
        try await db.query("""
            INSERT INTO call_turns (tenant_id, call_id, turn, channel, heard, reply, action, transfer_to, slots, decided_by, replied_at)
            VALUES (\(t), \(c), 1, 'relay', \(phrase), \("Thanks " + name), 'continue', NULL, \(PostgresJSON(rawJSON: "{\"name\": \"\(name)\"}")), 'built-in', \(startedAt))
            """)
        try await db.query("""
            INSERT INTO call_outcomes (tenant_id, call_id, event_id, kind, turn, details, occurred_at)
            VALUES (\(t), \(c), \(Identifier.v7()), 'message', 1,
                    \(PostgresJSON(rawJSON: "{\"name\": \"\(name)\", \"phone\": \"\(phone)\", \"message\": \"\(phrase)\"}")), \(startedAt))
            """)
        try await db.query("""
            INSERT INTO call_analytics (tenant_id, call_id, duration_seconds, outcome, word_count, summary, key_sentences)
            VALUES (\(t), \(c), 60, 'completed', 10, \(phrase), \(PostgresJSON(rawJSON: "[\"\(phrase)\"]")))
            """)
        try await db.query("""
            INSERT INTO crm_contacts (tenant_id, contact_id, name, phone, email, first_seen_at, last_seen_at)
            VALUES (\(t), \(contact), \(name), \(phone), \(email), \(startedAt), \(startedAt))
            """)
        try await db.query("""
            INSERT INTO leads (tenant_id, lead_id, call_id, contact_id, name, phone, email, intent, source, notes, created_at)
            VALUES (\(t), \(lead), \(c), \(contact), \(name), \(phone), \(email), 'appointment', 'call', \(phrase), \(startedAt))
            """)
        try await db.query("""
            INSERT INTO interactions (tenant_id, interaction_id, contact_id, call_id, channel, summary, duration_seconds, occurred_at)
            VALUES (\(t), \(interaction), \(contact), \(c), 'call', \(phrase), 60, \(startedAt))
            """)
        for (envelope, category) in envelopes() {
            try await db.query("""
                INSERT INTO event_log (event_id, stream, entry_id, type, version, tenant_id, subject, time, payload)
                VALUES (\(envelope.id), \("vc:{p00}:" + category.rawValue), '1-0', \(envelope.type), \(envelope.version), \(t), \(envelope.subject),
                        \(envelope.time), \(PostgresJSONText(rawJSON: envelope.data)))
                """)
        }
    }
}

/// A schema, a stream prefix and the privacy engine over them, with callers seeded.
private final class PrivacyFixture: @unchecked Sendable {
    let projector: ProjectorFixture
    let tenant = Identifier.v7()
    let requests: ErasureRequests
    let streams: StreamErasure
    let bus: BusConnection

    var db: PostgresConnection { projector.db }

    init() async throws {
        projector = try await ProjectorFixture()
        var key = [UInt8](repeating: 0, count: 32)
        for index in key.indices { key[index] = UInt8.random(in: 0...255) }
        let secrets = try SecretBox(masterKey: key)
        requests = ErasureRequests(directory: TenantDirectory(connection: projector.db, secrets: secrets))
        bus = try await BusConnection.connect(try RedisConfiguration(url: TestRedis.url))
        streams = StreamErasure(connection: bus, naming: projector.naming, readers: [])
        try await db.query("INSERT INTO tenant_directory (tenant_id, name, plan, time_zone) VALUES (\(tenant), 'Privacy test', 'starter', 'UTC')")
        try await db.query("INSERT INTO business_metrics (tenant_id, day, calls, answered, missed, handle_seconds, leads) VALUES (\(tenant), '2026-01-01', 2, 2, 0, 120, 2)")
        try await db.query("INSERT INTO billing_usage (tenant_id, day, meter, quantity, unit) VALUES (\(tenant), '2026-01-01', 'call_minutes', 2, 'minute')")
    }

    func caller(_ digit: Int, startedAt: Timestamp = Timestamp.now.adding(microseconds: -3_600_000_000)) -> SeededCaller {
        SeededCaller(tenant: tenant, phone: "+1415555010\(digit)", email: "caller\(digit)@example.com", name: "Caller Number\(digit)",
                     phrase: "purple giraffe \(digit) quartz", startedAt: startedAt)
    }

    /// Seeds `caller` in Postgres and publishes its events to the streams.
    func add(_ caller: SeededCaller) async throws {
        try await caller.seed(db)
        for result in await projector.publisher.publish(batch: caller.envelopes().map { ($0.0, $0.1, MessageKind.event) }) { _ = try result.get() }
    }

    func eraser(stopsAt: ErasureStatus.State? = nil) -> CallerEraser {
        let publisher = projector.publisher
        return CallerEraser(postgres: db, streams: streams, publisher: publisher, requests: requests, registry: .standard,
                            logger: Logger(label: "test"), now: { .now }, stopsAt: stopsAt)
    }

    func request(phone: String) async throws -> Identifier {
        try await requests.request(tenant: tenant, identifier: .phone(phone), actor: .platformOperator, requestID: .v7()).status.erasureID
    }

    func text(_ sql: PostgresQuery) async throws -> String {
        try await db.query(sql).map { row in (try row.decode(String?.self, at: 0)) ?? "NULL" }.joined(separator: "\n")
    }

    /// Every personal column of the read models and the archive, as one text (what a caller's data could hide in).
    func everything() async throws -> String {
        try await text("""
            SELECT concat_ws('|', from_number, to_number) FROM call_sessions UNION ALL SELECT text FROM transcripts
            UNION ALL SELECT concat_ws('|', heard, reply, transfer_to, slots::text) FROM call_turns UNION ALL SELECT details::text FROM call_outcomes
            UNION ALL SELECT concat_ws('|', summary, key_sentences::text) FROM call_analytics UNION ALL SELECT concat_ws('|', name, phone, email) FROM crm_contacts
            UNION ALL SELECT concat_ws('|', name, phone, email, notes) FROM leads UNION ALL SELECT summary FROM interactions
            UNION ALL SELECT payload::text FROM event_log
            """)
    }

    func aggregates() async throws -> String {
        try await text("""
            SELECT concat_ws('|', day, calls, answered, missed, handle_seconds, leads) FROM business_metrics
            UNION ALL SELECT concat_ws('|', day, meter, quantity) FROM billing_usage
            UNION ALL SELECT concat_ws('|', call_id, duration_seconds, word_count) FROM call_analytics ORDER BY 1
            """)
    }

    func counts(_ erasure: Identifier) async throws -> [String: Int] {
        let text = try await db.query("SELECT counts::text AS c FROM privacy_erasures WHERE erasure_id = \(erasure)")[0].decode(String.self, "c")
        return try JSONDecoder().decode([String: Int].self, from: Data(text.utf8))
    }

    /// Stream entries of the tenant holding `needle`, over every stream of the prefix.
    func streamEntries(containing needle: String) async throws -> Int {
        var found = 0
        for category in StreamCategory.allCases {
            for stream in projector.naming.streams(category, kind: .event) {
                for entry in try await projector.redis.execute(.xrange(stream)) where (entry["data"] ?? "").contains(needle) { found += 1 }
            }
        }
        return found
    }

    func callerErasedEvents() async throws -> Int {
        let stream = projector.naming.stream(for: .tenants, kind: .event, tenant: tenant, subject: tenant.description)
        return try await projector.redis.execute(.xrange(stream)).count { $0["type"] == CallerErased.type }
    }

    func drop() async throws {
        await bus.close()
        try await projector.drop()
    }
}

@Suite("Privacy engine: caller erasure and retention against real Postgres and Redis", .serialized)
struct PrivacyEngineTests {
    static let expected: [String: Int] = ["calls": 1, "transcript_lines": 2, "turns": 1, "outcomes": 1, "leads": 1, "contacts": 1,
                                          "interactions": 1, "archived_events": 3, "stream_entries": 3]

    @Test func erasesOneCallerEverywhereAndLeavesTheOtherAndTheAggregates() async throws {
        let fixture = try await PrivacyFixture()
        let erased = fixture.caller(1), kept = fixture.caller(2)
        try await fixture.add(erased)
        try await fixture.add(kept)
        let aggregatesBefore = try await fixture.aggregates()
        #expect(try await fixture.streamEntries(containing: erased.phrase) > 0)

        let erasure = try await fixture.request(phone: erased.phone)
        let progress = try await fixture.eraser().advance(erasure)
        #expect(progress.state == .completed)

        let everything = try await fixture.everything()
        for secret in [erased.phone, erased.email, erased.name, erased.phrase] {
            #expect(!everything.contains(secret), "\(secret) is still in the read models or the archive")
        }
        for kept in [kept.phone, kept.email, kept.name, kept.phrase] {
            #expect(everything.contains(kept), "\(kept) of the other caller was erased")
        }
        #expect(try await fixture.aggregates() == aggregatesBefore)
        #expect(try await fixture.text("SELECT count(*)::text FROM transcripts WHERE call_id = \(kept.call)") == "2")

        // The archived events are rewritten and still decode as their v1 types.
        let archived = try await fixture.db.query("SELECT type, version, payload::text AS p FROM event_log WHERE subject = \(erased.call.description)")
        #expect(archived.count == 2)
        for row in archived {
            let message = try MessageRegistry.standard.decodePayload(type: try row.decode(String.self, "type"), version: try row.decode(Int.self, "version"),
                                                                     data: Array(try row.decode(String.self, "p").utf8))
            if let started = message as? CallStarted { #expect(started.from == Erased.phone) }
            if let chunk = message as? TranscriptChunk { #expect(chunk.text == Erased.text) }
        }

        // The streams forgot the caller; the other caller's entries stay.
        #expect(try await fixture.streamEntries(containing: erased.phrase) == 0)
        #expect(try await fixture.streamEntries(containing: kept.phrase) > 0)

        var counts = Self.expected
        counts["dead_letters"] = 0
        #expect(try await fixture.counts(erasure).filter { $0.value > 0 } == counts.filter { $0.value > 0 })
        #expect(try await fixture.text("SELECT (identifier_sealed IS NULL)::text FROM privacy_erasures WHERE erasure_id = \(erasure)") == "true")
        #expect(try await fixture.text("""
            SELECT concat_ws('|', actor, action, outcome) FROM audit_logs WHERE request_id = \(CallerEraser.completionRequestID(erasure))
            """) == "operator|privacy.erase|succeeded")
        #expect(try await fixture.callerErasedEvents() == 1)

        // Running the completed erasure again changes nothing and publishes nothing.
        let snapshot = try await fixture.everything()
        let countsBefore = try await fixture.counts(erasure)
        #expect(try await fixture.eraser().advance(erasure).state == .completed)
        #expect(try await fixture.everything() == snapshot)
        #expect(try await fixture.counts(erasure) == countsBefore)
        #expect(try await fixture.callerErasedEvents() == 1)
        try await fixture.drop()
    }

    /// A process that stops at any saved state (as a SIGKILL there leaves it) and a new run
    /// completes the erasure, with each row counted once.
    @Test(arguments: [ErasureStatus.State.waiting, .erasing, .purging])
    func resumesFromEachSavedState(_ state: ErasureStatus.State) async throws {
        let fixture = try await PrivacyFixture()
        let erased = fixture.caller(3), kept = fixture.caller(4)
        try await fixture.add(erased)
        try await fixture.add(kept)
        let erasure = try await fixture.request(phone: erased.phone)
        #expect(try await fixture.eraser(stopsAt: state).advance(erasure).state == state)
        if state == .purging {
            // Erasing ran once already; a rerun of the same step must not count its rows again.
            try await fixture.db.query("UPDATE privacy_erasures SET state = 'erasing' WHERE erasure_id = \(erasure)")
        }
        #expect(try await fixture.eraser().advance(erasure).state == .completed)
        #expect(try await fixture.counts(erasure).filter { $0.value > 0 } == Self.expected)
        #expect(!(try await fixture.everything()).contains(erased.phrase))
        #expect((try await fixture.everything()).contains(kept.phrase))
        #expect(try await fixture.callerErasedEvents() == 1)
        try await fixture.drop()
    }

    /// An erasure waits while one of the caller's calls is in progress, and says so.
    @Test func waitsForACallInProgress() async throws {
        let fixture = try await PrivacyFixture()
        let caller = fixture.caller(5)
        try await fixture.add(caller)
        try await fixture.db.query("UPDATE call_sessions SET ended_at = NULL, status = 'in-progress', started_at = now() WHERE call_id = \(caller.call)")
        let erasure = try await fixture.request(phone: caller.phone)
        let waiting = try await fixture.eraser().advance(erasure)
        #expect(waiting.state == .waiting)
        #expect(waiting.waitingFor == "call \(caller.call) in progress")
        #expect((try await fixture.everything()).contains(caller.phrase))
        try await fixture.db.query("UPDATE call_sessions SET ended_at = now() - interval '2 minutes', status = 'completed' WHERE call_id = \(caller.call)")
        #expect(try await fixture.eraser().advance(erasure).state == .completed)
        try await fixture.drop()
    }

    /// While another process holds an erasure (its advisory lock), advancing it here does nothing.
    @Test func leavesAnErasureAnotherProcessRuns() async throws {
        let fixture = try await PrivacyFixture()
        let caller = fixture.caller(8)
        try await fixture.add(caller)
        let erasure = try await fixture.request(phone: caller.phone)
        let other = try await fixture.projector.schema.connect()
        try await other.query("SELECT pg_advisory_lock(hashtextextended(\(CallerEraser.lockKey(erasure)), 0))")
        let skipped = try await fixture.eraser().advance(erasure)
        #expect(!skipped.ranHere)
        #expect(skipped.state == .pending)
        #expect((try await fixture.everything()).contains(caller.phrase))
        // Unlock before closing: a closed connection's locks are released only when the server
        // notices the disconnect, which can be after the next advance tries the lock.
        try await other.query("SELECT pg_advisory_unlock(hashtextextended(\(CallerEraser.lockKey(erasure)), 0))")
        await other.close()
        #expect(try await fixture.eraser().advance(erasure).state == .completed)
        try await fixture.drop()
    }

    @Test func retentionErasesOnlyWhatIsOlderThanTheCutoffsAndRecordsEachRun() async throws {
        let fixture = try await PrivacyFixture()
        let day: Int64 = 86_400_000_000
        let old = fixture.caller(6, startedAt: Timestamp.now.adding(microseconds: -400 * day))
        let recent = fixture.caller(7, startedAt: Timestamp.now.adding(microseconds: -10 * day))
        try await old.seed(fixture.db)
        try await recent.seed(fixture.db)
        let aggregatesBefore = try await fixture.aggregates()
        let job = RetentionJob(postgres: fixture.db, streams: fixture.streams)

        // Defaults: transcripts 365 days, calls 1095: the old call loses its words, keeps its caller.
        let first = try await job.run(tenant: fixture.tenant)
        #expect(first.counts["transcript_lines"] == 2)
        #expect(first.counts["turns"] == 1)
        #expect(first.counts["outcomes"] == 1)
        #expect(first.counts["calls"] == 0)
        #expect(first.counts["archived_events"] == 1)
        #expect(try await fixture.text("SELECT count(*)::text FROM transcripts WHERE call_id = \(old.call)") == "0")
        #expect(try await fixture.text("SELECT count(*)::text FROM transcripts WHERE call_id = \(recent.call)") == "2")
        #expect(try await fixture.text("SELECT from_number FROM call_sessions WHERE call_id = \(old.call)") == old.phone)
        let chunk = try await fixture.db.query("SELECT payload::text AS p FROM event_log WHERE subject = \(old.call.description) AND type = \(TranscriptChunk.type)")
        let decoded = try MessageRegistry.standard.decodePayload(type: TranscriptChunk.type, version: TranscriptChunk.version,
                                                                 data: Array(chunk[0].decode(String.self, "p").utf8))
        #expect((decoded as? TranscriptChunk)?.text == Erased.text)
        #expect((try await fixture.everything()).contains(recent.phrase))
        #expect(try await fixture.aggregates() == aggregatesBefore)
        #expect(try await fixture.text("""
            SELECT concat_ws('|', r.counts->>'transcript_lines', a.actor, a.action) FROM privacy_retention_runs r
            JOIN audit_logs a ON a.target = 'privacy/retention-runs/' || r.run_id WHERE r.run_id = \(first.runID) AND r.finished_at IS NOT NULL
            """) == "2|system|privacy.retention")

        // A second run finds nothing left and records zeros.
        let second = try await job.run(tenant: fixture.tenant)
        #expect(second.counts.values.allSatisfy { $0 == 0 })
        #expect(try await fixture.text("SELECT count(*)::text FROM privacy_retention_runs WHERE tenant_id = \(fixture.tenant) AND finished_at IS NOT NULL") == "2")

        // Calls kept one year only: the old call's caller goes too, the recent call stays whole.
        let third = try await job.run(tenant: fixture.tenant, policy: RetentionPolicy(callsDays: 365))
        #expect(third.counts["calls"] == 1)
        #expect(third.counts["leads"] == 1)
        let everything = try await fixture.everything()
        #expect(!everything.contains(old.phrase))
        #expect(try await fixture.text("SELECT concat_ws('|', from_number, to_number) FROM call_sessions WHERE call_id = \(old.call)") == "")
        #expect(try await fixture.text("SELECT concat_ws('|', name, phone, email, notes) FROM leads WHERE call_id = \(old.call)") == "")
        #expect(everything.contains(recent.phone) && everything.contains(recent.phrase))
        try await fixture.drop()
    }
}
