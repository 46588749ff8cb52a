import ArgumentParser
import Foundation
import VoiceCorePostgres

struct PostgresBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "postgres",
        abstract: "Rows per second through VoiceCorePostgres: COPY, pipeline mode, multi-row INSERT.",
        discussion: """
            Loads --rows rows of (id bigint, tenant_id uuid, kind text, payload text, at timestamptz) \
            into a scratch table three ways, each in one transaction: COPY FROM STDIN; one INSERT per \
            row in pipeline mode (sync every 1000); and INSERT … SELECT FROM unnest($1…$5) in batches \
            of --batch rows. The table is dropped afterwards.
            """
    )

    @OptionGroup var connections: ConnectionOptions

    @Option(help: "Rows per method.")
    var rows = 100_000

    @Option(help: "Rows per multi-row INSERT statement.")
    var batch = 1000

    func run() async throws {
        let db = try await PostgresConnection.connect(try connections.postgresConfiguration())
        let tenant = UUID()
        let now = Date()
        let payload = String(repeating: "p", count: 100)
        print("Postgres \(try await db.query("SELECT current_setting('server_version') AS v")[0].decode(String.self, "v")), \(rows) rows per method, one connection")

        func reset() async throws {
            try await db.simpleQuery(unsafeSQL: """
                DROP TABLE IF EXISTS bench_rows;
                CREATE TABLE bench_rows (id bigint PRIMARY KEY, tenant_id uuid NOT NULL, kind text NOT NULL, payload text NOT NULL, at timestamptz NOT NULL)
                """)
        }
        func check() async throws {
            let n = try await db.query("SELECT count(*) AS n FROM bench_rows")[0].decode(Int.self, "n")
            guard n == rows else { throw ValidationError("expected \(rows) rows, found \(n)") }
        }

        try await reset()
        let rowCount = rows
        let copySeconds = try await measure {
            try await db.withTransaction { db in
                _ = try db.copyFromStdin("COPY bench_rows (id, tenant_id, kind, payload, at) FROM STDIN") { writer in
                    for i in 0..<rowCount { try writer.appendRow(i, tenant, "call.started", payload, now) }
                }
            }
        }
        try await check()
        print("COPY FROM STDIN                 \(formatRate(Double(rows) / copySeconds)) rows/s")

        try await reset()
        let queries: [PostgresQuery] = (0..<rows).map { i in
            "INSERT INTO bench_rows (id, tenant_id, kind, payload, at) VALUES (\(i), \(tenant), \("call.started"), \(payload), \(now))"
        }
        let pipelineSeconds = try await measure {
            try await db.withTransaction { db in _ = try db.pipeline(queries, syncEvery: 1000) }
        }
        try await check()
        print("pipeline mode (sync every 1000) \(formatRate(Double(rows) / pipelineSeconds)) rows/s")

        try await reset()
        let batchSize = batch
        let unnestSeconds = try await measure {
            try await db.withTransaction { db in
                var start = 0
                while start < rowCount {
                    let ids = Array(start..<min(start + batchSize, rowCount))
                    try db.query("""
                        INSERT INTO bench_rows (id, tenant_id, kind, payload, at)
                        SELECT * FROM unnest(\(ids), \(Array(repeating: tenant, count: ids.count)), \(Array(repeating: "call.started", count: ids.count)), \(Array(repeating: payload, count: ids.count)), \(Array(repeating: now, count: ids.count)))
                        """)
                    start += ids.count
                }
            }
        }
        try await check()
        print("INSERT … unnest (\(batch)/statement)  \(formatRate(Double(rows) / unnestSeconds)) rows/s")
        try await db.simpleQuery(unsafeSQL: "DROP TABLE IF EXISTS bench_rows")
    }
}
