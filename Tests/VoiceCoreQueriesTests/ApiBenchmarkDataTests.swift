import Foundation
import Testing
import VoiceCoreBenchmarks
import VoiceCoreEvents
import VoiceCorePostgres
import VoiceCoreProjections
import VoiceCoreQueries
import VoiceCoreTestSupport

/// `voicecore bench api`'s seed: what it loads is what the benchmark reads, and the ids its
/// pgbench scripts build in SQL are the seeded calls (else pgbench would time empty answers).
@Suite("bench api's seed")
struct ApiBenchmarkDataTests {
    @Test("the seed loads every tenant's calls with their rows, a second seed replaces the first, and the ids built in SQL are seeded calls")
    func seedCountsAndIDs() async throws {
        let schema = "bs_\(UUID().uuidString.prefix(8).lowercased())"
        let separator = TestServers.databaseURL.contains("?") ? "&" : "?"
        let url = TestServers.databaseURL + separator + "options=-c%20search_path%3D\(schema)"
        let admin = try await PostgresConnection.connect(try PostgresConfiguration(url: TestServers.databaseURL))
        try await admin.query("CREATE SCHEMA \(identifier: schema)")
        defer { Task { _ = try? await admin.query("DROP SCHEMA \(identifier: schema) CASCADE") } }
        let db = try await PostgresConnection.connect(try PostgresConfiguration(url: url))
        _ = try await Migrator(connection: db, directory: TestServers.root.appendingPathComponent("database/migrations")).up()

        let data = ApiBenchmarkData(calls: 203, tenants: 4)
        let written = try await data.seed(into: db)
        #expect(written == (try await ApiBenchmarkData.counts(in: db)), "the counts it reports are the rows there")
        #expect(written.tenants == 4 && written.calls == 203 && written.analytics == 203, "\(written)")
        // Calls spread evenly: 51, 51, 51, 50.
        let perTenant = try await db.query("SELECT tenant_id, count(*) AS n FROM call_sessions GROUP BY tenant_id")
        let counts = Dictionary(uniqueKeysWithValues: try perTenant.map { (try $0.decode(UUID.self, "tenant_id"), try $0.decode(Int.self, "n")) })
        #expect(counts == [ApiBenchmarkData.tenantID(0): 51, ApiBenchmarkData.tenantID(1): 51, ApiBenchmarkData.tenantID(2): 51, ApiBenchmarkData.tenantID(3): 50])
        // Every answered call has its transcript and three usage items; every lead its contact and interaction.
        let shape = try await db.query("""
            SELECT (SELECT count(*) FROM call_sessions WHERE answered_at IS NOT NULL) AS answered,
                   (SELECT count(DISTINCT call_id) FROM transcripts) AS with_transcript,
                   (SELECT count(*) FROM leads l LEFT JOIN crm_contacts c USING (tenant_id, contact_id) WHERE c.contact_id IS NULL) AS orphan_leads,
                   (SELECT count(*) FROM leads l JOIN call_sessions s USING (tenant_id, call_id)) AS leads_of_calls
            """)[0]
        let answered = try shape.decode(Int.self, "answered")
        #expect(answered > 100 && answered < 203, "most calls answered, some missed: \(answered)")
        #expect(try shape.decode(Int.self, "with_transcript") == answered)
        #expect(written.usageItems == 3 * answered)
        #expect(written.leads > 0 && written.leads == written.interactions && written.contacts <= written.leads && written.contacts > 0, "\(written)")
        #expect(try shape.decode(Int.self, "orphan_leads") == 0 && shape.decode(Int.self, "leads_of_calls") == written.leads)

        // Seeding again replaces the rows (TRUNCATE first), nothing doubles.
        #expect(try await data.seed(into: db) == written)
        #expect(try await ApiBenchmarkData.counts(in: db) == written)

        // The ids pgbench builds from its random numbers are the Swift ids, and name seeded rows.
        for (tenant, number) in [(0, 0), (3, 49), (1, 50)] {
            // The SQL the pgbench scripts hold, with the numbers in place of pgbench's variables.
            let row = try await db.query(PostgresQuery(unsafeSQL: """
                SELECT (\(ApiBenchmarkData.tenantSQL(String(tenant))))::uuid AS tenant,
                       (\(ApiBenchmarkData.callSQL(tenant: String(tenant), number: String(number))))::uuid AS call
                """))[0]
            let tenantID = try row.decode(UUID.self, "tenant")
            let callID = try row.decode(UUID.self, "call")
            #expect(tenantID == ApiBenchmarkData.tenantID(tenant) && callID == ApiBenchmarkData.callID(tenant: tenant, number: number))
            #expect(try await db.query("SELECT 1 FROM call_sessions WHERE tenant_id = \(tenantID) AND call_id = \(callID)").count == 1)
        }

        // Read as the edge reads it: the call whole for its tenant, nothing for another.
        let reads = TenantReads(pool: PostgresPool(configuration: try PostgresConfiguration(url: url), size: 1))
        let call = Identifier(ApiBenchmarkData.callID(tenant: 3, number: 49))
        let detail = try await reads.read(tenant: Identifier(ApiBenchmarkData.tenantID(3))) { db in try CallQueries.detail(db, tenant: Identifier(ApiBenchmarkData.tenantID(3)), call: call) }
        #expect(detail.map { String(decoding: $0, as: UTF8.self).contains(call.description) } == true)
        let foreign = try await reads.read(tenant: Identifier(ApiBenchmarkData.tenantID(2))) { db in try CallQueries.detail(db, tenant: Identifier(ApiBenchmarkData.tenantID(2)), call: call) }
        #expect(foreign == nil)
        await reads.pool.close()
        await db.close()
    }
}
