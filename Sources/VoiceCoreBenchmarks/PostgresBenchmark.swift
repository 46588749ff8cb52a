import Foundation
import VoiceCoreExecutors
import VoiceCorePostgres
import VoiceCoreTime

/// Rows per second through VoiceCorePostgres three ways (COPY, pipeline mode, multi-row INSERT),
/// beside psql's `\copy` of the same rows (`voicecore bench postgres`).
public struct PostgresBenchmark: Sendable {
    /// Rows per method.
    public var rows: Int
    /// Rows per multi-row INSERT statement.
    public var batch: Int

    public init(rows: Int = 100_000, batch: Int = 1000) {
        self.rows = rows
        self.batch = batch
    }

    public func run(on servers: BenchmarkServers) async throws {
        let report = servers.report
        let db = try await PostgresConnection.connect(try servers.postgresConfiguration())
        let tenant = UUID()
        let now = Date()
        let payload = String(repeating: "p", count: 100)
        report("Postgres \(try await db.query("SELECT current_setting('server_version') AS v")[0].decode(String.self, "v")), \(rows) rows per method, one connection")

        func reset() async throws {
            try await db.simpleQuery(unsafeSQL: """
                DROP TABLE IF EXISTS bench_rows;
                CREATE TABLE bench_rows (id bigint PRIMARY KEY, tenant_id uuid NOT NULL, kind text NOT NULL, payload text NOT NULL, at timestamptz NOT NULL)
                """)
        }
        func check() async throws {
            let n = try await db.query("SELECT count(*) AS n FROM bench_rows")[0].decode(Int.self, "n")
            guard n == rows else { throw BenchmarkFailure("expected \(rows) rows, found \(n)") }
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
        report("COPY FROM STDIN                 \(formatRate(Double(rows) / copySeconds)) rows/s")

        try await reset()
        let queries: [PostgresQuery] = (0..<rows).map { i in
            "INSERT INTO bench_rows (id, tenant_id, kind, payload, at) VALUES (\(i), \(tenant), \("call.started"), \(payload), \(now))"
        }
        let pipelineSeconds = try await measure {
            try await db.withTransaction { db in _ = try db.pipeline(queries, syncEvery: 1000) }
        }
        try await check()
        report("pipeline mode (sync every 1000) \(formatRate(Double(rows) / pipelineSeconds)) rows/s")

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
        report("INSERT … unnest (\(batch)/statement)  \(formatRate(Double(rows) / unnestSeconds)) rows/s")
        // The server's own limit: psql's \copy of the same rows from a file (the file is written
        // before timing, so this measures the load alone).
        if let psql = ["/usr/bin/psql", "/usr/lib/postgresql/15/bin/psql"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }) {
            try await reset()
            let file = FileManager.default.temporaryDirectory.appendingPathComponent("voicecore-bench-\(UUID().uuidString).tsv")
            defer { try? FileManager.default.removeItem(at: file) }
            var text = ""
            text.reserveCapacity(rows * 200)
            let time = Timestamp(now).rfc3339
            let tenantText = tenant.uuidString.lowercased()
            for i in 0..<rows { text += "\(i)\t\(tenantText)\tcall.started\t\(payload)\t\(time)\n" }
            try text.write(to: file, atomically: false, encoding: .utf8)
            let databaseURL = servers.databaseURL
            let path = file.path
            var status: Int32 = 0
            let psqlSeconds = try await measure {
                // psql runs for a while: wait for it on a thread of its own, not the pool's.
                status = try await runBlocking {
                    let process = Process()
                    process.executableURL = URL(fileURLWithPath: psql)
                    process.arguments = ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", databaseURL,
                                         "-c", "\\copy bench_rows (id, tenant_id, kind, payload, at) FROM '\(path)'"]
                    process.standardOutput = FileHandle.nullDevice
                    try process.run()
                    process.waitUntilExit()
                    return process.terminationStatus
                }
            }
            guard status == 0 else { throw BenchmarkFailure("psql \\copy failed (exit \(status))") }
            try await check()
            report("psql \\copy (the reference)      \(formatRate(Double(rows) / psqlSeconds)) rows/s")
        }
        try await db.simpleQuery(unsafeSQL: "DROP TABLE IF EXISTS bench_rows")
    }
}
