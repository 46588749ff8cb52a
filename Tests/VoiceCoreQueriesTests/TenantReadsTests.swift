import Foundation
import Synchronization
import Testing
import VoiceCoreEvents
import VoiceCorePostgres
import VoiceCoreProjections
import VoiceCoreQueries
import VoiceCoreTestSupport

/// A migrated schema of its own with calls of two tenants, written as the owner (the projectors'
/// role, which row-level security does not restrict).
final class ReadSchema: Sendable {
    let name = "q_\(UUID().uuidString.prefix(8).lowercased())"
    let url: String
    let owner: PostgresConnection
    let tenantA = Identifier(UUID())
    let tenantB = Identifier(UUID())

    init() async throws {
        let separator = TestServers.databaseURL.contains("?") ? "&" : "?"
        url = TestServers.databaseURL + separator + "options=-c%20search_path%3D\(name)"
        owner = try await PostgresConnection.connect(try PostgresConfiguration(url: url))
        try await owner.query("CREATE SCHEMA \(identifier: name)")
        _ = try await Migrator(connection: owner, directory: TestServers.root.appendingPathComponent("database/migrations")).up()
        for (tenant, count) in [(tenantA, 3), (tenantB, 2)] {
            for index in 0..<count {
                try await owner.query("""
                    INSERT INTO call_sessions (tenant_id, call_id, provider, provider_call_id, direction, from_number, to_number, status, started_at)
                    VALUES (\(tenant.uuid), \(UUID()), 'twilio', \("CA\(index)"), 'inbound', '+14155550123', '+18005551212', 'completed', now())
                    """)
            }
            try await owner.query("""
                INSERT INTO billing_usage (tenant_id, day, meter, quantity, unit) VALUES (\(tenant.uuid), current_date, 'call_minutes', \(count), 'minute')
                """)
        }
    }

    func pool(size: Int = 4, acquireTimeout: Duration = .seconds(2)) throws -> PostgresPool {
        PostgresPool(configuration: try PostgresConfiguration(url: url), size: size, acquireTimeout: acquireTimeout)
    }

    func drop() async throws {
        try await owner.query("DROP SCHEMA \(identifier: name) CASCADE")
        await owner.close()
    }
}

@Suite("Tenant reads", .serialized)
struct TenantReadsTests {
    @Test func aStatementWithoutATenantPredicateSeesOnlyTheTenantsRows() async throws {
        let schema = try await ReadSchema()
        let pool = try schema.pool()
        let reads = TenantReads(pool: pool)
        for (tenant, calls) in [(schema.tenantA, 3), (schema.tenantB, 2)] {
            let seen = try await reads.read(tenant: tenant) { db in
                try db.query("SELECT DISTINCT tenant_id FROM call_sessions").map { try $0.decode(String.self, "tenant_id") }
            }
            #expect(seen == [tenant.description], "row-level security, not a WHERE clause, picks the rows")
            let counted = try await reads.read(tenant: tenant) { db in
                (try db.query("SELECT count(*) AS n FROM call_sessions")[0].decode(Int.self, "n"),
                 try db.query("SELECT sum(quantity)::int AS q FROM billing_usage")[0].decode(Int.self, "q"))
            }
            #expect(counted.0 == calls && counted.1 == calls)
        }
        // The owner sees both tenants: the filtering above is the tenant role's.
        #expect(try await schema.owner.query("SELECT count(*) AS n FROM call_sessions")[0].decode(Int.self, "n") == 5)
        await pool.close()
        try await schema.drop()
    }

    @Test func writesThroughTenantReadsAreRefused() async throws {
        let schema = try await ReadSchema()
        let pool = try schema.pool()
        let reads = TenantReads(pool: pool)
        let tenant = schema.tenantA
        for write in ["UPDATE call_sessions SET status = 'failed'", "DELETE FROM call_sessions", "UPDATE billing_usage SET quantity = 0",
                      "INSERT INTO audit_logs (tenant_id, actor, action) VALUES (current_setting('app.tenant_id')::uuid, 'me', 'forge')"] {
            await #expect(Comment(rawValue: write)) {
                try await reads.read(tenant: tenant) { db in try db.query(PostgresQuery(unsafeSQL: write)) }
            } throws: { error in
                // The read-only transaction refuses first (25006); the role could not write either (42501).
                ["25006", "42501"].contains((error as? PostgresError)?.sqlState)
            }
        }
        // A lock for writing is allowed in a read-only transaction, so only the role's privileges
        // stand in its way: the tenant role has SELECT and nothing else.
        await #expect {
            try await reads.read(tenant: tenant) { db in try db.query("LOCK TABLE call_sessions IN ROW EXCLUSIVE MODE") }
        } throws: { ($0 as? PostgresError)?.sqlState == "42501" }
        // Nothing changed.
        #expect(try await schema.owner.query("SELECT count(*) AS n FROM call_sessions WHERE status = 'completed'")[0].decode(Int.self, "n") == 5)
        #expect(try await schema.owner.query("SELECT count(*) AS n FROM audit_logs")[0].decode(Int.self, "n") == 0)
        await pool.close()
        try await schema.drop()
    }

    @Test func aStatementPastTheTimeoutIsReadUnavailable() async throws {
        let schema = try await ReadSchema()
        let pool = try schema.pool(size: 1)
        let reads = TenantReads(pool: pool, statementTimeout: .milliseconds(50))
        await #expect(throws: ReadUnavailable.self) {
            try await reads.read(tenant: schema.tenantA) { db in try db.query("SELECT pg_sleep(5)") }
        }
        // The connection went back to the pool usable: the next read works.
        let n = try await reads.read(tenant: schema.tenantA) { db in try db.query("SELECT count(*) AS n FROM call_sessions")[0].decode(Int.self, "n") }
        #expect(n == 3)
        await pool.close()
        try await schema.drop()
    }

    @Test func postgresUnreachableIsReadUnavailable() async throws {
        let port = try ClosedPort.find()
        let pool = PostgresPool(configuration: try PostgresConfiguration(url: "postgres://voicecore:voicecore@127.0.0.1:\(port)/voicecore_test"), size: 2)
        let reads = TenantReads(pool: pool)
        for _ in 0..<3 {
            await #expect {
                try await reads.read(tenant: Identifier(UUID())) { db in try db.query("SELECT 1 AS n") }
            } throws: { error in
                guard let unavailable = error as? ReadUnavailable else { return false }
                return unavailable.retryAfterSeconds > 0
            }
        }
        #expect(pool.counts.open == 0, "a failed connect gives its slot back")
        await pool.close()
    }

    @Test func thePoolOpensAtMostItsSizeAndEveryWaitingRequestCompletes() async throws {
        let schema = try await ReadSchema()
        let pool = try schema.pool(size: 2, acquireTimeout: .seconds(30))
        let inside = Concurrency()
        let pids = try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<12 {
                group.addTask {
                    try await pool.withConnection { db in
                        inside.enter()
                        defer { inside.leave() }
                        return try db.query("SELECT pg_backend_pid() AS pid, pg_sleep(0.02)")[0].decode(Int.self, "pid")
                    }
                }
            }
            return try await group.reduce(into: [Int]()) { $0.append($1) }
        }
        #expect(pids.count == 12, "every request completed")
        #expect(Set(pids).count <= 2, "no more than two sessions served them")
        #expect(inside.most <= 2)
        #expect(pool.counts.open <= 2)
        await pool.close()
        try await schema.drop()
    }

    @Test func aRequestThatFindsNoFreeConnectionInTimeIsRefused() async throws {
        let schema = try await ReadSchema()
        let pool = try schema.pool(size: 1, acquireTimeout: .milliseconds(100))
        let (held, holding) = AsyncStream.makeStream(of: Void.self)
        let holder = Task {
            try await pool.withConnection { db in
                holding.yield()
                try db.query("SELECT pg_sleep(2)")
            }
        }
        var iterator = held.makeAsyncIterator()
        await iterator.next()
        await #expect {
            try await pool.withConnection { db in try db.query("SELECT 1 AS n") }
        } throws: { ($0 as? PostgresPoolError) == .exhausted(size: 1, waited: .milliseconds(100)) }
        // Through the reads it is a ReadUnavailable (the edge's 503).
        await #expect(throws: ReadUnavailable.self) {
            try await TenantReads(pool: pool).read(tenant: schema.tenantA) { db in try db.query("SELECT 1 AS n") }
        }
        try await holder.value
        let n = try await pool.withConnection { db in try db.query("SELECT 1 AS n")[0].decode(Int.self, "n") }
        #expect(n == 1, "the connection is free again once its holder is done")
        await pool.close()
        try await schema.drop()
    }
}

/// How many bodies run at once, and the most that ever did.
final class Concurrency: Sendable {
    private let state = Mutex((now: 0, most: 0))
    func enter() { state.withLock { $0.now += 1; $0.most = max($0.most, $0.now) } }
    func leave() { state.withLock { $0.now -= 1 } }
    var most: Int { state.withLock { $0.most } }
}

/// A loopback port nothing listens on: bound, then closed.
enum ClosedPort {
    static func find() throws -> Int {
        let socket = Foundation.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard socket >= 0 else { throw TestFailure("socket() failed") }
        defer { close(socket) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(socket, $0, length) == 0 && getsockname(socket, $0, &length) == 0 }
        }
        guard bound else { throw TestFailure("bind() failed") }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}
