import Foundation
import Testing
import VoiceCoreBus
import VoiceCoreEvents
import VoiceCorePostgres
@testable import VoiceCoreProjections
import VoiceCoreSimulation
import VoiceCoreTime

/// `voicecore replay` against real Redis and Postgres.
@Suite("Replay", .serialized)
struct ReplayTests {
    static let replayed = StandardProjections.all.filter(\.isReplayable)

    /// Every row of the tables as text, per table (columns stamped at write time left out).
    static func snapshot(_ db: PostgresConnection, tables: [String], tenant: Identifier? = nil, excludingTenant: Identifier? = nil) async throws -> [String: [String]] {
        var result: [String: [String]] = [:]
        for table in tables {
            let columns = try await db.query("""
                SELECT column_name FROM information_schema.columns
                WHERE table_schema = current_schema() AND table_name = \(table) AND column_name NOT IN ('updated_at', 'recorded_at') ORDER BY ordinal_position
                """).map { "\"\(try $0.decode(String.self, "column_name"))\"" }.joined(separator: ", ")
            let rows = try await db.query(PostgresQuery(unsafeSQL: """
                SELECT r::text AS row FROM (SELECT \(columns) FROM \(table)) r
                WHERE ($1::uuid IS NULL OR r.tenant_id = $1) AND ($2::uuid IS NULL OR r.tenant_id <> $2) ORDER BY 1
                """, binds: [PostgresBind(tenant?.uuid), PostgresBind(excludingTenant?.uuid)]))
            result[table] = try rows.map { try $0.decode(String.self, "row") }
        }
        return result
    }

    static func replayer(_ fixture: ProjectorFixture, _ name: String) throws -> Replayer {
        Replayer(projection: try StandardProjections.named([name])[0], postgres: try PostgresConfiguration(url: fixture.databaseURL))
    }

    /// A fixture with a projected workload, its projector still running (and the workload, to go on with).
    static func live(seed: UInt64, calls: Int = 120, tenants: Int = 3) async throws -> (ProjectorFixture, CallWorkload, RunningProjector) {
        let fixture = try await ProjectorFixture()
        var workload = CallWorkload(seed: seed, tenants: tenants)
        try await fixture.publish(workload.provisioning() + workload.calls(calls))
        let projector = try fixture.runner()
        try await fixture.waitUntilCaughtUp()
        return (fixture, workload, projector)
    }

    /// A fixture with a projected workload.
    static func projected(seed: UInt64, calls: Int = 120, tenants: Int = 3) async throws -> (ProjectorFixture, [Identifier]) {
        let (fixture, workload, projector) = try await live(seed: seed, calls: calls, tenants: tenants)
        try await projector.stop()
        return (fixture, workload.tenants)
    }

    /// Nothing lost and nothing counted twice: the read models equal a fold of the archive, which
    /// holds every published event once.
    static func expectReadModelsFoldTheArchive(_ fixture: ProjectorFixture) async throws {
        let expected = try await ReadModels.fold(eventLog: fixture.db)
        let actual = try await ReadModels.read(fixture.db)
        #expect(actual == expected, "\(actual.differences(from: expected))")
        let archived = try await fixture.db.query("SELECT count(*) AS n FROM event_log")[0].decode(Int.self, "n")
        #expect(archived == Set(fixture.published.map(\.eventID)).count, "every published event archived once")
    }

    /// Damage: rows deleted and rows changed in every replayable projection's tables.
    static func damage(_ db: PostgresConnection, tenant: Identifier? = nil) async throws {
        let id = tenant?.uuid
        try await db.query("DELETE FROM call_sessions WHERE ($1::uuid IS NULL OR tenant_id = $1) AND call_id::text < '8'".bound(id))
        try await db.query("UPDATE transcripts SET text = 'tampered' WHERE ($1::uuid IS NULL OR tenant_id = $1) AND sequence % 3 = 0".bound(id))
        try await db.query("UPDATE billing_usage SET quantity = quantity + 1 WHERE $1::uuid IS NULL OR tenant_id = $1".bound(id))
        try await db.query("DELETE FROM business_metrics WHERE $1::uuid IS NULL OR tenant_id = $1".bound(id))
        try await db.query("DELETE FROM leads WHERE $1::uuid IS NULL OR tenant_id = $1".bound(id))
        try await db.query("UPDATE tenants SET name = 'tampered' WHERE $1::uuid IS NULL OR tenant_id = $1".bound(id))
    }

    @Test("a rebuild after a random workload equals the live tables, and repairs damaged ones")
    func rebuildEqualsLive() async throws {
        let (fixture, _) = try await Self.projected(seed: 11)
        defer { Task { try? await fixture.drop() } }
        let tables = Self.replayed.flatMap(\.tables)
        let before = try await Self.snapshot(fixture.db, tables: tables)
        for projection in Self.replayed {
            let report = try await Self.replayer(fixture, projection.name).run(ReplayOptions(mode: .verify, batchSize: 97))
            #expect(report.differences.isEmpty, "\(projection.name): \(report.differences)")
            #expect(report.eventsRead > 0)
        }
        try await Self.damage(fixture.db)
        let verify = try await Self.replayer(fixture, "calls").run(ReplayOptions(mode: .verify))
        #expect(!verify.differences.isEmpty, "verify sees the damage")
        for projection in Self.replayed {
            _ = try await Self.replayer(fixture, projection.name).run(ReplayOptions(mode: .rebuild, batchSize: 97))
        }
        let after = try await Self.snapshot(fixture.db, tables: tables)
        for table in tables { #expect(after[table] == before[table], "\(table) rebuilt as it was") }
        // This schema's shadows only: other tests replay in schemas of their own meanwhile.
        let shadows = Self.replayed.map { Replayer.shadowSchema(of: $0.name, live: fixture.schema.name) }
        #expect(try await fixture.db.query("SELECT count(*) AS n FROM pg_namespace WHERE nspname = ANY(\(shadows)::text[])")[0].decode(Int.self, "n") == 0, "no shadow schema left")
    }

    @Test("a per-tenant rebuild leaves every other tenant's rows byte-for-byte identical")
    func perTenant() async throws {
        let (fixture, tenants) = try await Self.projected(seed: 12, tenants: 3)
        defer { Task { try? await fixture.drop() } }
        let tables = Self.replayed.flatMap(\.tables)
        let target = tenants[0], other = tenants[1]
        let targetBefore = try await Self.snapshot(fixture.db, tables: tables, tenant: target)
        try await Self.damage(fixture.db, tenant: target)
        try await Self.damage(fixture.db, tenant: other)
        let othersDamaged = try await Self.snapshot(fixture.db, tables: tables, excludingTenant: target)
        for projection in Self.replayed {
            var options = ReplayOptions(mode: .rebuild)
            options.tenant = target
            _ = try await Self.replayer(fixture, projection.name).run(options)
        }
        #expect(try await Self.snapshot(fixture.db, tables: tables, tenant: target) == targetBefore, "the tenant is repaired")
        #expect(try await Self.snapshot(fixture.db, tables: tables, excludingTenant: target) == othersDamaged, "the others are untouched, damage included")
    }

    @Test("an interrupted rebuild leaves the live tables untouched and can simply be run again; a second one at once is refused")
    func interruptedAndRefused() async throws {
        let (fixture, _) = try await Self.projected(seed: 13)
        defer { Task { try? await fixture.drop() } }
        let tables = try StandardProjections.named(["calls"])[0].tables
        let before = try await Self.snapshot(fixture.db, tables: tables)
        try await Self.damage(fixture.db)
        let damaged = try await Self.snapshot(fixture.db, tables: tables)
        var options = ReplayOptions(mode: .rebuild, batchSize: 10)
        options.stopAfterBatches = 2
        await #expect(throws: ReplayError.self) { try await Self.replayer(fixture, "calls").run(options) }
        #expect(try await Self.snapshot(fixture.db, tables: tables) == damaged, "live tables untouched")

        // Another session holds the replay's lock: refused, saying why.
        let other = try await PostgresConnection.connect(try PostgresConfiguration(url: fixture.databaseURL))
        let lock = "voicecore.replay.\(fixture.schema.name).calls"
        _ = try await other.query("SELECT pg_advisory_lock(hashtext(\(lock)))")
        do {
            _ = try await Self.replayer(fixture, "calls").run(ReplayOptions(mode: .rebuild))
            Issue.record("a second replay started")
        } catch let error as ReplayError {
            #expect(error.description.contains("already running"))
        }
        await other.close()

        // The archive and the projection at different points (another projector runs one of
        // them): the swap is refused, the live tables stay.
        try await fixture.db.query("UPDATE projection_checkpoints SET last_entry_id = '1-0' WHERE projection = 'calls' AND stream = (SELECT min(stream) FROM projection_checkpoints WHERE projection = 'calls')")
        do {
            _ = try await Self.replayer(fixture, "calls").run(ReplayOptions(mode: .rebuild))
            Issue.record("the swap went ahead with the archive and the projection at different points")
        } catch let error as ReplayError {
            #expect(error.description.contains("not at the same point"))
        }
        #expect(try await Self.snapshot(fixture.db, tables: tables) == damaged, "live tables untouched")
        try await fixture.db.query("""
            UPDATE projection_checkpoints c SET last_entry_id = a.last_entry_id FROM projection_checkpoints a
            WHERE c.projection = 'calls' AND a.projection = 'archive' AND a.stream = c.stream
            """)

        _ = try await Self.replayer(fixture, "calls").run(ReplayOptions(mode: .rebuild))
        #expect(try await Self.snapshot(fixture.db, tables: tables) == before)
    }

    @Test("a rebuild during live traffic ends with no lost and no double-counted event")
    func duringLiveTraffic() async throws {
        let (fixture, initial, projector) = try await Self.live(seed: 14, calls: 80)
        var workload = initial
        defer { Task { try? await fixture.drop() } }
        // Publishing goes on while every projection is rebuilt.
        let traffic = Task {
            for _ in 0..<40 {
                try await fixture.publish(workload.calls(3))
                try await Task.sleep(for: .milliseconds(25))
            }
        }
        for projection in Self.replayed {
            _ = try await Self.replayer(fixture, projection.name).run(ReplayOptions(mode: .rebuild, batchSize: 50))
        }
        try await traffic.value
        try await fixture.waitUntilCaughtUp()
        try await projector.stop()
        try await Self.expectReadModelsFoldTheArchive(fixture)
        for projection in Self.replayed {
            let report = try await Self.replayer(fixture, projection.name).run(ReplayOptions(mode: .verify))
            #expect(report.differences.isEmpty, "\(projection.name): \(report.differences)")
        }
    }

    @Test("the live projector takes the swap's lock first: held, it waits before touching a table, and the swap's table locks go through")
    func liveProjectorLocksCheckpointsBeforeTables() async throws {
        let (fixture, initial, projector) = try await Self.live(seed: 21, calls: 10, tenants: 2)
        var workload = initial
        defer { Task { try? await fixture.drop() } }

        // What the swap does first, held open.
        let swap = try await PostgresConnection.connect(try PostgresConfiguration(url: fixture.databaseURL))
        try await swap.query("BEGIN")
        try await swap.query("SET LOCAL lock_timeout = '10s'")
        try await swap.query("LOCK TABLE projection_checkpoints IN SHARE ROW EXCLUSIVE MODE")
        let swapPID = try await swap.query("SELECT pg_backend_pid() AS pid")[0].decode(Int32.self, "pid")
        try await fixture.publish(workload.calls(5))

        // The projector's next batch waits for that lock...
        var waiting: Int32?
        try await eventually("the projector waits for projection_checkpoints", within: .seconds(30)) {
            waiting = try await fixture.db.query("""
                SELECT pid FROM pg_locks
                WHERE relation = 'projection_checkpoints'::regclass AND NOT granted AND pid <> \(swapPID) LIMIT 1
                """).first.map { try $0.decode(Int32.self, "pid") }
            return waiting != nil
        }
        // ...holding no lock on any table of this schema: the checkpoints are its first write.
        let held = try await fixture.db.query("""
            SELECT c.relname FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
            WHERE l.pid = \(waiting!) AND l.granted AND c.relnamespace = current_schema()::regnamespace ORDER BY 1
            """).map { try $0.decode(String.self, "relname") }
        #expect(held.isEmpty, "the waiting projector already holds locks on \(held): a swap locking those next would deadlock with it")
        // So the swap can go on to lock the tables it replaces (within its lock_timeout, no deadlock).
        for table in ["event_log", "call_sessions", "transcripts", "call_analytics", "billing_usage"] {
            try await swap.query(PostgresQuery(unsafeSQL: "LOCK TABLE \(PostgresQuery.quoteIdentifier(table)) IN ACCESS EXCLUSIVE MODE"))
        }
        try await swap.query("COMMIT")
        await swap.close()

        // Released, the batch goes through and nothing is lost.
        try await fixture.waitUntilCaughtUp()
        try await projector.stop()
        try await Self.expectReadModelsFoldTheArchive(fixture)
    }

    /// Two streams that each hold the leads of one half and the contacts of the other: the
    /// replay's two writers get one stream each, and each batch's links and leads cross. Written
    /// as two statements (links, then leads), the two writers locked each other's keys and the
    /// database broke a deadlock (a second's wait) in nearly every batch.
    @Test("a CRM rebuild whose writers' batches link each other's leads never deadlocks, and links every lead")
    func crmWritersNeverDeadlock() async throws {
        let fixture = try await ProjectorFixture()
        defer { Task { try? await fixture.drop() } }
        let tenant = Identifier.v7()
        // Two crm streams the replay gives to different writers (it shares streams out by hash).
        let streams = (0..<fixture.naming.partitions).map { fixture.naming.stream(.crm, kind: .event, partition: $0) }
        let first = try #require(streams.first)
        let second = try #require(streams.first { StreamNaming.fnv1a32($0.utf8) % 2 != StreamNaming.fnv1a32(first.utf8) % 2 })
        var rows: [(stream: String, entry: String, id: Identifier, type: String, subject: String, payload: [UInt8])] = []
        let leads = (0..<2_000).map { _ in (lead: Identifier.v7(), contact: Identifier.v7()) }
        let now = Timestamp.now
        for (index, pair) in leads.enumerated() {
            let lead = LeadCreated(leadID: pair.lead, name: "Lead \(index)", intent: .sales, source: .call, createdAt: now)
            let contact = ContactUpserted(contactID: pair.contact, phone: "+1415\(String(format: "%07d", index))", leadID: pair.lead,
                                          firstSeenAt: now, lastSeenAt: now)
            let (leadStream, contactStream) = index % 2 == 0 ? (first, second) : (second, first)
            rows.append((leadStream, "\(1_000 + index)-0", .v7(), LeadCreated.type, lead.subject, MessageCodec.encode(lead)))
            rows.append((contactStream, "\(1_000 + index)-1", .v7(), ContactUpserted.type, contact.subject, MessageCodec.encode(contact)))
        }
        try await fixture.db.query("""
            INSERT INTO event_log (event_id, stream, entry_id, type, version, tenant_id, subject, time, payload)
            SELECT id, stream, entry, type, 1, \(tenant), subject, now(), payload::json
            FROM unnest(\(rows.map(\.id))::uuid[], \(rows.map(\.stream))::text[], \(rows.map(\.entry))::text[], \(rows.map(\.type))::text[],
                        \(rows.map(\.subject))::text[], \(rows.map { String(decoding: $0.payload, as: UTF8.self) })::text[])
                 AS u(id, stream, entry, type, subject, payload)
            """)
        let options = ReplayOptions(mode: .rebuild, batchSize: 5_000, writers: 2)
        let report = try await Self.replayer(fixture, "crm").run(options)
        #expect(report.retried == 0, "writer transactions deadlocked and ran again: \(report.retried)")
        #expect(report.rejected == 0)
        let linked = try await fixture.db.query("SELECT count(*) AS n FROM leads WHERE tenant_id = \(tenant) AND contact_id IS NOT NULL")[0].decode(Int.self, "n")
        #expect(linked == leads.count, "every lead carries its contact")
    }

    @Test("old event versions in the archive are upcast on the way")
    func upcastsOldVersions() async throws {
        let (fixture, tenants) = try await Self.projected(seed: 15, calls: 20)
        defer { Task { try? await fixture.drop() } }
        // A version-1 chunk (speaker, final, offset in seconds), archived as an old projector left it.
        let call = Identifier.v7()
        let old = TranscriptChunkV1(callID: call, sequence: 4, speaker: .caller, text: "archived long ago", final: true, confidence: 0.8, offsetSeconds: 2.5)
        let stream = fixture.naming.stream(.calls, kind: .event, partition: 0)
        try await fixture.db.query("""
            INSERT INTO event_log (event_id, stream, entry_id, type, version, tenant_id, subject, time, payload)
            VALUES (\(Identifier.v7()), \(stream), '9999999999999-0', \(TranscriptChunk.type), 1, \(tenants[0]), \(call.description), now(),
                    \(PostgresJSON(rawJSON: MessageCodec.encode(old)))::jsonb)
            """)
        _ = try await Self.replayer(fixture, "transcripts").run(ReplayOptions(mode: .rebuild))
        let rows = try await fixture.db.query("SELECT track, text, start_offset_ms FROM transcripts WHERE call_id = \(call) AND sequence = 4")
        #expect(rows.count == 1)
        #expect(try rows.first?.decode(String.self, "track") == "inbound" && rows.first?.decode(String.self, "text") == "archived long ago")
        #expect(try rows.first?.decode(Int.self, "start_offset_ms") == 2500)
    }
}

private extension String {
    /// This SQL with one optional uuid bound as `$1`.
    func bound(_ value: UUID?) -> PostgresQuery { PostgresQuery(unsafeSQL: self, binds: [PostgresBind(value)]) }
}
