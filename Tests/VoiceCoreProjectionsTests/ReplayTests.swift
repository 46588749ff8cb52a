import Foundation
import Testing
import VoiceCoreBus
import VoiceCoreEvents
import VoiceCorePostgres
@testable import VoiceCoreProjections

/// `voicecore replay` against real Redis and Postgres.
@Suite("Replay", .serialized)
struct ReplayTests {
    static let replayed = StandardProjections.all.filter { $0.name != "archive" }

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

    /// A fixture with a projected workload.
    static func projected(seed: UInt64, calls: Int = 120, tenants: Int = 3) async throws -> (ProjectorFixture, [Identifier]) {
        let fixture = try await ProjectorFixture()
        var workload = CallWorkload(seed: seed, tenants: tenants)
        try await fixture.publish(workload.provisioning() + workload.calls(calls))
        let projector = try fixture.runner()
        try await fixture.waitUntilCaughtUp()
        try await projector.stop()
        return (fixture, workload.tenants)
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
        #expect(try await fixture.db.query("SELECT count(*) AS n FROM pg_namespace WHERE nspname LIKE 'replay_%'")[0].decode(Int.self, "n") == 0, "no shadow schema left")
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

        _ = try await Self.replayer(fixture, "calls").run(ReplayOptions(mode: .rebuild))
        #expect(try await Self.snapshot(fixture.db, tables: tables) == before)
    }

    @Test("a rebuild during live traffic ends with no lost and no double-counted event")
    func duringLiveTraffic() async throws {
        let fixture = try await ProjectorFixture()
        defer { Task { try? await fixture.drop() } }
        var workload = CallWorkload(seed: 14, tenants: 3)
        try await fixture.publish(workload.provisioning() + workload.calls(80))
        let projector = try fixture.runner()
        try await fixture.waitUntilCaughtUp()
        // Publishing goes on while every projection is rebuilt.
        let traffic = Task {
            for _ in 0..<40 {
                try await fixture.publish(workload.calls(3))
                try await Task.sleep(for: .milliseconds(25))
            }
        }
        var caughtUp = 0
        for projection in Self.replayed {
            let report = try await Self.replayer(fixture, projection.name).run(ReplayOptions(mode: .rebuild, batchSize: 50))
            caughtUp += report.caughtUp
        }
        try await traffic.value
        try await fixture.waitUntilCaughtUp()
        try await projector.stop()
        let expected = try await ReadModels.fold(eventLog: fixture.db)
        let actual = try await ReadModels.read(fixture.db)
        #expect(actual == expected, "\(actual.differences(from: expected))")
        for projection in Self.replayed {
            let report = try await Self.replayer(fixture, projection.name).run(ReplayOptions(mode: .verify))
            #expect(report.differences.isEmpty, "\(projection.name): \(report.differences)")
        }
        let archived = try await fixture.db.query("SELECT count(*) AS n FROM event_log")[0].decode(Int.self, "n")
        #expect(archived == Set(fixture.published.map(\.eventID)).count, "every published event archived once")
        _ = caughtUp
    }
}

private extension String {
    /// This SQL with one optional uuid bound as `$1`.
    func bound(_ value: UUID?) -> PostgresQuery { PostgresQuery(unsafeSQL: self, binds: [PostgresBind(value)]) }
}
