import Foundation
import Testing
import VoiceCoreEvents
import VoiceCorePostgres
@testable import VoiceCoreProjections
import VoiceCoreRedis
import VoiceCoreSimulation
import VoiceCoreTime

/// business_metrics counts the tenant's days (its zone in the tenant directory), around midnight
/// and daylight saving time, and a replay counts the same days; migration 0011 moves rows counted
/// in UTC days to the tenant's days, as a replay would count them.
@Suite("Analytics in the tenant's time zone", .serialized)
struct TenantDaysTests {
    static func time(_ text: String) -> Timestamp {
        guard let time = Timestamp(rfc3339: text) else { fatalError("bad test time \(text)") }
        return time
    }

    static func ended(_ tenant: Identifier, _ call: Identifier, at text: String, answered: Bool, seconds: Int) -> CallWorkload.Item {
        let message = CallEnded(callID: call, endedAt: time(text), status: answered ? .completed : .noAnswer,
                                durationSeconds: answered ? seconds : 0, answered: answered)
        return CallWorkload.Item(envelope: EventEnvelope(message, tenant: tenant, source: "/test", time: time(text)), category: .calls)
    }

    static func lead(_ tenant: Identifier, at text: String) -> CallWorkload.Item {
        let message = LeadCreated(leadID: .v7(), name: "Ada", phone: "+14155550100", intent: .sales, source: .api, createdAt: time(text))
        return CallWorkload.Item(envelope: EventEnvelope(message, tenant: tenant, source: "/test", time: time(text)), category: .crm)
    }

    /// `day calls answered missed handle_seconds leads`, per row of the tenant, by day.
    static func days(_ db: PostgresConnection, _ tenant: Identifier) async throws -> [String] {
        try await db.query("""
            SELECT day::text || ' ' || calls || ' ' || answered || ' ' || missed || ' ' || handle_seconds || ' ' || leads AS row
            FROM business_metrics WHERE tenant_id = \(tenant.uuid) ORDER BY day
            """).map { try $0.decode(String.self, "row") }
    }

    static func addToDirectory(_ db: PostgresConnection, _ tenant: Identifier, zone: String) async throws {
        try await db.query("INSERT INTO tenant_directory (tenant_id, name, plan, time_zone) VALUES (\(tenant.uuid), 'Test', 'growth', \(zone))")
    }

    static let newYork = Identifier.v7(), kolkata = Identifier.v7(), unlisted = Identifier.v7(), unknownZone = Identifier.v7()

    /// Calls and leads whose local day differs from their UTC day, on both sides of midnight and
    /// of both DST changes of 2026 in New York (EDT from 8 March 07:00 UTC, EST from 1 November
    /// 06:00 UTC), with what each tenant's days must be.
    static func workload() -> (items: [CallWorkload.Item], expected: [Identifier: [String]]) {
        let first = Identifier.v7()
        let items = [
            ended(newYork, first, at: "2026-11-25T03:30:00Z", answered: true, seconds: 60),      // 24 Nov 22:30 EST
            ended(newYork, .v7(), at: "2026-11-25T04:59:59Z", answered: false, seconds: 0),      // 24 Nov 23:59:59
            ended(newYork, .v7(), at: "2026-11-25T05:00:00Z", answered: true, seconds: 30),      // 25 Nov 00:00
            ended(newYork, .v7(), at: "2026-11-24T23:30:00Z", answered: true, seconds: 10),      // 24 Nov 18:30
            ended(newYork, first, at: "2026-11-26T12:00:00Z", answered: true, seconds: 99),      // a second CallEnded: counted once, on its first day
            ended(newYork, .v7(), at: "2026-03-08T04:30:00Z", answered: true, seconds: 5),       // 7 Mar 23:30 EST
            ended(newYork, .v7(), at: "2026-03-09T04:30:00Z", answered: false, seconds: 0),      // 9 Mar 00:30 EDT (EST would say 8 Mar)
            ended(newYork, .v7(), at: "2026-11-01T04:30:00Z", answered: true, seconds: 7),       // 1 Nov 00:30 EDT (EST would say 31 Oct)
            ended(newYork, .v7(), at: "2026-11-02T04:30:00Z", answered: true, seconds: 8),       // 1 Nov 23:30 EST (EDT would say 2 Nov)
            lead(newYork, at: "2026-11-25T02:00:00Z"),                                            // 24 Nov 21:00
            lead(newYork, at: "2026-11-25T06:00:00Z"),                                            // 25 Nov 01:00
            ended(kolkata, .v7(), at: "2026-11-24T19:00:00Z", answered: true, seconds: 20),      // 25 Nov 00:30 IST
            ended(kolkata, .v7(), at: "2026-11-24T18:29:59Z", answered: true, seconds: 40),      // 24 Nov 23:59:59
            ended(unlisted, .v7(), at: "2026-11-25T03:30:00Z", answered: true, seconds: 15),     // no directory row: UTC
            ended(unknownZone, .v7(), at: "2026-11-25T03:30:00Z", answered: true, seconds: 25),  // a zone Postgres does not know: UTC
        ]
        let expected: [Identifier: [String]] = [
            newYork: ["2026-03-07 1 1 0 5 0", "2026-03-09 1 0 1 0 0", "2026-11-01 2 2 0 15 0", "2026-11-24 3 2 1 70 1", "2026-11-25 1 1 0 30 1"],
            kolkata: ["2026-11-24 1 1 0 40 0", "2026-11-25 1 1 0 20 0"],
            unlisted: ["2026-11-25 1 1 0 15 0"],
            unknownZone: ["2026-11-25 1 1 0 25 0"],
        ]
        return (items, expected)
    }

    @Test("calls count on the tenant's local day around midnight and DST; a replay rebuilds the same rows")
    func localDaysAndReplay() async throws {
        let fixture = try await ProjectorFixture()
        defer { Task { try? await fixture.drop() } }
        try await Self.addToDirectory(fixture.db, Self.newYork, zone: "America/New_York")
        try await Self.addToDirectory(fixture.db, Self.kolkata, zone: "Asia/Kolkata")
        // Written before provisioning checked names against Postgres: the projection must not fail on it.
        try await Self.addToDirectory(fixture.db, Self.unknownZone, zone: "US/Pacific-New")
        let (items, expected) = Self.workload()
        try await fixture.publish(items)
        let projections: [any Projection] = [ArchiveProjection(), AnalyticsProjection()]
        let projector = try fixture.runner(projections: projections)
        try await eventually("the analytics caught up", within: .seconds(60)) {
            try await fixture.status(projections).allSatisfy { $0.gap == 0 }
        }
        try await projector.stop()

        for (tenant, days) in expected {
            #expect(try await Self.days(fixture.db, tenant) == days, "tenant \(tenant)")
        }
        let failures = try await fixture.db.query("SELECT count(*) AS n FROM projection_failures")[0].decode(Int.self, "n")
        #expect(failures == 0, "no event refused")

        // Replay: the same rows, rebuilt from the archive.
        let tables = AnalyticsProjection().tables
        let before = try await ReplayTests.snapshot(fixture.db, tables: tables)
        let replayer = try ReplayTests.replayer(fixture, "analytics")
        let verify = try await replayer.run(ReplayOptions(mode: .verify, batchSize: 4))
        #expect(verify.differences.isEmpty, "\(verify.differences)")
        try await fixture.db.query("DELETE FROM business_metrics")
        try await fixture.db.query("DELETE FROM business_metrics_leads")
        try await fixture.db.query("UPDATE call_analytics SET counted_day = NULL")
        _ = try await replayer.run(ReplayOptions(mode: .rebuild, batchSize: 4))
        let after = try await ReplayTests.snapshot(fixture.db, tables: tables)
        for table in tables { #expect(after[table] == before[table], "\(table) rebuilt as it was") }
    }

    @Test("migration 0011 moves rows counted in UTC days to the tenant's days, as a replay counts them")
    func migrationRebuckets() async throws {
        let schema = TestSchema()
        let db = try await schema.create()
        defer { Task { try? await schema.drop(db) } }
        // The schema as it was before 0011.
        let all = try FileManager.default.contentsOfDirectory(atPath: TestSchema.migrations.path).filter { $0.hasSuffix(".sql") }
        var before: [String: String] = [:]
        for name in all where name < "0011" {
            before[name] = try String(contentsOf: TestSchema.migrations.appendingPathComponent(name), encoding: .utf8)
        }
        _ = try await Migrator(connection: db, directory: try TestSchema.directory(before)).up()
        try await Self.addToDirectory(db, Self.newYork, zone: "America/New_York")
        try await Self.addToDirectory(db, Self.kolkata, zone: "Asia/Kolkata")
        try await Self.addToDirectory(db, Self.unknownZone, zone: "US/Pacific-New")

        // The archive, and the analytics rows the projection wrote before 0011: every day a UTC day.
        let (items, expected) = Self.workload()
        let events = try items.enumerated().map { index, item in
            guard case .known(_, let message) = try MessageRegistry.standard.decode(item.envelope) else { throw ReplayError("unknown test event") }
            return ProjectedEvent(stream: "test:\(item.category.rawValue):0", entryID: StreamEntryID(milliseconds: 1_000 + UInt64(index)),
                                  envelope: item.envelope, message: message)
        }
        try await db.withTransaction { db in try ArchiveProjection().apply(events, in: db) }
        try await db.query("""
            INSERT INTO call_analytics (tenant_id, call_id, duration_seconds, outcome, counted_day)
            SELECT DISTINCT ON (tenant_id, payload->>'call_id') tenant_id, (payload->>'call_id')::uuid, (payload->>'duration_seconds')::int,
                   payload->>'status', ((payload->>'ended_at')::timestamptz AT TIME ZONE 'UTC')::date
            FROM event_log WHERE type = 'voicecore.call.ended' ORDER BY tenant_id, payload->>'call_id', entry_id
            """)
        try await db.query("""
            INSERT INTO business_metrics_leads (tenant_id, lead_id, day)
            SELECT tenant_id, (payload->>'lead_id')::uuid, ((payload->>'created_at')::timestamptz AT TIME ZONE 'UTC')::date
            FROM event_log WHERE type = 'voicecore.crm.lead-created'
            """)
        try await db.query("""
            INSERT INTO business_metrics (tenant_id, day, calls, answered, missed, handle_seconds, leads)
            SELECT tenant_id, day, sum(calls), sum(answered), sum(missed), sum(handle_seconds), sum(leads) FROM (
              SELECT a.tenant_id, a.counted_day AS day, 1 AS calls, (e.payload->>'answered')::boolean::int AS answered,
                     (NOT (e.payload->>'answered')::boolean)::int AS missed, a.duration_seconds AS handle_seconds, 0 AS leads
              FROM call_analytics a JOIN event_log e ON e.type = 'voicecore.call.ended' AND e.tenant_id = a.tenant_id
                AND (e.payload->>'call_id')::uuid = a.call_id AND e.entry_id = (
                  SELECT min(entry_id) FROM event_log f WHERE f.type = e.type AND f.tenant_id = e.tenant_id AND f.payload->>'call_id' = e.payload->>'call_id')
              UNION ALL
              SELECT tenant_id, day, 0, 0, 0, 0, 1 FROM business_metrics_leads) d
            GROUP BY 1, 2
            """)
        #expect(try await Self.days(db, Self.newYork).contains("2026-11-25 3 2 1 90 2"), "counted in UTC days before 0011")

        _ = try await Migrator(connection: db, directory: TestSchema.migrations).up()
        for (tenant, days) in expected {
            #expect(try await Self.days(db, tenant) == days, "tenant \(tenant)")
        }
        // What a replay of the archive counts is what the migration left.
        let separator = TestSchema.url.contains("?") ? "&" : "?"
        let replayer = Replayer(projection: AnalyticsProjection(),
                                postgres: try PostgresConfiguration(url: TestSchema.url + separator + "options=-c%20search_path%3D\(schema.name)"))
        let verify = try await replayer.run(ReplayOptions(mode: .verify))
        #expect(verify.differences.isEmpty, "\(verify.differences)")
    }
}
