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
        // An entry a projection could not apply keeps its fields as they were on the stream.
        let failed = "{\"tenantid\": \"\(t)\", \"subject\": \"\(c)\", \"data\": \"\(phrase)\"}"
        try await db.query("""
            INSERT INTO projection_failures (projection, stream, entry_id, event_id, type, error, fields)
            VALUES ('transcripts', 'vc:{p00}:calls', \("1-" + c.description.suffix(6)), \(Identifier.v7()), \(TranscriptChunk.type), 'refused',
                    \(PostgresJSON(rawJSON: failed)))
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
            UNION ALL SELECT payload::text FROM event_log UNION ALL SELECT fields::text FROM projection_failures
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
                                          "interactions": 1, "archived_events": 3, "stream_entries": 3, "summaries": 1, "projection_failures": 1]

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
        #expect(first.counts["summaries"] == 1)
        // The lines keep their place and timing (a replay of the erased archive writes the same).
        #expect(try await fixture.text("SELECT string_agg(text, '|' ORDER BY sequence) FROM transcripts WHERE call_id = \(old.call)") == "[erased]|[erased]")
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
        #expect(try await fixture.text("SELECT concat_ws('|', from_number, to_number) FROM call_sessions WHERE call_id = \(old.call)") == "+999|+999")
        #expect(try await fixture.text("SELECT concat_ws('|', name, phone, email, notes) FROM leads WHERE call_id = \(old.call)") == "[erased]|[erased]")
        #expect(everything.contains(recent.phone) && everything.contains(recent.phrase))
        try await fixture.drop()
    }
}

// MARK: - Late events, retention gaps, replay after an erasure, the archive's indexes

extension PrivacyFixture {
    /// Publishes `items` and applies them as the projector would (every projection whose
    /// categories and types take them, in one transaction): an event projected after the fact.
    @discardableResult
    func publishAndProject(_ items: [(EventEnvelope, StreamCategory, any Message)]) async throws -> [PublishedEntry] {
        let results = await projector.publisher.publish(batch: items.map { ($0.0, $0.1, MessageKind.event) })
        var entries: [PublishedEntry] = []
        var events: [(ProjectedEvent, StreamCategory)] = []
        for (index, result) in results.enumerated() {
            let entry = try result.get()
            entries.append(entry)
            events.append((ProjectedEvent(stream: entry.stream, entryID: entry.entryID, envelope: items[index].0, message: items[index].2), items[index].1))
        }
        let projections = try StandardProjections.named(["archive", "calls", "transcripts", "analytics", "crm", "conversations"])
        let projected = events
        try await db.withTransaction { db in
            for projection in projections {
                let taken = projected.filter { projection.categories.contains($0.1) && (projection.eventTypes?.contains($0.0.envelope.type) ?? true) }.map(\.0)
                if !taken.isEmpty { try projection.apply(taken, in: db) }
            }
        }
        return entries
    }

    /// Every table of the schema as `pg_dump` prints it.
    func pgDump() throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/pg_dump")
        process.arguments = ["--dbname", String(TestSchema.url.split(separator: "?")[0]), "--schema", projector.schema.name, "--no-owner"]
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return String(decoding: data, as: UTF8.self)
    }

    func sweep() -> LateEventSweep {
        LateEventSweep(postgres: db, streams: streams, logger: Logger(label: "test"))
    }
}

@Suite("Privacy: late events, retention gaps, replay after an erasure, the archive's indexes", .serialized)
struct PrivacyLateEventTests {
    /// What arrives late about an erased caller: the AI's summary after an outage, a transcript
    /// line redelivered, a lead created for the call and the contact the CRM made of it afresh (the
    /// caller's claims were forgotten).
    private static func lateEvents(about caller: SeededCaller, lead: Identifier) -> [(EventEnvelope, StreamCategory, any Message)] {
        let at = Timestamp.now
        let summary = CallSummarized(callID: caller.call, summary: "\(caller.name) said \(caller.phrase)", keySentences: [caller.phrase],
                                     sentiment: .positive, sentimentScore: 0.5, wordCount: 42, summarizedAt: at)
        let chunk = TranscriptChunk(callID: caller.call, sequence: 7, track: .inbound, text: "late \(caller.phrase)", isFinal: true, confidence: 0.8,
                                    startOffsetMs: 5000, endOffsetMs: 6000)
        let created = LeadCreated(leadID: lead, callID: caller.call, name: caller.name, phone: caller.phone, email: caller.email, intent: .appointment,
                                  source: .call, notes: caller.phrase, createdAt: at)
        let contact = ContactUpserted(contactID: .v7(), name: caller.name, phone: caller.phone, email: caller.email, leadID: lead,
                                      firstSeenAt: at, lastSeenAt: at)
        return [(EventEnvelope(summary, tenant: caller.tenant, source: "/test", time: at), .calls, summary),
                (EventEnvelope(chunk, tenant: caller.tenant, source: "/test", time: at), .calls, chunk),
                (EventEnvelope(created, tenant: caller.tenant, source: "/test", time: at), .crm, created),
                (EventEnvelope(contact, tenant: caller.tenant, source: "/test", time: at), .crm, contact)]
    }

    @Test("an event about an erased caller projected after the erasure completed is erased by the sweep, in Postgres and on the streams; another caller stays")
    func lateEventsAreErasedBySweep() async throws {
        let fixture = try await PrivacyFixture()
        let erased = fixture.caller(1), kept = fixture.caller(2)
        try await fixture.add(erased)
        try await fixture.add(kept)
        let erasure = try await fixture.request(phone: erased.phone)
        #expect(try await fixture.eraser().advance(erasure).state == .completed)
        let countsAtCompletion = try await fixture.counts(erasure)
        // Nothing arrived: the sweep looks and finds nothing to do.
        let idle = try await fixture.sweep().sweep()
        #expect(idle.erasures == 1 && idle.lateEvents == 0 && idle.redone == 0)

        let late = Self.lateEvents(about: erased, lead: .v7())
        try await fixture.publishAndProject(late)
        // The late summary is also queued for the tenant's webhooks, with its data.
        let webhooks = ScheduledJobQueue.webhooks(connection: fixture.bus, prefix: fixture.projector.naming.prefix)
        let summary = late[0].0
        let job = try JSONSerialization.data(withJSONObject: ["tenant": fixture.tenant.description, "event_id": summary.id.description,
                                                              "data": String(decoding: summary.data, as: UTF8.self)])
        #expect(try await webhooks.enqueue(id: "late-\(summary.id)", payload: Array(job)))
        let before = try fixture.pgDump()
        #expect(before.contains(erased.phrase) && before.contains(erased.email), "the late events were projected (the search can find them)")
        #expect(try await fixture.streamEntries(containing: erased.phrase) == 3)
        let aggregates = try await fixture.aggregates()

        // Two rounds: the late events of the call and the lead, then those of the lead's new contact.
        let swept = try await fixture.sweep().sweep()
        #expect(swept.lateEvents == 4)
        #expect(swept.redone == 2)
        let dump = try fixture.pgDump()
        for secret in [erased.phone, erased.email, erased.name, erased.phrase] {
            #expect(!dump.contains(secret), "\(secret) is still in the database after the sweep")
        }
        for other in [kept.phone, kept.email, kept.name, kept.phrase] {
            #expect(dump.contains(other), "\(other) of the other caller was erased")
        }
        #expect(try await fixture.streamEntries(containing: erased.phrase) == 0)
        #expect(try await fixture.streamEntries(containing: erased.email) == 0, "the late lead's and contact's entries went too")
        #expect(try await webhooks.pending() == 0, "the late summary's webhook delivery went too")
        #expect(try await fixture.streamEntries(containing: kept.phrase) > 0)
        #expect(try await fixture.aggregates() == aggregates, "the late summary's numbers stay")
        let counts = try await fixture.counts(erasure)
        #expect(counts["archived_events"] == (countsAtCompletion["archived_events"] ?? 0) + 4)
        #expect(counts["stream_entries"] == (countsAtCompletion["stream_entries"] ?? 0) + 4)
        #expect(counts["contacts"] == (countsAtCompletion["contacts"] ?? 0) + 1, "the late lead's new contact")

        // Done: the next sweep finds nothing new.
        let again = try await fixture.sweep().sweep()
        #expect(again.lateEvents == 0 && again.redone == 0 && again.waiting == 0)
        #expect(try await fixture.text("SELECT (late_marks IS NULL AND late_swept_from IS NOT NULL)::text FROM privacy_erasures WHERE erasure_id = \(erasure)") == "true")
        try await fixture.drop()
    }

    @Test("late events wait for a reader behind before the read models are redacted again (a projection would write them back)")
    func lateEventsWaitForReaders() async throws {
        let fixture = try await PrivacyFixture()
        let erased = fixture.caller(3)
        try await fixture.add(erased)
        let erasure = try await fixture.request(phone: erased.phone)
        #expect(try await fixture.eraser().advance(erasure).state == .completed)
        // A consumer group that has not read the late entry yet.
        let stream = fixture.projector.naming.stream(for: .calls, kind: .event, tenant: fixture.tenant, subject: erased.call.description)
        let redis = fixture.projector.redis
        _ = try await redis.execute(.xgroupCreate(stream, group: "late-reader", start: .end))
        _ = try await redis.execute(.xreadgroup(group: "late-reader", consumer: "c1", streams: [(stream, .newEntries)], count: 10))

        let late = Array(Self.lateEvents(about: erased, lead: .v7()).prefix(2))
        try await fixture.publishAndProject(late)
        let waiting = try await fixture.sweep().sweep()
        #expect(waiting.lateEvents == 2)
        #expect(waiting.waiting == 1 && waiting.redone == 0)
        // The archive is erased at once; the read model waits (its projection may not be done).
        #expect(try await fixture.text("SELECT count(*)::text FROM event_log WHERE payload::text LIKE \("%" + erased.phrase + "%")") == "0")
        #expect(try await fixture.text("SELECT count(*)::text FROM transcripts WHERE text LIKE \("%" + erased.phrase + "%")") == "1")
        #expect(try await fixture.streamEntries(containing: erased.phrase) == 2)

        let read = try await redis.execute(.xreadgroup(group: "late-reader", consumer: "c1", streams: [(stream, .newEntries)], count: 10))
        let ids = read.flatMap(\.entries).map(\.id)
        #expect(ids.count == 2)
        _ = try await redis.execute(.xack(stream, group: "late-reader", ids: ids))
        let done = try await fixture.sweep().sweep()
        #expect(done.redone == 1 && done.waiting == 0)
        #expect(!(try await fixture.everything()).contains(erased.phrase))
        #expect(try await fixture.streamEntries(containing: erased.phrase) == 0)
        try await fixture.drop()
    }

    @Test("retention erases an event with an old time archived after the run whose window its time fell in")
    func retentionCatchesLateArrivals() async throws {
        let fixture = try await PrivacyFixture()
        let day: Int64 = 86_400_000_000
        let old = fixture.caller(6, startedAt: Timestamp.now.adding(microseconds: -400 * day))
        try await old.seed(fixture.db)
        let job = RetentionJob(postgres: fixture.db, streams: fixture.streams)
        let first = try await job.run(tenant: fixture.tenant)
        #expect(first.counts["transcript_lines"] == 2)

        // A transcript line of the 400-day-old call, published (and archived) only now.
        let chunk = TranscriptChunk(callID: old.call, sequence: 9, track: .inbound, text: "late \(old.phrase)", isFinal: true, confidence: 0.8,
                                    startOffsetMs: 9000, endOffsetMs: 9900)
        let time = old.startedAt.adding(microseconds: 30_000_000)
        try await fixture.publishAndProject([(EventEnvelope(chunk, tenant: fixture.tenant, source: "/test", time: time), .calls, chunk)])
        #expect((try await fixture.everything()).contains("late \(old.phrase)"))

        let second = try await job.run(tenant: fixture.tenant)
        #expect(second.counts["archived_events"] == 1)
        #expect(second.counts["transcript_lines"] == 1)
        #expect(second.counts["stream_entries"] == 1)
        #expect(try await fixture.text("SELECT string_agg(text, '|' ORDER BY sequence) FROM transcripts WHERE call_id = \(old.call)")
            == "[erased]|[erased]|[erased]")
        #expect(try await fixture.text("""
            SELECT count(*)::text FROM event_log WHERE type = \(TranscriptChunk.type) AND payload::text LIKE \("%" + old.phrase + "%")
            """) == "0")
        #expect(try await fixture.streamEntries(containing: old.phrase) == 0)
        let third = try await job.run(tenant: fixture.tenant)
        #expect(third.counts.values.allSatisfy { $0 == 0 })
        try await fixture.drop()
    }

    @Test("retention deletes the dead letters of calls past the transcripts' retention, and keeps those of recent calls")
    func retentionDeletesOldDeadLetters() async throws {
        let fixture = try await PrivacyFixture()
        let day: Int64 = 86_400_000_000
        let old = fixture.caller(6, startedAt: Timestamp.now.adding(microseconds: -400 * day))
        let recent = fixture.caller(7, startedAt: Timestamp.now.adding(microseconds: -10 * day))
        try await old.seed(fixture.db)
        try await recent.seed(fixture.db)
        // Dead letters as the consumer-group runner writes them: the entry's fields and the reason.
        let deadLetters = "\(fixture.projector.naming.prefix):{p00}:calls:dlq:ai"
        for caller in [old, recent] {
            let envelope = EventEnvelope(caller.chunk, tenant: fixture.tenant, source: "/test", time: caller.startedAt)
            _ = try await fixture.projector.redis.execute(.xadd(deadLetters, fields: [
                ("tenantid", fixture.tenant.description), ("subject", caller.call.description), ("type", TranscriptChunk.type),
                ("data", String(decoding: envelope.data, as: UTF8.self)), ("dlq.reason", "refused"),
            ]))
        }
        let run = try await RetentionJob(postgres: fixture.db, streams: fixture.streams).run(tenant: fixture.tenant)
        #expect(run.counts["dead_letters"] == 1)
        let left = try await fixture.projector.redis.execute(.xrange(deadLetters))
        #expect(left.map { $0["subject"] } == [recent.call.description])
        _ = try await fixture.projector.redis.execute(.del([deadLetters]))
        try await fixture.drop()
    }

    @Test("a tenant whose retention run fails is recorded and logged; the other tenants run")
    func retentionGoesOnPastAFailingTenant() async throws {
        let fixture = try await PrivacyFixture()
        let day: Int64 = 86_400_000_000
        let old = fixture.caller(6, startedAt: Timestamp.now.adding(microseconds: -400 * day))
        try await old.seed(fixture.db)
        // Sorted first, so it runs first: settings this version cannot read.
        let broken = try #require(Identifier("00000000-0000-7000-8000-000000000001"))
        try await fixture.db.query("""
            INSERT INTO tenant_directory (tenant_id, name, plan, time_zone, ai_settings)
            VALUES (\(broken), 'Broken settings', 'starter', 'UTC', '{"retention": {"transcript_days": 30}}'::jsonb)
            """)
        let runs = try await RetentionJob(postgres: fixture.db, streams: fixture.streams).run()
        #expect(runs.map(\.tenantID) == [broken, fixture.tenant])
        #expect(runs.first?.error?.contains("retention settings") == true, "\(runs)")
        #expect(runs.last?.error == nil)
        #expect(runs.last?.counts["transcript_lines"] == 2)
        #expect(try await fixture.text("SELECT (error IS NOT NULL AND finished_at IS NULL)::text FROM privacy_retention_runs WHERE tenant_id = \(broken)") == "true")
        #expect(try await fixture.text("SELECT (error IS NULL AND finished_at IS NOT NULL)::text FROM privacy_retention_runs WHERE tenant_id = \(fixture.tenant)") == "true")
        try await fixture.drop()
    }

    @Test("after erasures, a replay of every projection from the erased archive finds the read models exactly as the erasure left them")
    func replayAfterErasureEqualsTheReadModels() async throws {
        let (projected, tenants) = try await ReplayTests.projected(seed: 33, calls: 40, tenants: 2)
        defer { Task { try? await projected.drop() } }
        let tenant = tenants[0]
        let db = projected.db
        try await db.query("INSERT INTO tenant_directory (tenant_id, name, plan, time_zone) VALUES (\(tenant), 'Replay after erasure', 'growth', 'UTC')")
        let secrets = try SecretBox(masterKey: (0..<32).map { _ in UInt8.random(in: 0...255) })
        let requests = ErasureRequests(directory: TenantDirectory(connection: db, secrets: secrets))
        let bus = try await BusConnection.connect(try RedisConfiguration(url: TestRedis.url))
        defer { Task { await bus.close() } }
        let progress = ProjectionCheckpointProgress(projections: StandardProjections.all, naming: projected.naming,
                                                    postgres: try PostgresConfiguration(url: projected.databaseURL))
        let streams = StreamErasure(connection: bus, naming: projected.naming, readers: [progress])
        // The workload's calls ended long ago in its own clock; a day later every one has settled.
        let eraser = CallerEraser(postgres: db, streams: streams, publisher: projected.publisher, requests: requests, registry: .standard,
                                  logger: Logger(label: "test"), now: { Timestamp.now.adding(microseconds: 86_400_000_000) }, stopsAt: nil)
        let phones = try await db.query("""
            SELECT from_number FROM call_sessions WHERE tenant_id = \(tenant) AND from_number IS NOT NULL ORDER BY from_number LIMIT 6
            """).map { try $0.decode(String.self, "from_number") }
        #expect(phones.count == 6)
        for phone in phones {
            let erasure = try await requests.request(tenant: tenant, identifier: .phone(phone), actor: .platformOperator, requestID: .v7()).status.erasureID
            #expect(try await eraser.advance(erasure).state == .completed)
        }
        let tables = ReplayTests.replayed.flatMap(\.tables)
        let erasedRows = try await ReplayTests.snapshot(db, tables: tables)
        let text = erasedRows.values.joined().joined(separator: "\n")
        for phone in phones { #expect(!text.contains(phone), "\(phone) is still in a read model") }
        #expect(text.contains(Erased.phone) && text.contains(Erased.text), "the placeholders are there")
        for projection in ReplayTests.replayed {
            let report = try await ReplayTests.replayer(projected, projection.name).run(ReplayOptions(mode: .verify))
            #expect(report.differences.isEmpty, "\(projection.name): a replay of the erased archive differs from the read models: \(report.differences)")
        }
        for projection in ReplayTests.replayed {
            _ = try await ReplayTests.replayer(projected, projection.name).run(ReplayOptions(mode: .rebuild))
        }
        let rebuilt = try await ReplayTests.snapshot(db, tables: tables)
        for table in tables { #expect(rebuilt[table] == erasedRows[table], "\(table) rebuilt from the erased archive is what the erasure left") }
    }

    @Test("the placeholder of erased numbers cannot be asked to be erased: it names nobody, and would match every erased call")
    func erasedPlaceholderIsNoIdentifier() throws {
        #expect(throws: PrivacyRequestError.self) { try ErasureIdentifier.parse(kind: .phone, value: Erased.phone, field: "phone") }
        #expect(try ErasureIdentifier.parse(kind: .phone, value: "+9991", field: "phone") == .phone("+9991"))
    }

    @Test("an erasure and the late-event sweep find a caller's archived events through the subject and call indexes, never a walk of the archive")
    func callerEventsUseTheArchiveIndexes() async throws {
        #expect(ArchiveRedaction.typesNamingCallsSQL == "(" + ArchiveRedaction.typesNamingCalls.map { "'\($0)'" }.joined(separator: ", ") + ")",
                "the query names the types of the partial index event_log_crm_call (migration 0018)")
        let fixture = try await PrivacyFixture()
        let caller = fixture.caller(1)
        try await caller.seed(fixture.db)
        // 30,000 archived events of other calls and leads of the tenant.
        try await fixture.db.query("""
            INSERT INTO event_log (event_id, stream, entry_id, type, version, tenant_id, subject, time, payload)
            SELECT gen_random_uuid(), 'vc:{p01}:' || CASE WHEN g % 10 = 0 THEN 'crm' ELSE 'calls' END, g || '-0',
                   CASE WHEN g % 10 = 0 THEN \(LeadCreated.type) ELSE \(TranscriptChunk.type) END, 1, \(fixture.tenant),
                   gen_random_uuid()::text, now() - g * interval '1 second',
                   json_build_object('call_id', gen_random_uuid()::text, 'text', 'someone else ' || g)
            FROM generate_series(1, 30000) g
            """)
        try await fixture.db.query("ANALYZE event_log")
        let target = RedactionTarget(tenant: fixture.tenant, calls: [caller.call], contacts: [caller.contact], leads: [caller.lead])
        for since in [nil, Timestamp.now.adding(microseconds: -60_000_000)] {
            let query = ArchiveRedaction.callerEventsQuery(target, archivedSince: since)
            let plan = try await fixture.db.query(PostgresQuery(unsafeSQL: "EXPLAIN " + query.sql, binds: query.binds))
                .map { try $0.decode(String.self, "QUERY PLAN") }.joined(separator: "\n")
            #expect(plan.contains("event_log_subject"), "\(plan)")
            #expect(plan.contains("event_log_crm_call"), "\(plan)")
            #expect(!plan.contains("Seq Scan on event_log"), "\(plan)")
        }
        let found = try await ArchiveRedaction(db: fixture.db, ledger: .erasure(.v7()), registry: .standard).callerEvents(target, archivedSince: nil)
        #expect(Set(found.map(\.subject)) == Set([caller.call.description, caller.lead.description]))
        #expect(found.count == 3)
        try await fixture.drop()
    }
}
