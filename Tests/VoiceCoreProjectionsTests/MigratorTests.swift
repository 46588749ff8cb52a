import Foundation
import Testing
import VoiceCorePostgres
@testable import VoiceCoreProjections

/// A schema of its own per test, reached through libpq's `options=-c search_path=…`.
struct TestSchema {
    let name = "m_\(UUID().uuidString.prefix(8).lowercased())"
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static var url: String { ProcessInfo.processInfo.environment["DATABASE_URL"] ?? "postgres://voicecore:voicecore@127.0.0.1:15432/voicecore_test" }

    func connect() async throws -> PostgresConnection {
        let separator = Self.url.contains("?") ? "&" : "?"
        return try await PostgresConnection.connect(try PostgresConfiguration(url: Self.url + separator + "options=-c%20search_path%3D\(name)"))
    }

    func create() async throws -> PostgresConnection {
        let db = try await connect()
        try await db.query("CREATE SCHEMA \(identifier: name)")
        return db
    }

    func drop(_ db: PostgresConnection) async throws {
        try await db.query("DROP SCHEMA \(identifier: name) CASCADE")
    }

    static var migrations: URL { root.appendingPathComponent("database/migrations") }

    /// A directory of migration files written for a test.
    static func directory(_ files: [String: String]) throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("migrations-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        for (name, sql) in files { try sql.write(to: url.appendingPathComponent(name), atomically: true, encoding: .utf8) }
        return url
    }
}

@Suite("Migrations against a real Postgres")
struct MigratorTests {
    @Test func appliesInOrderOnceAndReportsStatus() async throws {
        let schema = TestSchema()
        let db = try await schema.create()
        let migrator = Migrator(connection: db, directory: TestSchema.migrations)
        let applied = try await migrator.up()
        #expect(applied.map(\.version) == (try migrator.migrations()).map(\.version))
        #expect(try await migrator.up().isEmpty)
        #expect(try await migrator.status().allSatisfy { $0.appliedAt != nil })
        let tables = try await db.query("SELECT table_name FROM information_schema.tables WHERE table_schema = \(schema.name) ORDER BY 1").map { try $0.decode(String.self, "table_name") }
        for table in ["tenants", "call_sessions", "transcripts", "crm_contacts", "leads", "interactions", "call_analytics",
                      "business_metrics", "billing_usage", "event_log", "audit_logs", "projection_checkpoints", "schema_migrations"] {
            #expect(tables.contains(table), "missing table \(table)")
        }
        try await schema.drop(db)
    }

    @Test func aFailingMigrationLeavesTheSchemaAsItWasAndNamesTheStatement() async throws {
        let schema = TestSchema()
        let db = try await schema.create()
        let directory = try TestSchema.directory([
            "0001_first.sql": "CREATE TABLE a (x int);\n",
            "0002_second.sql": "CREATE TABLE b (x int);\n\nCREATE TABLE c (\n  x int REFERENCES nowhere (y)\n);\n",
        ])
        let migrator = Migrator(connection: db, directory: directory)
        await #expect {
            try await migrator.up()
        } throws: { error in
            guard let error = error as? MigrationError else { return false }
            return error.message.contains("0002_second.sql") && error.message.contains("rolled back") && error.message.contains("line 3")
                && error.message.contains("CREATE TABLE c") && error.postgres?.sqlState == "42P01"
        }
        let tables = try await db.query("SELECT table_name FROM information_schema.tables WHERE table_schema = \(schema.name) ORDER BY 1").map { try $0.decode(String.self, "table_name") }
        #expect(tables == ["a", "schema_migrations"], "0002's first statement must be rolled back with it")
        #expect(try await migrator.status().map { $0.appliedAt != nil } == [true, false])
        try await schema.drop(db)
    }

    @Test func concurrentMigratorsApplyEachMigrationOnce() async throws {
        let schema = TestSchema()
        let setup = try await schema.create()
        let directory = try TestSchema.directory([
            "0001_one.sql": "CREATE TABLE one (x int); SELECT pg_sleep(0.3);",
            "0002_two.sql": "CREATE TABLE two (x int);",
        ])
        let results = try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<3 {
                group.addTask { try await Migrator(connection: try await schema.connect(), directory: directory).up().count }
            }
            var counts: [Int] = []
            for try await count in group { counts.append(count) }
            return counts
        }
        #expect(results.sorted() == [0, 0, 2], "one migrator applies both; the others find nothing to do")
        #expect(try await setup.query("SELECT count(*) AS n FROM schema_migrations")[0].decode(Int.self, "n") == 2)
        try await schema.drop(setup)
    }

    @Test func anAppliedMigrationThatChangedIsRefused() async throws {
        let schema = TestSchema()
        let db = try await schema.create()
        let directory = try TestSchema.directory(["0001_one.sql": "CREATE TABLE one (x int);"])
        try await Migrator(connection: db, directory: directory).up()
        try "CREATE TABLE one (x int, y int);".write(to: directory.appendingPathComponent("0001_one.sql"), atomically: true, encoding: .utf8)
        await #expect {
            try await Migrator(connection: db, directory: directory).up()
        } throws: { ($0 as? MigrationError)?.message.contains("changed after it was applied") == true }
        try await schema.drop(db)
    }

    @Test func aTenantSessionSeesOnlyItsOwnRowsAndWritesNothing() async throws {
        let schema = TestSchema()
        let owner = try await schema.create()
        try await Migrator(connection: owner, directory: TestSchema.migrations).up()
        let a = UUID(), b = UUID()
        for (tenant, provider) in [(a, "twilio"), (a, "telnyx"), (b, "twilio")] {
            try await owner.query("""
                INSERT INTO call_sessions (tenant_id, call_id, provider, provider_call_id, direction, from_number, to_number, status)
                VALUES (\(tenant), \(UUID()), \(provider), \("CA1"), 'inbound', '+14155550123', '+18005551212', 'ringing')
                """)
        }
        // The owner (projectors) sees every tenant.
        #expect(try await owner.query("SELECT count(*) AS n FROM call_sessions")[0].decode(Int.self, "n") == 3)

        let session = try await schema.connect()
        try await session.simpleQuery(unsafeSQL: "SET ROLE voicecore_tenant")
        #expect(try await session.query("SELECT count(*) AS n FROM call_sessions")[0].decode(Int.self, "n") == 0, "no tenant set: nothing visible")
        try await session.query("SELECT set_config('app.tenant_id', \(a.uuidString), false)")
        #expect(try await session.query("SELECT count(*) AS n FROM call_sessions")[0].decode(Int.self, "n") == 2)
        #expect(try await session.query("SELECT count(*) AS n FROM call_sessions WHERE tenant_id = \(b)")[0].decode(Int.self, "n") == 0)
        await #expect {
            try await session.query("""
                INSERT INTO call_sessions (tenant_id, call_id, provider, provider_call_id, direction, from_number, to_number, status)
                VALUES (\(b), \(UUID()), 'twilio', 'CA2', 'inbound', '+14155550123', '+18005551212', 'ringing')
                """)
        } throws: { ($0 as? PostgresError)?.sqlState == "42501" }
        // The tenant role only reads (migration 0009): a write of its own rows is refused too.
        for write in ["UPDATE call_sessions SET status = 'completed'", "DELETE FROM call_sessions", "DELETE FROM audit_logs",
                      "UPDATE billing_usage SET quantity = 0", "TRUNCATE event_log"] {
            await #expect(Comment(rawValue: write)) {
                try await session.query(PostgresQuery(unsafeSQL: write))
            } throws: { ($0 as? PostgresError)?.sqlState == "42501" }
        }
        try await session.query("SELECT set_config('app.tenant_id', \(b.uuidString), false)")
        #expect(try await session.query("SELECT count(*) AS n FROM call_sessions")[0].decode(Int.self, "n") == 1)
        try await schema.drop(owner)
    }
}

@Suite("Splitting migration scripts")
struct SQLStatementsTests {
    @Test func splitsAtTopLevelSemicolonsOnly() {
        let sql = """
            -- a comment; not a statement
            CREATE TABLE a (x text DEFAULT 'semi;colon');
            /* block; /* nested; */ still comment */
            DO $$ BEGIN PERFORM 1; END $$;
            DO $body$ BEGIN RAISE NOTICE 'x;y'; END $body$;

            SELECT "odd;name" FROM a
            """
        let statements = SQLStatements.split(sql)
        #expect(statements.map(\.line) == [2, 4, 5, 7])
        #expect(statements[0].text == "CREATE TABLE a (x text DEFAULT 'semi;colon')")
        #expect(statements[1].text == "DO $$ BEGIN PERFORM 1; END $$")
        #expect(statements[2].text == "DO $body$ BEGIN RAISE NOTICE 'x;y'; END $body$")
        #expect(statements[3].text == #"SELECT "odd;name" FROM a"#)
        #expect(SQLStatements.split("SELECT 1/* c */FROM x").map(\.text) == ["SELECT 1 FROM x"])
    }
}
