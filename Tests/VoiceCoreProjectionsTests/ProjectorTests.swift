import Foundation
import MetricsTestKit
import Testing
import VoiceCoreBus
import VoiceCoreEvents
import VoiceCorePostgres
import VoiceCoreRedis
import VoiceCoreSimulation
import VoiceCoreTime
@testable import VoiceCoreProjections

@Suite("Projectors against real Redis and Postgres")
struct ProjectorTests {
    @Test func aMixedWorkloadIsProjectedExactlyOnceAndResumesFromItsCheckpoints() async throws {
        let fixture = try await ProjectorFixture()
        var workload = CallWorkload(seed: 1, tenants: 3)
        try await fixture.publish(workload.provisioning() + workload.calls(150))

        let first = try fixture.runner()
        try await fixture.waitUntilCaughtUp()
        try await first.stop()
        var expected = try await ReadModels.fold(eventLog: fixture.db)
        var actual = try await ReadModels.read(fixture.db)
        #expect(actual == expected, "\(actual.differences(from: expected))")
        #expect(expected.billing.count > 3 && expected.metrics.count > 3 && expected.leads > 0)

        // Every published event is archived once; the duplicates (same id) add nothing.
        let archived = try await fixture.db.query("SELECT count(*) AS n FROM event_log")[0].decode(Int.self, "n")
        #expect(archived == Set(fixture.published.map(\.eventID)).count)
        // Applied counts are exact: every UsageRecorded entry (duplicates included) once.
        let usageEntries = fixture.items.filter { $0.envelope.type == UsageRecorded.type }.count
        #expect(first.runner.statistics["billing"]?.applied == usageEntries)
        #expect(first.runner.statistics["archive"]?.applied == fixture.published.count)

        // Restarted after more traffic: resumes from the checkpoints, counts nothing twice. The new
        // traffic repeats facts of the first (usage, call ends and leads under new event ids), as a
        // redelivery upstream would: the database, not the batch, must deduplicate those.
        let repeated = fixture.items.filter { [UsageRecorded.type, CallEnded.type, LeadCreated.type].contains($0.envelope.type) }.prefix(60).map { item in
            var again = item
            again.envelope.id = .v7()
            return again
        }
        #expect(Set(repeated.map(\.envelope.type)).count == 3)
        try await fixture.publish(workload.calls(80) + repeated)
        let second = try fixture.runner()
        try await fixture.waitUntilCaughtUp()
        try await second.stop()
        #expect(second.runner.statistics["archive"]?.applied == fixture.published.count - first.runner.statistics["archive"]!.applied)
        expected = try await ReadModels.fold(eventLog: fixture.db)
        actual = try await ReadModels.read(fixture.db)
        #expect(actual == expected, "\(actual.differences(from: expected))")

        // The tenants projection: provisioned tenants are in `tenants`.
        #expect(try await fixture.db.query("SELECT count(*) AS n FROM tenants")[0].decode(Int.self, "n") == 3)
        try await fixture.drop()
    }

    @Test func aLateOrDuplicatedEventNeverRegressesAFinishedCall() async throws {
        let fixture = try await ProjectorFixture(partitions: 2)
        let tenant = Identifier.v7()
        let call = CallID.derive(tenant: tenant, provider: .telnyx, providerCallID: "v3:late")
        let t0 = Timestamp.now
        func at(_ seconds: Int64) -> Timestamp { t0.adding(microseconds: seconds * 1_000_000) }
        let ended = CallEnded(callID: call, endedAt: at(90), status: .completed, durationSeconds: 80, answered: true, hungUpBy: .callee)
        let items: [CallWorkload.Item] = [
            .init(envelope: EventEnvelope(ended, tenant: tenant, source: "/test"), category: .calls),
            // Late: answered and started arrive after the end; a second end says something else.
            .init(envelope: EventEnvelope(CallAnswered(callID: call, answeredAt: at(10)), tenant: tenant, source: "/test"), category: .calls),
            .init(envelope: EventEnvelope(CallStarted(callID: call, provider: .telnyx, providerCallID: "v3:late", direction: .outbound,
                                                      from: "+14155550100", to: "+14155550199", startedAt: at(0)), tenant: tenant, source: "/test"), category: .calls),
            .init(envelope: EventEnvelope(CallEnded(callID: call, endedAt: at(95), status: .failed, durationSeconds: 0, answered: false),
                                          tenant: tenant, source: "/test"), category: .calls),
        ]
        let running = try fixture.runner(projections: [CallsProjection(), AnalyticsProjection()])
        for item in items {
            // One event per batch, so each meets the row the previous one left.
            try await fixture.publish([item])
            try await eventually("the event is applied", within: .seconds(20)) {
                try await fixture.status([CallsProjection(), AnalyticsProjection()]).allSatisfy { $0.gap == 0 }
            }
        }
        try await running.stop()
        let row = try await fixture.db.query("""
            SELECT status, end_status, duration_seconds, hung_up_by, provider, from_number, direction,
                   answered_at IS NOT NULL AS answered, started_at IS NOT NULL AS started
            FROM call_sessions WHERE call_id = \(call)
            """)[0]
        #expect(try row.decode(String.self, "status") == "completed")
        #expect(try row.decode(String.self, "end_status") == "completed")
        #expect(try row.decode(Int.self, "duration_seconds") == 80)
        #expect(try row.decode(String.self, "hung_up_by") == "callee")
        #expect(try row.decode(String.self, "provider") == "telnyx")
        #expect(try row.decode(String.self, "from_number") == "+14155550100")
        #expect(try row.decode(Bool.self, "answered") && row.decode(Bool.self, "started"))
        let metrics = try await fixture.db.query("SELECT calls, answered, missed, handle_seconds FROM business_metrics WHERE tenant_id = \(tenant)")
        #expect(metrics.count == 1)
        #expect(try metrics[0].decode(Int.self, "calls") == 1 && metrics[0].decode(Int.self, "answered") == 1 && metrics[0].decode(Int.self, "handle_seconds") == 80)
        try await fixture.drop()
    }

    @Test("a call's events folded within one batch, in any order, give the row they give one batch at a time")
    func aCallsEventsInOneBatchFoldAsTheyDoOneByOne() async throws {
        let fixture = try await ProjectorFixture(partitions: 1)
        let tenant = Identifier.v7()
        let t0 = Timestamp.now
        func at(_ seconds: Int64) -> Timestamp { t0.adding(microseconds: seconds * 1_000_000) }
        func call(_ name: String) -> Identifier { CallID.derive(tenant: tenant, provider: .twilio, providerCallID: name) }
        func item(_ message: some Message) -> CallWorkload.Item { .init(envelope: EventEnvelope(message, tenant: tenant, source: "/test"), category: .calls) }
        func started(_ name: String, _ second: Int64) -> CallWorkload.Item {
            item(CallStarted(callID: call(name), provider: .twilio, providerCallID: name, direction: .inbound, from: "+14155550100", to: "+14155550111", startedAt: at(second)))
        }
        // Ended first, then a late answer and start, then a second end that must not win.
        let ended = call("CA-ended")
        let items = [
            item(CallEnded(callID: ended, endedAt: at(90), status: .completed, durationSeconds: 80, answered: true, hungUpBy: .caller)),
            item(CallAnswered(callID: ended, answeredAt: at(10))), started("CA-ended", 0),
            item(CallEnded(callID: ended, endedAt: at(95), status: .failed, durationSeconds: 0, answered: false)),
            started("CA-answered", 1), item(CallAnswered(callID: call("CA-answered"), answeredAt: at(3))), item(CallAnswered(callID: call("CA-answered"), answeredAt: at(7))),
            started("CA-ringing", 2), started("CA-ringing", 9),
            item(CallAnswered(callID: call("CA-answered-only"), answeredAt: at(4))),
        ]
        try await fixture.publish(items)
        let running = try fixture.runner(projections: [CallsProjection()])
        try await eventually("the batch is applied") { running.runner.statistics["calls"]?.applied == items.count }
        try await running.stop()
        #expect(running.runner.statistics["calls"]?.batches == 1)
        let rows = try await fixture.db.query("""
            SELECT provider_call_id, status, end_status, duration_seconds, hung_up_by, provider,
                   extract(epoch FROM started_at - \(t0)::timestamptz)::int AS started, extract(epoch FROM answered_at - \(t0)::timestamptz)::int AS answered,
                   extract(epoch FROM ended_at - \(t0)::timestamptz)::int AS ended
            FROM call_sessions ORDER BY status, provider_call_id NULLS LAST
            """)
        func describe(_ row: PostgresRow) throws -> String {
            func text(_ column: String) throws -> String { try row.decode(String?.self, column) ?? "-" }
            func number(_ column: String) throws -> String { try row.decode(Int?.self, column).map(String.init) ?? "-" }
            let parts: [String] = [try text("provider_call_id"), try text("status"), try text("end_status"), try number("duration_seconds"),
                                   try text("hung_up_by"), try text("provider"), try number("started"), try number("answered"), try number("ended")]
            return parts.joined(separator: " ")
        }
        #expect(try rows.map(describe) == [
            "CA-ended completed completed 80 caller twilio 0 10 90",
            "CA-answered in-progress - - - twilio 1 3 -",
            "- in-progress - - - - - 4 -",
            "CA-ringing initiated - - - twilio 2 - -",
        ])
        try await fixture.drop()
    }

    @Test("per call, the strongest intent (the first of equals) and the latest summary win, within a batch and across batches")
    func analyticsKeepTheStrongestIntentAndTheLatestSummary() async throws {
        let fixture = try await ProjectorFixture(partitions: 1)
        let tenant = Identifier.v7()
        let now = Timestamp.now
        func call(_ name: String) -> Identifier { CallID.derive(tenant: tenant, provider: .twilio, providerCallID: name) }
        func item(_ message: some Message) -> CallWorkload.Item { .init(envelope: EventEnvelope(message, tenant: tenant, source: "/test"), category: .calls) }
        func intent(_ name: String, _ intent: Intent, _ confidence: Double) -> CallWorkload.Item {
            item(IntentDetected(callID: call(name), intent: intent, confidence: confidence, sourceSequence: 1, detectedAt: now))
        }
        func summary(_ name: String, _ sentiment: CallSummarized.Sentiment, words: Int) -> CallWorkload.Item {
            item(CallSummarized(callID: call(name), summary: "s", keySentences: [], sentiment: sentiment, sentimentScore: 0.5, wordCount: words, summarizedAt: now))
        }
        let running = try fixture.runner(projections: [AnalyticsProjection()])
        func apply(_ items: [CallWorkload.Item]) async throws {
            let before = running.runner.statistics["analytics"]?.applied ?? 0
            try await fixture.publish(items)
            try await eventually("the batch is applied") { running.runner.statistics["analytics"]?.applied == before + items.count }
        }
        // One batch: weaker, stronger, an equal one after it; two summaries.
        try await apply([intent("a", .support, 0.4), summary("a", .negative, words: 10), intent("a", .sales, 0.9), intent("a", .billing, 0.9),
                         summary("a", .positive, words: 20), summary("b", .neutral, words: 5), intent("c", .appointment, 0.3)])
        // A later batch: a weaker intent and a new summary for a; a stronger intent for c.
        try await apply([intent("a", .complaint, 0.5), summary("a", .neutral, words: 30), intent("c", .complaint, 0.8)])
        try await running.stop()
        var found: [String: String] = [:]
        for row in try await fixture.db.query("SELECT call_id, intent, intent_confidence, sentiment, word_count FROM call_analytics") {
            let id = try row.decode(Identifier.self, "call_id")
            let name = ["a", "b", "c"].first { call($0) == id } ?? "?"
            let confidence = try row.decode(Double?.self, "intent_confidence").map { String($0) } ?? "-"
            found[name] = "\(try row.decode(String?.self, "intent") ?? "-") \(confidence) \(try row.decode(String?.self, "sentiment") ?? "-") \(try row.decode(Int?.self, "word_count").map(String.init) ?? "-")"
        }
        #expect(found == ["a": "sales 0.9 neutral 30", "b": "- - neutral 5", "c": "complaint 0.8 - -"])
        try await fixture.drop()
    }

    @Test func twoInstancesShareThePartitionsAndNeverDoubleApply() async throws {
        let fixture = try await ProjectorFixture(partitions: 8)
        var workload = CallWorkload(seed: 2, tenants: 4)
        try await fixture.publish(workload.provisioning())
        let projections: [any Projection] = [ArchiveProjection(), BillingProjection(), AnalyticsProjection(), CallsProjection()]
        let a = try fixture.runner(instance: "a", projections: projections)
        let b = try fixture.runner(instance: "b", projections: projections)
        var sawBothOwning = false
        for _ in 0..<10 {
            try await fixture.publish(workload.calls(30))
            try await Task.sleep(for: .milliseconds(200))
            let owning = [a, b].map { $0.runner.statistics["billing"]?.partitions ?? 0 }
            if owning.allSatisfy({ $0 > 0 }) { sawBothOwning = true }
        }
        try await eventually("both instances own partitions", within: .seconds(10)) {
            [a, b].allSatisfy { ($0.runner.statistics["billing"]?.partitions ?? 0) > 0 }
        }
        sawBothOwning = sawBothOwning || [a, b].allSatisfy { ($0.runner.statistics["billing"]?.partitions ?? 0) > 0 }
        #expect(sawBothOwning)
        try await eventually("every projection caught up", within: .seconds(60)) {
            try await fixture.status(projections).allSatisfy { $0.gap == 0 }
        }
        // Instance a stops: b takes over its partitions and carries on alone.
        try await a.stop()
        try await fixture.publish(workload.calls(40))
        try await eventually("every projection caught up after a left", within: .seconds(60)) {
            try await fixture.status(projections).allSatisfy { $0.gap == 0 }
        }
        try await eventually("b owns every partition", within: .seconds(10)) { b.runner.statistics["billing"]?.partitions == 8 }
        try await b.stop()

        let usageEntries = fixture.items.filter { $0.envelope.type == UsageRecorded.type }.count
        let applied = [a, b].map { $0.runner.statistics["billing"]?.applied ?? 0 }
        #expect(applied.reduce(0, +) == usageEntries, "applied \(applied), published \(usageEntries)")
        #expect(applied.allSatisfy { $0 > 0 })
        let expected = try await ReadModels.fold(eventLog: fixture.db)
        var actual = try await ReadModels.read(fixture.db)
        actual.transcripts = expected.transcripts  // not projected in this test
        actual.leads = expected.leads
        actual.interactions = expected.interactions
        actual.turns = expected.turns
        actual.outcomes = expected.outcomes
        #expect(actual == expected, "\(actual.differences(from: expected))")
        try await fixture.drop()
    }

    @Test func entriesThatCannotBeAppliedAreRecordedAndTheRestIsApplied() async throws {
        let fixture = try await ProjectorFixture(partitions: 1)
        let tenant = Identifier.v7()
        let now = Timestamp.now
        func contact(_ name: String, phone: String) -> CallWorkload.Item { contactUpserted(name, phone: phone, tenant: tenant, at: now) }
        // The second contact claims the first one's phone under another id: the database refuses it.
        let good = contact("Ada", phone: "+14155550001")
        let clash = contact("Bob", phone: "+14155550001")
        let other = contact("Cy", phone: "+14155550002")
        // A lead whose payload breaks its schema (bad email): undecodable.
        var broken = EventEnvelope(LeadCreated(leadID: .v7(), name: "Dee", email: "dee@example.com", intent: .sales, source: .api, createdAt: now), tenant: tenant, source: "/test")
        broken.data = Array(String(decoding: broken.data, as: UTF8.self).replacingOccurrences(of: "dee@example.com", with: "not-an-email").utf8)
        try await fixture.publish([good, clash, .init(envelope: broken, category: .crm), other])

        let running = try fixture.runner(projections: [CRMProjection()])
        try await eventually("the crm projection caught up", within: .seconds(20)) {
            try await fixture.status([CRMProjection()]).allSatisfy { $0.gap == 0 }
        }
        try await running.stop()
        let names = try await fixture.db.query("SELECT name FROM crm_contacts ORDER BY name").map { try $0.decode(String.self, "name") }
        #expect(names == ["Ada", "Cy"])
        let failures = try await fixture.db.query("SELECT event_id, error, fields->>'type' AS type FROM projection_failures WHERE projection = 'crm' ORDER BY entry_id")
        #expect(failures.count == 2)
        #expect(try failures[0].decode(Identifier.self, "event_id") == clash.envelope.id)
        #expect(try failures[0].decode(String.self, "error").contains("23505"))
        #expect(try failures[1].decode(Identifier.self, "event_id") == broken.id)
        #expect(try failures[1].decode(String.self, "error").contains("email"))
        #expect(try failures[1].decode(String.self, "type") == LeadCreated.type)
        #expect(running.runner.statistics["crm"]?.failed == 2)
        let status = try await fixture.status([CRMProjection()])
        #expect(status[0].failures == 2)
        try await fixture.drop()
    }

    @Test("an event the database refuses costs only itself: the other projections of its batch apply everything")
    func aRefusalInOneProjectionLeavesTheOthersOfItsBatchWhole() async throws {
        let fixture = try await ProjectorFixture(partitions: 1)
        let tenant = Identifier.v7()
        let now = Timestamp.now
        func contact(_ name: String, phone: String) -> CallWorkload.Item { contactUpserted(name, phone: phone, tenant: tenant, at: now) }
        // One batch: the database refuses the clash in crm_contacts (the same phone under another id),
        // which rolls back the batch's first attempt for the archive too.
        let items = [contact("Ada", phone: "+14155550001"), contact("Bob", phone: "+14155550001"), contact("Cy", phone: "+14155550002")]
        try await fixture.publish(items)

        let projections: [any Projection] = [ArchiveProjection(), CRMProjection()]
        let running = try fixture.runner(projections: projections)
        try await eventually("both projections caught up", within: .seconds(20)) {
            try await fixture.status(projections).allSatisfy { $0.gap == 0 }
        }
        try await running.stop()
        let archived = try await fixture.db.query("SELECT event_id FROM event_log ORDER BY entry_id").map { try $0.decode(Identifier.self, "event_id") }
        #expect(archived == items.map(\.envelope.id))
        let names = try await fixture.db.query("SELECT name FROM crm_contacts ORDER BY name").map { try $0.decode(String.self, "name") }
        #expect(names == ["Ada", "Cy"])
        let failures = try await fixture.db.query("SELECT projection, event_id FROM projection_failures ORDER BY entry_id")
        #expect(failures.count == 1)
        #expect(try failures.first?.decode(String.self, "projection") == "crm")
        #expect(try failures.first?.decode(Identifier.self, "event_id") == items[1].envelope.id)
        let checkpoints = try await fixture.db.query("SELECT projection, last_entry_id FROM projection_checkpoints ORDER BY projection")
        #expect(try checkpoints.map { try $0.decode(String.self, "projection") } == ["archive", "crm"])
        #expect(Set(try checkpoints.map { try $0.decode(String.self, "last_entry_id") }).count == 1)
        #expect(running.runner.statistics["archive"]?.applied == 3)
        #expect(running.runner.statistics["crm"]?.applied == 2)
        #expect(running.runner.statistics["crm"]?.failed == 1)
        try await fixture.drop()
    }

    @Test("the archive keeps each payload byte for byte (key order, spacing, repeated keys, an escaped NUL), in large batches and small")
    func theArchiveKeepsEachPayloadByteForByte() async throws {
        let fixture = try await ProjectorFixture(partitions: 1)
        let tenant = Identifier.v7()
        // Another team's event type: valid JSON that a parsed form (jsonb) would reorder, respace,
        // deduplicate, or refuse outright (jsonb has no NUL in text).
        let raw = #"{"zeta": 1,  "alpha": "a NUL \u0000 inside", "alpha": 2.50}"#
        func noted() -> CallWorkload.Item {
            let id = Identifier.v7()
            return .init(envelope: EventEnvelope(id: id, source: "/partner", type: "com.example.partner.noted", subject: "note-1",
                                                 dataschema: "https://example.com/schemas/noted/v1", tenantID: tenant, correlationID: id, data: Array(raw.utf8)),
                         category: .crm)
        }
        // A backlog larger than the archive's array insert takes (one batch, copied), then one event alone (inserted).
        try await fixture.publish((0...ArchiveProjection.insertedUpTo).map { _ in noted() })
        let running = try fixture.runner(projections: [ArchiveProjection()])
        try await eventually("the backlog is archived") { running.runner.statistics["archive"]?.applied == ArchiveProjection.insertedUpTo + 1 }
        #expect(running.runner.statistics["archive"]?.batches == 1)
        try await fixture.publish([noted()])
        try await eventually("the last event is archived") { running.runner.statistics["archive"]?.applied == ArchiveProjection.insertedUpTo + 2 }
        try await running.stop()
        let stored = try await fixture.db.query("SELECT event_id, payload::text AS payload FROM event_log")
        #expect(Set(try stored.map { try $0.decode(Identifier.self, "event_id") }) == Set(fixture.items.map(\.envelope.id)))
        #expect(try stored.allSatisfy { try $0.decode(String.self, "payload") == raw })
        #expect(running.runner.statistics["archive"]?.failed == 0)
        #expect(running.runner.statistics["archive"]?.batches == 2)
        try await fixture.drop()
    }

    @Test("an event republished into a large batch is archived once, and the rest of its batch is archived")
    func republishedEventsInACopiedBatchAreArchivedOnce() async throws {
        let fixture = try await ProjectorFixture(partitions: 1)
        let tenant = Identifier.v7()
        func noted(_ id: Identifier = .v7()) -> CallWorkload.Item {
            .init(envelope: EventEnvelope(id: id, source: "/partner", type: "com.example.partner.noted", subject: "note",
                                          dataschema: "https://example.com/schemas/noted/v1", tenantID: tenant, correlationID: id, data: Array("{}".utf8)),
                  category: .crm)
        }
        let first = (0..<150).map { _ in noted() }
        try await fixture.publish(first)
        var running = try fixture.runner(projections: [ArchiveProjection()])
        try await eventually("the first batch is archived") { running.runner.statistics["archive"]?.applied == 150 }
        try await running.stop()
        // One batch of 153 (copied, not inserted): three republished events among new ones.
        var second = (0..<150).map { _ in noted() }
        for (offset, old) in [5, 77, 149].enumerated() { second.insert(noted(first[old].envelope.id), at: 40 * (offset + 1)) }
        try await fixture.publish(second)
        running = try fixture.runner(projections: [ArchiveProjection()])
        try await eventually("the second batch is archived") { running.runner.statistics["archive"]?.applied == 153 }
        try await running.stop()
        #expect(running.runner.statistics["archive"]?.batches == 1)
        #expect(running.runner.statistics["archive"]?.failed == 0)
        let ids = try await fixture.db.query("SELECT event_id FROM event_log").map { try $0.decode(Identifier.self, "event_id") }
        #expect(ids.count == 300)
        let missing = Set((first + second).map(\.envelope.id)).subtracting(ids)
        #expect(missing.isEmpty, "\(missing.count) events not archived")
        // Each row names the stream entry it was archived from (the first one of a republished id).
        let entries = try await fixture.db.query("SELECT event_id, stream, entry_id FROM event_log")
        let published = Dictionary(fixture.published.map { ($0.eventID, "\($0.stream) \($0.entryID)") }, uniquingKeysWith: { first, _ in first })
        #expect(try entries.allSatisfy { row in
            try published[row.decode(Identifier.self, "event_id")] == "\(try row.decode(String.self, "stream")) \(try row.decode(String.self, "entry_id"))"
        })
        #expect(try await fixture.db.query("SELECT count(*) AS n FROM projection_failures")[0].decode(Int.self, "n") == 0)
        try await fixture.drop()
    }

    @Test func statusShowsTheGapAndTheAgeOfTheOldestUnprojectedEvent() async throws {
        let fixture = try await ProjectorFixture(partitions: 4)
        var workload = CallWorkload(seed: 3, tenants: 2)
        try await fixture.publish(workload.calls(20))
        let usage = fixture.items.filter { $0.category == .billing }.count
        try await Task.sleep(for: .milliseconds(300))
        let before = try await fixture.status([BillingProjection()])[0]
        #expect(before.gap == usage)
        #expect((before.oldestUnprojectedSeconds ?? 0) >= 0.3)
        // The same figures as gauges.
        let metrics = TestMetrics()
        let runner = ProjectorRunner(projections: [BillingProjection()], redis: try RedisConfiguration(url: TestRedis.url),
                                     postgres: try PostgresConfiguration(url: fixture.databaseURL), configuration: fixture.configuration(instance: "gauges"))
        let readiness = ProjectorReadiness(runner: runner, naming: fixture.naming, redis: try RedisConfiguration(url: TestRedis.url),
                                           postgres: try PostgresConfiguration(url: fixture.databaseURL), factory: metrics)
        try await readiness.sample(streams: StreamInspector(connection: BusConnection(RedisClient(fixture.redis))), db: fixture.db, at: .now)
        #expect(try metrics.expectGauge(ProjectorMetricNames.gap, [("projection", "billing")]).lastValue == Double(usage))
        #expect(try metrics.expectGauge(ProjectorMetricNames.oldestUnprojected, [("projection", "billing")]).lastValue ?? 0 >= 0.3)
        let running = try fixture.runner(projections: [BillingProjection()])
        try await eventually("billing caught up", within: .seconds(20)) { try await fixture.status([BillingProjection()])[0].gap == 0 }
        try await running.stop()
        let after = try await fixture.status([BillingProjection()])[0]
        #expect(after.gap == 0 && after.oldestUnprojectedSeconds == nil)
        #expect(after.streams.allSatisfy { $0.checkpoint == $0.head })
        try await fixture.drop()
    }

    /// Workers read with NOACK: what a worker read and did not commit is neither pending nor in
    /// the group's lag. The gap still counts it, and the next owner is delivered it again.
    @Test func entriesReadButNotCommittedCountInTheGapAndAreAppliedByTheNextOwner() async throws {
        let fixture = try await ProjectorFixture(partitions: 2)
        var workload = CallWorkload(seed: 5, tenants: 2)
        try await fixture.publish(workload.calls(20))
        let usage = fixture.items.filter { $0.category == .billing }.count
        // A worker of the billing projector reads everything and dies before it commits (with an
        // entries-read count, so Redis knows the group's lag, as it does for a live projector).
        let group = ProjectorConfiguration.group(of: ["billing"])
        let streams = fixture.naming.streams(.billing, kind: .event)
        for stream in streams {
            _ = try await fixture.redis.execute(.xgroupCreate(stream, group: group, start: .beginning, entriesRead: 0))
        }
        let read = try await RedisClient(fixture.redis).readGroup(group: group, consumer: "dead", streams: streams.map { ($0, .newEntries) },
                                                                  count: 10_000, block: nil, noAck: true)
        #expect(read.reduce(0) { $0 + $1.entries.count } == usage)
        for stream in streams {
            let info = try await fixture.redis.execute(.xinfoGroups(stream)).first { $0.name == group }
            #expect(info?.pending == 0 && info?.lag == 0, "\(stream): nothing pending, nothing left to deliver")
        }
        #expect(try await fixture.status([BillingProjection()])[0].gap == usage)

        let running = try fixture.runner(projections: [BillingProjection()])
        try await eventually("billing caught up", within: .seconds(20)) { running.runner.statistics["billing"]?.applied == usage }
        try await running.stop()
        #expect(try await fixture.status([BillingProjection()])[0].gap == 0)
        // Every usage line once: the entries the dead worker had read were applied, none twice.
        var usageIDs = Set<Identifier>()
        for item in fixture.items where item.category == .billing {
            if case .known(_, let message) = try MessageRegistry.standard.decode(item.envelope), let recorded = message as? UsageRecorded {
                usageIDs.insert(recorded.usageID)
            }
        }
        #expect(usageIDs.count > 10)
        let stored = try await fixture.db.query("SELECT usage_id FROM billing_usage_items").map { try $0.decode(Identifier.self, "usage_id") }
        #expect(stored.count == usageIDs.count && Set(stored) == usageIDs)
        try await fixture.drop()
    }
}

/// A new contact (its own id) with this phone number.
private func contactUpserted(_ name: String, phone: String, tenant: Identifier, at now: Timestamp) -> CallWorkload.Item {
    .init(envelope: EventEnvelope(ContactUpserted(contactID: .v7(), name: name, phone: phone, firstSeenAt: now, lastSeenAt: now),
                                  tenant: tenant, source: "/test"), category: .crm)

}
