import Foundation
import VoiceCoreEvents
import VoiceCoreExecutors
import VoiceCorePostgres
import VoiceCoreProjections
import VoiceCoreQueries
import VoiceCoreRedis
import VoiceCoreSimulation
import VoiceCoreTenants

/// `GET /v1/calls` and `GET /v1/calls/{id}` through `voicecore up` as its own process (wrk, 64
/// connections), each beside pgbench running the same SQL statements, tenant scoping included,
/// on the same Postgres with the same concurrency, alternating A/B in one run (`voicecore bench api`).
///
/// The read models live in a database of the benchmark's own (`voicecore_bench` beside the
/// development database; never the development data), seeded once with COPY
/// (``ApiBenchmarkData``) and reused by later runs until the seed's shape, size or the migrations
/// change, or `reseed` asks. Each run provisions (or re-keys) the tenants in that database's
/// directory, starts `voicecore up` on it with streams of its own, and removes those streams after.
/// With `ingestRate`, loadgen's signed Twilio calls play into the same edge meanwhile
/// (``ApiIngestLoad``), all the way through the services and projectors into the same tables.
/// With `readRate`, reads are paced instead of saturating: wrk's connections together offer that
/// many requests per second (each connection pausing a jittered interval between its requests), and
/// pgbench runs at the same rate (`-R`), so the figure is the latency a reader sees at a moderate
/// load — a saturating closed loop measures its own queue instead.
public struct ApiBenchmark: Sendable {
    /// The `voicecore` executable that runs `voicecore up` under test.
    public var edgeExecutable: URL
    /// Calls in the seed.
    public var calls: Int
    /// Tenants in the seed (calls spread evenly).
    public var tenants: Int
    /// Concurrent HTTP connections, and pgbench clients.
    public var connections: Int
    /// Seconds of each measured run.
    public var duration: Int
    /// A/B rounds; the report gives each round and the median.
    public var rounds: Int
    /// wrk threads, and pgbench threads.
    public var threads: Int
    /// Port for the edge under test.
    public var port: Int
    /// The migrations directory.
    public var migrations: String
    /// The bench database; nil: the development database's server, database `voicecore_bench`.
    public var databaseURL: String?
    /// Reload the seed even when a kept one fits.
    public var reseed: Bool
    /// Webhooks per second of signed Twilio calls played into the edge while measuring; nil: none.
    public var ingestRate: Int?
    /// Extra arguments of `voicecore up` (e.g. its read pool's size).
    public var upArguments: [String]
    /// Reads per second each route is offered (over all connections, HTTP and pgbench alike); nil: as fast as they go.
    public var readRate: Int?

    public init(edgeExecutable: URL, calls: Int = 100_000, tenants: Int = 20, connections: Int = 64, duration: Int = 10, rounds: Int = 3,
                threads: Int = 2, port: Int = 18_097, migrations: String = "database/migrations", databaseURL: String? = nil, reseed: Bool = false,
                ingestRate: Int? = nil, upArguments: [String] = [], readRate: Int? = nil) {
        self.edgeExecutable = edgeExecutable
        self.calls = calls
        self.tenants = tenants
        self.connections = connections
        self.duration = duration
        self.rounds = rounds
        self.threads = threads
        self.port = port
        self.migrations = migrations
        self.databaseURL = databaseURL
        self.reseed = reseed
        self.ingestRate = ingestRate
        self.upArguments = upArguments
        self.readRate = readRate
    }

    /// The mean pause of each wrk connection between its requests, in milliseconds, so that all
    /// `connections` together offer `readRate` requests per second (less each request's own time,
    /// which the run's achieved rate shows).
    var pacingIntervalMs: Int? {
        readRate.map { max(1, Int((Double(connections) * 1000 / Double($0)).rounded())) }
    }

    /// The database of the benchmark's own when none is given.
    public static let defaultDatabase = "voicecore_bench"
    static let wrkPath = "/usr/bin/wrk"

    public func run(on servers: BenchmarkServers) async throws {
        guard FileManager.default.isExecutableFile(atPath: Self.wrkPath) else { throw BenchmarkFailure("wrk is not installed: apt-get install -y wrk") }
        guard let pgbench = Self.pgbenchPath() else {
            throw BenchmarkFailure("pgbench is not installed: apt-get install -y postgresql (Debian ships pgbench with the server package)")
        }
        let benchURL = try databaseURL ?? Self.url(servers.databaseURL, database: Self.defaultDatabase)
        guard Self.databaseName(benchURL) != Self.databaseName(servers.databaseURL) else {
            throw BenchmarkFailure("the bench database is the development database (\(Self.databaseName(benchURL) ?? "?")): give --database of its own")
        }
        let report = servers.report
        let db = try await openBenchDatabase(benchURL, servers: servers)
        _ = try await Migrator(connection: db, directory: URL(fileURLWithPath: migrations)).up()
        let data = ApiBenchmarkData(calls: calls, tenants: tenants)
        try await seedIfNeeded(data, db: db, report: report)

        let suffix = UUID().uuidString.prefix(8).lowercased()
        let prefix = "bench-api-\(suffix)"
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("voicecore-bench-api-\(suffix)")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: work) }
        let redis = try await RedisClient.connect(try servers.redisConfiguration())
        // The ingest tenant is one past the seeded ones: its calls never count among the seed's.
        let ingestTenant = ingestRate == nil ? nil : tenants
        do {
            try await bench(data: data, db: db, benchURL: benchURL, pgbench: pgbench, prefix: prefix, work: work, ingestTenant: ingestTenant, servers: servers)
        } catch {
            try? await cleanup(db: db, redis: redis, prefix: prefix, ingestTenant: ingestTenant)
            throw error
        }
        try await cleanup(db: db, redis: redis, prefix: prefix, ingestTenant: ingestTenant)
    }

    // MARK: The bench database and its seed

    private func openBenchDatabase(_ url: String, servers: BenchmarkServers) async throws -> PostgresConnection {
        do {
            return try await PostgresConnection.connect(try PostgresConfiguration(url: url))
        } catch let error as PostgresError where "\(error)".contains("does not exist") {
            guard let name = Self.databaseName(url) else { throw error }
            let admin = try await PostgresConnection.connect(try servers.postgresConfiguration())
            do {
                try await admin.query("CREATE DATABASE \(identifier: name)")
            } catch let refused as PostgresError where refused.sqlState == "42501" {
                await admin.close()
                throw BenchmarkFailure("""
                    the bench database \(name) does not exist and this role may not create it: `tools/dev-env start` creates it, \
                    or as a superuser: CREATE DATABASE \(name) OWNER <the role of DATABASE_URL>
                    """)
            }
            await admin.close()
            return try await PostgresConnection.connect(try PostgresConfiguration(url: url))
        }
    }

    /// Seeds unless the kept seed has the same calls, tenants, seed version and migrations (and its rows are all there).
    private func seedIfNeeded(_ data: ApiBenchmarkData, db: PostgresConnection, report: @Sendable (String) -> Void) async throws {
        try await db.simpleQuery(unsafeSQL: """
            CREATE TABLE IF NOT EXISTS bench_api_seed (calls integer NOT NULL, tenants integer NOT NULL, seed_version integer NOT NULL,
                                                       schema_version integer NOT NULL, seeded_at timestamptz NOT NULL DEFAULT now())
            """)
        let schemaVersion = try await db.query("SELECT max(version) AS v FROM schema_migrations")[0].decode(Int.self, "v")
        let kept = try await db.query("SELECT calls, tenants, seed_version, schema_version, seeded_at::text AS at FROM bench_api_seed")
        let counts = try await ApiBenchmarkData.counts(in: db)
        if !reseed, let row = kept.first, try row.decode(Int.self, "calls") == data.calls, try row.decode(Int.self, "tenants") == data.tenants,
           try row.decode(Int.self, "seed_version") == ApiBenchmarkData.version, try row.decode(Int.self, "schema_version") == schemaVersion,
           counts.calls == data.calls {
            report("api: reusing the seed of \(try row.decode(String.self, "at")) in \(Self.databaseName(db.configuration.url) ?? "?"): \(counts) (--reseed loads it again)")
            return
        }
        report("api: seeding \(data.calls) calls over \(data.tenants) tenants with COPY…")
        var seeded = ApiBenchmarkData.Counts()
        let seconds = try await measure { seeded = try await data.seed(into: db) }
        try await db.simpleQuery(unsafeSQL: "ANALYZE")
        let found = try await ApiBenchmarkData.counts(in: db)
        guard found.calls == data.calls, found.tenants == data.tenants, found == seeded else {
            throw BenchmarkFailure("the seed wrote \(seeded) but the tables hold \(found)")
        }
        try await db.query("DELETE FROM bench_api_seed")
        try await db.query("INSERT INTO bench_api_seed (calls, tenants, seed_version, schema_version) VALUES (\(data.calls), \(data.tenants), \(ApiBenchmarkData.version), \(schemaVersion))")
        report("api: seeded \(found) in \(String(format: "%.1f", seconds)) s")
    }

    /// Every seeded tenant (and the ingest tenant) in the directory, with a fresh API key and
    /// Twilio auth token sealed with this run's master key, and a rate limit no run reaches.
    private func provisionTenants(db: PostgresConnection, masterKey: String, count: Int) async throws -> [BenchTenant] {
        let directory = TenantDirectory(connection: db, secrets: try SecretBox(base64: masterKey))
        var result: [BenchTenant] = []
        for index in 0..<count {
            let id = Identifier(ApiBenchmarkData.tenantID(index))
            let account = String(format: "AC%032x", index)
            let token = UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()
            let key: APIKey
            if try await directory.summary(of: id) == nil {
                key = try await directory.provision(NewTenant(id: id, name: "Bench tenant \(index)", plan: .growth, twilioAccountSID: account,
                                                              twilioAuthToken: token, requestsPerSecond: 10_000_000), publisher: nil).apiKey
            } else {
                try await directory.update(id, CredentialChange(twilioAccountSID: account, twilioAuthToken: token, requestsPerSecond: 10_000_000))
                key = try await directory.rotateAPIKey(of: id)
            }
            result.append(BenchTenant(index: index, id: id, apiKey: key.plaintext, accountSID: account, authToken: token))
        }
        return result
    }

    struct BenchTenant: Sendable {
        var index: Int
        var id: Identifier
        var apiKey: String
        var accountSID: String
        var authToken: String
    }

    // MARK: The run

    private func bench(data: ApiBenchmarkData, db: PostgresConnection, benchURL: String, pgbench: String, prefix: String, work: URL,
                       ingestTenant: Int?, servers: BenchmarkServers) async throws {
        let report = servers.report
        let masterKey = Data((0..<32).map { _ in UInt8.random(in: 0...255) }).base64EncodedString()
        let benchTenants = try await provisionTenants(db: db, masterKey: masterKey, count: tenants + (ingestTenant == nil ? 0 : 1))
        let seeded = Array(benchTenants.prefix(tenants))

        // voicecore up, as its own process, on the bench database and streams of its own.
        guard !EdgeBenchmark.accepts(port: port) else { throw BenchmarkFailure("something already listens on 127.0.0.1:\(port): give --port a free one") }
        let base = "http://127.0.0.1:\(port)"
        let up = Process()
        up.executableURL = edgeExecutable
        up.arguments = ["up", "--port", String(port), "--prefix", prefix, "--partitions", "4", "--instance", "benchapi", "--migrations", migrations,
                        "--redis-url", servers.redisURL, "--database-url", benchURL] + upArguments
        var environment = ProcessInfo.processInfo.environment
        environment["VOICECORE_MASTER_KEY"] = masterKey
        environment["VOICECORE_PUBLIC_URL"] = base
        environment["VOICECORE_LOG_LEVEL"] = "warning"
        environment["VOICECORE_ADMIN_KEY"] = nil
        up.environment = environment
        let log = work.appendingPathComponent("up.log")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let logHandle = try FileHandle(forWritingTo: log)
        up.standardOutput = logHandle
        up.standardError = logHandle
        try up.run()
        let pid = up.processIdentifier
        defer {
            kill(pid, SIGKILL)
            try? logHandle.close()
        }
        func upLog() -> String { String((try? String(contentsOf: log, encoding: .utf8))?.suffix(4000) ?? "(no output)") }
        var ready = false
        for _ in 0..<300 where !ready && up.isRunning {
            try await Task.sleep(for: .milliseconds(100))
            ready = EdgeBenchmark.accepts(port: port)
        }
        guard ready else { throw BenchmarkFailure("voicecore up did not come up on port \(port):\n\(upLog())") }

        // Both routes answer what they should before anything is measured.
        let probeTenant = seeded[0]
        let list = try await HTTPProbe.get(port: port, path: "/v1/calls?limit=50", apiKey: probeTenant.apiKey)
        guard list.status == 200, list.body.contains("\"items\"") else {
            throw BenchmarkFailure("GET /v1/calls answered \(list.status), not 200 with a page: does this build serve the read API?\n\(list.body.prefix(500))\n\(upLog())")
        }
        let callID = Identifier(ApiBenchmarkData.callID(tenant: 0, number: 0)).description
        let detail = try await HTTPProbe.get(port: port, path: "/v1/calls/\(callID)", apiKey: probeTenant.apiKey)
        guard detail.status == 200, detail.body.contains(callID) else {
            throw BenchmarkFailure("GET /v1/calls/\(callID) answered \(detail.status), not 200 with the call:\n\(detail.body.prefix(500))")
        }
        let foreign = try await HTTPProbe.get(port: port, path: "/v1/calls/\(callID)", apiKey: seeded[min(1, seeded.count - 1)].apiKey)
        if seeded.count > 1, foreign.status != 404 {
            throw BenchmarkFailure("another tenant's call answered \(foreign.status), not 404")
        }

        var routes = [
            ApiRoute.list(work: work, tenants: seeded, data: data),
            ApiRoute.detail(work: work, tenants: seeded, data: data),
        ]
        if let interval = pacingIntervalMs {
            // Each connection pauses between half and one and a half of the mean interval, drawn anew
            // each time: the connections drift apart instead of asking in bursts. wrk calls `delay`
            // before a connection's first request too, so the start is spread the same way.
            for index in routes.indices { routes[index].lua += "\n" + TurnBenchmark.delayFunction(thinkMs: interval, jitter: true) + "\n" }
        }
        for route in routes { try route.write() }

        let statementTimeout = "2000ms"
        report("""
            api: \(formatRate(Double(data.calls))) calls over \(tenants) tenants; voicecore up pid \(pid) on \(Self.databaseName(benchURL) ?? "?")\
            \(upArguments.isEmpty ? "" : " (" + upArguments.joined(separator: " ") + ")"); wrk -t\(threads) -c\(connections) -d\(duration)s beside \
            pgbench -c\(connections) -j\(threads) -M prepared, -t sized to about \(duration) s (the same statements in the same round trips: BEGIN, READ ONLY, \
            SET LOCAL ROLE voicecore_tenant, set_config(app.tenant_id, statement_timeout \(statementTimeout)), the query in one pipeline, then COMMIT); \
            \(rounds) rounds, A/B alternating
            """)
        if let readRate, let interval = pacingIntervalMs {
            report("""
                api: paced reads: \(readRate) requests/s per route over \(connections) connections (each pausing \(interval / 2)–\(interval * 3 / 2) ms \
                between its requests, drawn anew each time), pgbench -R \(readRate) (Poisson schedule; its latency counts from the scheduled start)
                """)
        }

        var ingest: ApiIngestLoad?
        if let ingestRate, let ingestTenant {
            let tenant = benchTenants[ingestTenant]
            let load = ApiIngestLoad(port: port, publicBase: base, tenant: tenant.id, accountSID: tenant.accountSID, authToken: tenant.authToken,
                                     webhooksPerSecond: ingestRate)
            load.start()
            ingest = load
            report("api: ingesting \(ingestRate) signed Twilio webhooks/s (loadgen's calls, \(ApiIngestLoad.callSeconds) s each) into the same edge; measuring once it is steady")
            try await Task.sleep(for: .seconds(ApiIngestLoad.callSeconds + 2))
        }

        // Warm-up (not counted): caches, prepared statements, connections; and pgbench's rate,
        // which sizes its measured runs (see `runPgbench`).
        var pgbenchTransactions: [String: Int] = [:]
        for route in routes {
            _ = try await wrk(route, seconds: 3)
            if let readRate {
                // Paced: as many transactions as the rate offers in `duration` seconds.
                _ = try await runPgbench(pgbench, route: route, url: benchURL, transactionsPerClient: max(1, readRate * 3 / connections), log: nil)
                pgbenchTransactions[route.name] = max(1, Int((Double(readRate) * Double(duration) / Double(connections)).rounded(.up)))
            } else {
                let warm = try await runPgbench(pgbench, route: route, url: benchURL, transactionsPerClient: 20, log: nil)
                pgbenchTransactions[route.name] = max(20, Int(warm.tps * Double(duration) / Double(connections)))
            }
        }

        var results: [String: [(http: WrkResult, pg: PgbenchResult)]] = [:]
        let ingestBefore = ingest?.counters
        let ingestClock = ContinuousClock.now
        for round in 1...rounds {
            for route in routes {
                // A then B in odd rounds, B then A in even ones: neither side always runs second.
                var http: WrkResult?
                var pg: PgbenchResult?
                var during = ""
                for side in (round % 2 == 1 ? [0, 1] : [1, 0]) {
                    if side == 0 {
                        // What the ingest achieved and the machine did while HTTP was measured.
                        let before = ingest?.counters
                        let cpu = MachineCPU.now()
                        let clock = ContinuousClock.now
                        http = try await wrk(route, seconds: duration)
                        let seconds = (ContinuousClock.now - clock) / .seconds(1)
                        if let before, let after = ingest?.counters {
                            during += "\n        ingest meanwhile \(formatRate(Double(after.accepted - before.accepted) / seconds)) webhooks/s accepted"
                                + (after.failed > before.failed ? ", \(after.failed - before.failed) failed" : "") + ";"
                        }
                        if let share = MachineCPU.share(since: cpu) { during += (during.isEmpty ? "\n        " : " ") + share }
                    } else {
                        pg = try await runPgbench(pgbench, route: route, url: benchURL, transactionsPerClient: pgbenchTransactions[route.name] ?? 100,
                                                  log: work.appendingPathComponent("pg-\(route.name)-\(round)"))
                    }
                }
                guard let http, let pg else { continue }
                results[route.name, default: []].append((http, pg))
                report("round \(round)  \(route.title.padding(toLength: 34, withPad: " ", startingAt: 0)) \(Self.describe(http, pg))\(during)")
            }
        }
        let ingestSeconds = (ContinuousClock.now - ingestClock) / .seconds(1)
        let ingestAfter = ingest?.counters
        await ingest?.stop()

        report("median of \(rounds) rounds (each figure's own median):")
        for route in routes {
            guard let runs = results[route.name], !runs.isEmpty else { continue }
            let http = WrkResult(rate: Self.median(runs.map(\.http.rate)), p50: Self.median(runs.map(\.http.p50)), p99: Self.median(runs.map(\.http.p99)),
                                 requests: runs.map(\.http.requests).reduce(0, +), errors: runs.map(\.http.errors).reduce(0, +))
            let pg = PgbenchResult(tps: Self.median(runs.map(\.pg.tps)), p50: Self.median(runs.map(\.pg.p50)), p99: Self.median(runs.map(\.pg.p99)),
                                   failed: runs.map(\.pg.failed).reduce(0, +),
                                   scheduleLag: runs.compactMap(\.pg.scheduleLag).isEmpty ? nil : Self.median(runs.compactMap(\.pg.scheduleLag)))
            report("  \(route.title.padding(toLength: 34, withPad: " ", startingAt: 0)) \(Self.describe(http, pg))")
            let ratio = http.rate / pg.tps
            let p99Target = ingest == nil ? 20.0 : 50.0
            // Paced, both sides are offered the same rate: their ratio says whether HTTP kept up, not how fast it can go.
            let rateTarget = readRate.map { "offered \($0)/s: HTTP achieved \(formatRate(http.rate))/s, pgbench \(formatRate(pg.tps))/s (the 0.5× target is for saturating runs)" }
                ?? "\(String(format: "%.2f", ratio))× pgbench (≥ 0.5×: \(ratio >= 0.5 ? "met" : "NOT met"))"
            report("    targets: \(rateTarget); "
                + "p99 \(String(format: "%.1f", http.p99)) ms (≤ \(Int(p99Target)) ms\(ingest == nil ? "" : " under ingest"): \(http.p99 <= p99Target ? "met" : "NOT met"))")
            if http.errors > 0 || pg.failed > 0 {
                report("    NOT VALID: \(http.errors) HTTP answers were not 2xx or failed, \(pg.failed) pgbench transactions failed")
            }
        }
        if let ingest, let ingestBefore, let ingestAfter {
            let accepted = ingestAfter.accepted - ingestBefore.accepted
            report("ingest meanwhile: \(formatRate(Double(accepted) / ingestSeconds)) webhooks/s accepted (asked \(ingestRate ?? 0)/s), "
                + "\(ingestAfter.failed - ingestBefore.failed) failed; ingest HTTP latency \(ingest.latencySummary)")
        }
        report("edge (voicecore up) peak RSS: \(Self.peakRSS(pid).map { "\($0 / 1024) MB" } ?? "unknown")")
    }

    // MARK: wrk

    struct WrkResult: Sendable {
        var rate: Double
        /// Milliseconds.
        var p50: Double
        var p99: Double
        var requests: Int
        /// Non-2xx answers, socket errors and timeouts.
        var errors: Int
    }

    private func wrk(_ route: ApiRoute, seconds: Int) async throws -> WrkResult {
        let arguments = ["--latency", "-t\(threads)", "-c\(connections)", "-d\(seconds)s", "-s", route.luaScript.path, "http://127.0.0.1:\(port)"]
        // wrk runs for seconds: wait for it on a thread of its own, not on the cooperative pool.
        let output = try await runBlocking("vc-wrk") { try Self.capture(Self.wrkPath, arguments, killAfterSeconds: seconds + 60) }
        var result = WrkResult(rate: 0, p50: .nan, p99: .nan, requests: 0, errors: 0)
        for line in output.split(separator: "\n") {
            let words = line.split(separator: " ", omittingEmptySubsequences: true)
            if line.hasPrefix("Requests/sec:"), let value = words.last.flatMap({ Double($0) }) { result.rate = value }
            if line.contains("requests in"), let value = words.first.flatMap({ Int($0) }) { result.requests = value }
            if line.contains("Non-2xx"), let value = words.last.flatMap({ Int($0) }) { result.errors += value }
            if line.contains("Socket errors") {
                // "Socket errors: connect 0, read 0, write 0, timeout 0"
                result.errors += words.compactMap { Int($0.trimmingCharacters(in: .punctuationCharacters)) }.reduce(0, +)
            }
            if words.count == 2, let value = Self.milliseconds(wrk: String(words[1])) {
                switch words[0] {
                case "50%": result.p50 = value
                case "99%": result.p99 = value
                default: break
                }
            }
        }
        guard result.requests > 0 else { throw BenchmarkFailure("wrk produced no result:\n\(output)") }
        return result
    }

    /// wrk's "850.00us", "3.21ms", "1.05s", "2.00m" in milliseconds.
    static func milliseconds(wrk text: String) -> Double? {
        for (unit, factor) in [("us", 0.001), ("ms", 1.0), ("s", 1000.0), ("m", 60_000.0)] where text.hasSuffix(unit) {
            if let value = Double(text.dropLast(unit.count)) { return value * factor }
        }
        return nil
    }

    // MARK: pgbench

    struct PgbenchResult: Sendable {
        var tps: Double
        /// Milliseconds, from pgbench's per-transaction log.
        var p50: Double
        var p99: Double
        var failed: Int
        /// With `-R`: the mean delay, in milliseconds, between a transaction's scheduled start and its
        /// actual one (pgbench's "rate limit schedule lag"), which its latency includes.
        var scheduleLag: Double? = nil
    }

    /// pgbench runs a number of transactions per client (`-t`), not a duration (`-T`): pgbench 15
    /// stops a `-T` run by abandoning pipelines mid-way and then spins, never ending. The count
    /// comes from the warm-up's rate, so a run lasts about `duration` seconds.
    /// With ``readRate``, pgbench starts its transactions on a Poisson schedule at that rate over
    /// all clients (`-R`); its latency then counts from each transaction's scheduled start, so a
    /// transaction that waited for a free client counts its wait.
    private func runPgbench(_ pgbench: String, route: ApiRoute, url: String, transactionsPerClient: Int, log: URL?) async throws -> PgbenchResult {
        var arguments = ["-n", "-c", String(connections), "-j", String(threads), "-t", String(transactionsPerClient), "-M", "prepared",
                         "-f", route.pgbenchScript.path]
        if let readRate { arguments += ["-R", String(readRate)] }
        if let log { arguments += ["-l", "--log-prefix", log.path] }
        arguments.append(url)
        let command = arguments
        let limit = duration * 6 + 60
        let output = try await runBlocking("vc-pgbench") { try Self.capture(pgbench, command, failOnStatus: true, killAfterSeconds: limit) }
        var result = PgbenchResult(tps: 0, p50: .nan, p99: .nan, failed: 0)
        for line in output.split(separator: "\n") {
            let words = line.split(separator: " ", omittingEmptySubsequences: true)
            if line.hasPrefix("tps = "), words.count > 2, let value = Double(words[2]) { result.tps = value }
            if line.hasPrefix("number of failed transactions"), let value = words.dropFirst(4).first.flatMap({ Int($0) }) { result.failed = value }
            // "rate limit schedule lag: avg 0.123 (max 4.567) ms"
            if line.hasPrefix("rate limit schedule lag: avg"), let value = words.dropFirst(5).first.flatMap({ Double($0) }) { result.scheduleLag = value }
        }
        guard result.tps > 0 else { throw BenchmarkFailure("pgbench produced no result:\n\(output)") }
        if let log {
            // Per-transaction log lines: client, transaction, latency (µs), script, epoch, µs.
            var latencies: [Int] = []
            let directory = log.deletingLastPathComponent()
            for file in try FileManager.default.contentsOfDirectory(atPath: directory.path) where file.hasPrefix(log.lastPathComponent + ".") {
                let text = try String(contentsOf: directory.appendingPathComponent(file), encoding: .utf8)
                for line in text.split(separator: "\n") {
                    let fields = line.split(separator: " ")
                    if fields.count > 2, let micros = Int(fields[2]) { latencies.append(micros) }
                }
            }
            latencies.sort()
            if !latencies.isEmpty {
                result.p50 = Double(latencies[latencies.count / 2]) / 1000
                result.p99 = Double(latencies[min(latencies.count - 1, latencies.count * 99 / 100)]) / 1000
            }
        }
        return result
    }

    static func pgbenchPath() -> String? {
        var candidates = ["/usr/bin/pgbench"]
        if let versions = try? FileManager.default.contentsOfDirectory(atPath: "/usr/lib/postgresql") {
            candidates += versions.sorted(by: >).map { "/usr/lib/postgresql/\($0)/bin/pgbench" }
        }
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    // MARK: Helpers

    /// Runs a tool to its end and returns its standard output (and error); blocking.
    static func capture(_ path: String, _ arguments: [String], failOnStatus: Bool = false, killAfterSeconds: Int? = nil) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let pid = process.processIdentifier
        let watchdog = killAfterSeconds.map { seconds in
            let item = DispatchWorkItem { kill(pid, SIGKILL) }
            DispatchQueue.global().asyncAfter(deadline: .now() + .seconds(seconds), execute: item)
            return item
        }
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        watchdog?.cancel()
        if failOnStatus, process.terminationStatus != 0 {
            throw BenchmarkFailure("\(URL(fileURLWithPath: path).lastPathComponent) failed (exit \(process.terminationStatus)):\n\(output.suffix(2000))")
        }
        return output
    }

    static func describe(_ http: WrkResult, _ pg: PgbenchResult) -> String {
        func ms(_ value: Double) -> String { String(format: "%.2f ms", value) }
        return "HTTP \(formatRate(http.rate).leftPadded(7)) req/s  p50 \(ms(http.p50))  p99 \(ms(http.p99))  |  pgbench \(formatRate(pg.tps).leftPadded(7)) tps  "
            + "p50 \(ms(pg.p50))  p99 \(ms(pg.p99))" + (pg.scheduleLag.map { " (schedule lag avg \(ms($0)))" } ?? "") + "  |  \(String(format: "%.2f", http.rate / pg.tps))×"
            + (http.errors > 0 ? "  (\(http.errors) HTTP errors)" : "") + (pg.failed > 0 ? "  (\(pg.failed) pgbench failures)" : "")
    }

    static func median(_ values: [Double]) -> Double {
        let sorted = values.sorted()
        guard !sorted.isEmpty else { return .nan }
        return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
    }

    /// `url` with its database replaced by `database`.
    static func url(_ url: String, database: String) throws -> String {
        guard var components = URLComponents(string: url), components.host != nil else { throw BenchmarkFailure("not a database URL: \(PostgresConfiguration.redacted(url))") }
        components.path = "/" + database
        guard let result = components.string else { throw BenchmarkFailure("not a database URL: \(PostgresConfiguration.redacted(url))") }
        return result
    }

    static func databaseName(_ url: String) -> String? {
        guard let path = URLComponents(string: url)?.path, path.count > 1 else { return nil }
        return String(path.dropFirst())
    }

    static func peakRSS(_ pid: Int32) -> Int? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
        return status.split(separator: "\n").first { $0.hasPrefix("VmHWM:") }.flatMap { line in
            line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first.flatMap { Int($0) }
        }
    }

    /// Removes this run's streams and checkpoints, and what the ingest tenant's calls left in the read models.
    private func cleanup(db: PostgresConnection, redis: RedisClient, prefix: String, ingestTenant: Int?) async throws {
        let keys = try await redis.scanAll(match: "\(prefix):*")
        if !keys.isEmpty { _ = try await redis.execute(.del(keys)) }
        try await db.query("DELETE FROM projection_checkpoints WHERE stream LIKE \(prefix + ":%")")
        if let ingestTenant {
            let id = ApiBenchmarkData.tenantID(ingestTenant)
            for table in ["call_sessions", "transcripts", "call_analytics", "leads", "crm_contacts", "crm_lead_contacts", "interactions",
                          "billing_usage_items", "billing_usage", "business_metrics", "business_metrics_leads", "event_log"] {
                try await db.query("DELETE FROM \(identifier: table) WHERE tenant_id = \(id)")
            }
        }
    }
}
