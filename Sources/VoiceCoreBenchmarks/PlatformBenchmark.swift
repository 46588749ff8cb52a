import Foundation
import Logging
import Synchronization
import VoiceCoreEvents
import VoiceCorePostgres
import VoiceCoreProjections
import VoiceCoreRedis
import VoiceCoreSimulation
import VoiceCoreTenants
import VoiceCoreTime

/// The whole platform's sustainable webhook rate beside the edge's alone, in the same run
/// (`voicecore bench platform`).
///
/// The workload is `voicecore loadgen`'s: signed Twilio calls (incoming call, in-progress, one
/// final caller segment a second, completed), each request signed as it is sent, over the same
/// lean load client (``CallLoad``, ``WebhookLoadClient``). It is played against `voicecore edge`
/// as its own process (the reference: verify, map, publish) and against `voicecore up` as its own
/// process (the same edge with the services and projectors behind it), alternating A/B/A/B for
/// ``rounds`` rounds, each side on a fresh Redis of its own (``BenchRedis``) and a scratch Postgres
/// schema. For each it searches the *sustainable rate*: the highest offered webhook rate at which
/// every webhook was answered 2xx, the load kept its schedule, HTTP p99 stayed within
/// ``p99LimitMilliseconds`` and nothing was lost (every accepted webhook's effect present within
/// ``drainSeconds`` after the step: an entry on the edge's streams; for `up`, every segment in
/// `transcripts` and every completed call ended in `call_sessions`, as loadgen checks). The search
/// doubles from ``startRate`` (later rounds: from the side's previous result) until a step fails,
/// then bisects ``bisectSteps`` times.
///
/// Then, at half the platform's median sustainable rate, on a fresh `up`: each segment's
/// end-to-end latency (the edge's 2xx → its `transcripts` row's commit time, Postgres'
/// `track_commit_timestamp`), `up`'s resident memory, and where the CPU went per webhook.
public struct PlatformBenchmark: Sendable {
    /// What is measured.
    public enum Side: String, Sendable {
        case edge, up

        var title: String { self == .edge ? "edge alone" : "voicecore up" }
    }

    /// The `voicecore` executable that runs `voicecore edge` and `voicecore up` under test.
    public var executable: URL
    /// A/B rounds (edge first in odd rounds, `up` first in even ones).
    public var rounds: Int
    /// The first offered rate of the first round's searches, webhooks per second.
    public var startRate: Int
    /// Seconds during which each step starts calls (each call then lasts ``callSeconds`` + 1 s).
    public var stepSeconds: Int
    /// Transcript segments per call, one a second (each call also sends its incoming call, in-progress and completed webhooks).
    public var callSeconds: Int
    /// Bisections between the highest passing and the lowest failing rate.
    public var bisectSteps: Int
    /// The search never offers more than this.
    public var maximumRate: Int
    /// A step passes only with HTTP p99 at most this.
    public var p99LimitMilliseconds: Double
    /// Seconds after a step's last webhook within which every effect must be present.
    public var drainSeconds: Int
    /// Seconds of the run at half the platform's sustainable rate.
    public var halfRateSeconds: Int
    /// Port of the edge under test.
    public var port: Int
    /// Partitions per category, the same for both sides.
    public var partitions: Int
    /// HTTP connections of the load client.
    public var clientConnections: Int
    /// The migrations directory.
    public var migrations: String
    /// Use the given Redis (a prefix of the run's own) instead of a ``BenchRedis`` per side and round.
    public var sharedRedis: Bool

    public init(executable: URL, rounds: Int = 3, startRate: Int = 1000, stepSeconds: Int = 10, callSeconds: Int = 4, bisectSteps: Int = 2,
                maximumRate: Int = 64_000, p99LimitMilliseconds: Double = 50, drainSeconds: Int = 5, halfRateSeconds: Int = 15, port: Int = 18_095,
                partitions: Int = 16, clientConnections: Int = 64, migrations: String = "database/migrations", sharedRedis: Bool = false) {
        self.executable = executable
        self.rounds = rounds
        self.startRate = startRate
        self.stepSeconds = stepSeconds
        self.callSeconds = callSeconds
        self.bisectSteps = bisectSteps
        self.maximumRate = maximumRate
        self.p99LimitMilliseconds = p99LimitMilliseconds
        self.drainSeconds = drainSeconds
        self.halfRateSeconds = halfRateSeconds
        self.port = port
        self.partitions = partitions
        self.clientConnections = clientConnections
        self.migrations = migrations
        self.sharedRedis = sharedRedis
    }

    /// Webhooks each call sends: the incoming call, in-progress, its segments, completed.
    var webhooksPerCall: Int { callSeconds + 3 }

    public func run(on servers: BenchmarkServers) async throws {
        let report = servers.report
        report("""
            platform: loadgen's signed Twilio calls (\(callSeconds) segments a call, \(webhooksPerCall) webhooks over \(callSeconds + 1) s, each request signed \
            as it is sent, \(clientConnections) connections) against `voicecore edge` alone and `voicecore up`, each as its own process with \(partitions) \
            partitions, \(rounds) round(s) alternating, each side on \(sharedRedis ? "the shared Redis (a prefix of its own)" : "a fresh Redis of its own") \
            and a scratch schema. A step offers a rate for \(stepSeconds) s (calls started evenly, then finished); it passes with every webhook 2xx, \
            the schedule kept, HTTP p99 ≤ \(Self.format(p99LimitMilliseconds)) ms and lost 0 (every effect present within \(drainSeconds) s). \
            Search: double from \(startRate)/s (later rounds: from the side's last result) until a step fails, then \(bisectSteps) bisection(s).
            """)
        var results: [Side: [Search]] = [:]
        var ratios: [Double] = []
        for round in 1...rounds {
            var found: [Side: Search] = [:]
            for side in (round % 2 == 1 ? [Side.edge, .up] : [.up, .edge]) {
                let hint = results[side]?.last?.sustainable
                let search = try await withDeployment(side, servers: servers) { deployment in
                    try await self.search(on: deployment, from: hint ?? startRate, round: round, report: report)
                }
                found[side] = search
                results[side, default: []].append(search)
            }
            let edge = found[.edge]?.sustainable ?? 0, up = found[.up]?.sustainable ?? 0
            let ratio = edge > 0 ? Double(up) / Double(edge) : .nan
            if edge > 0 { ratios.append(ratio) }
            report("round \(round): sustainable rate: edge alone \(formatRate(Double(edge))) webhooks/s, voicecore up \(formatRate(Double(up))) webhooks/s; "
                + "ratio \(Self.format(ratio, digits: 2))×")
            for side in [Side.edge, .up] {
                guard let best = found[side]?.best else { continue }
                report("  \(side.title) at \(formatRate(Double(best.rate)))/s: " + (best.machine ?? "machine CPU unknown"))
                for line in best.cpu { report("    " + line) }
            }
        }

        let edgeMedian = ApiBenchmark.median((results[.edge] ?? []).map { Double($0.sustainable) })
        let upMedian = ApiBenchmark.median((results[.up] ?? []).map { Double($0.sustainable) })
        let ratioMedian = ApiBenchmark.median(ratios)
        report("median of \(rounds) round(s): edge alone \(formatRate(edgeMedian)) webhooks/s, voicecore up \(formatRate(upMedian)) webhooks/s; "
            + "ratio (median of the rounds' ratios) \(Self.format(ratioMedian, digits: 2))× (target ≥ 0.5×: \(ratioMedian >= 0.5 ? "met" : "NOT met"))")

        let halfRate = Int((upMedian / 2).rounded())
        guard halfRate > 0 else {
            report("half rate: voicecore up sustained no rate tried, so there is no half rate to measure at")
            return
        }
        try await withDeployment(.up, servers: servers) { deployment in
            try await self.measureHalfRate(halfRate, on: deployment, report: report)
        }
    }

    // MARK: The search

    struct Search: Sendable {
        var sustainable = 0
        var best: Step?
    }

    private func search(on deployment: Deployment, from first: Int, round: Int, report: @escaping @Sendable (String) -> Void) async throws -> Search {
        let side = deployment.side
        var steps: [Step] = []
        var passed: Step?
        var failed: Int?
        func run(_ rate: Int) async throws -> Step {
            let step = try await self.step(rate, seconds: stepSeconds, on: deployment)
            steps.append(step)
            report("  round \(round) \(side.title.padding(toLength: 12, withPad: " ", startingAt: 0)) \(step.summary(limit: p99LimitMilliseconds))")
            if !step.passed(limit: p99LimitMilliseconds) { try await settle(deployment) }
            return step
        }
        var rate = max(1, min(first, maximumRate))
        while true {
            let step = try await run(rate)
            guard step.passed(limit: p99LimitMilliseconds) else { failed = rate; break }
            passed = step
            guard rate < maximumRate else { break }
            rate = min(maximumRate, rate * 2)
        }
        if passed == nil {
            // Even the first rate failed: halve until one passes (a few times at most).
            rate /= 2
            while rate >= 1, steps.count < 5 {
                let step = try await run(rate)
                if step.passed(limit: p99LimitMilliseconds) { passed = step; break }
                failed = rate
                rate /= 2
            }
        }
        for _ in 0..<bisectSteps {
            guard let low = passed?.rate, let high = failed else { break }
            let middle = (low + high) / 2
            guard middle > low, middle < high else { break }
            let step = try await run(middle)
            if step.passed(limit: p99LimitMilliseconds) { passed = step } else { failed = middle }
        }
        return Search(sustainable: passed?.rate ?? 0, best: passed)
    }

    // MARK: A step

    struct Step: Sendable {
        var rate: Int
        var calls: Int
        var accepted = 0
        var errors = 0
        var p50 = Double.nan
        var p99 = Double.nan
        /// Accepted webhooks whose effect was not there within the drain time.
        var lost = 0
        /// Seconds the load took beyond its schedule (the machine could not keep it).
        var behind = 0.0
        var elapsed = 0.0
        /// Seconds after the last webhook until every effect was present (nil: not within the drain time).
        var drained: Double?
        var cpu: [String] = []
        var machine: String?
        var statistics = LoadStatistics()

        func passed(limit: Double) -> Bool { errors == 0 && lost == 0 && p99 <= limit && behind <= 0 }

        func summary(limit: Double) -> String {
            var failures: [String] = []
            if errors > 0 { failures.append("\(errors) webhooks not 2xx") }
            if behind > 0 { failures.append("the load fell \(PlatformBenchmark.format(behind, digits: 1)) s behind its schedule") }
            if !(p99 <= limit) { failures.append("p99 over \(PlatformBenchmark.format(limit)) ms") }
            if lost > 0 { failures.append("lost \(lost)") }
            return "\(formatRate(Double(rate)).leftPadded(7)) webhooks/s offered: \(accepted) accepted in \(PlatformBenchmark.format(elapsed, digits: 1)) s, "
                + "HTTP p50 \(PlatformBenchmark.format(p50, digits: 1)) ms p99 \(PlatformBenchmark.format(p99, digits: 1)) ms, lost \(lost)"
                + (drained.map { ", effects complete \(PlatformBenchmark.format($0, digits: 1)) s after the last webhook" } ?? "")
                + (failures.isEmpty ? " → ok" : " → FAILED: " + failures.joined(separator: ", "))
        }
    }

    /// Offers `rate` webhooks a second for `seconds` (calls started evenly, each then finished),
    /// then checks every accepted webhook's effect.
    private func step(_ rate: Int, seconds: Int, on deployment: Deployment) async throws -> Step {
        let callsPerSecond = Double(rate) / Double(webhooksPerCall)
        var step = Step(rate: rate, calls: max(1, Int((callsPerSecond * Double(seconds)).rounded())))
        let load = CallLoad(tenant: deployment.tenant, accountSID: deployment.accountSID, authToken: deployment.authToken, publicBase: deployment.base,
                            host: "127.0.0.1:\(port)", calls: step.calls, rate: callsPerSecond, callSeconds: callSeconds)
        let entriesBefore = try await deployment.side == .edge ? deployment.entriesAdded() : 0
        let machine = MachineCPU.now()
        let account = CPUAccount.now(redisInfo: try? await deployment.redis.execute(.info()))
        let processBefore = Self.cpuSeconds(deployment.pid)
        let started = ContinuousClock.now
        try await load.play(through: deployment.client, statistics: step.statistics, started: started) { _ in }
        let finished = ContinuousClock.now
        step.elapsed = (finished - started) / .seconds(1)
        step.machine = MachineCPU.share(since: machine)
        let totals = step.statistics.snapshot
        step.accepted = totals.accepted
        step.errors = totals.errors
        step.cpu = CPUAccount.report(from: account, to: CPUAccount.now(redisInfo: try? await deployment.redis.execute(.info())), units: totals.accepted,
                                     unit: "webhook", offeredRate: Double(rate)) ?? []
        // On a shared machine "the rest" holds other users' work too: the process under test apart.
        if let before = processBefore, let after = Self.cpuSeconds(deployment.pid), totals.accepted > 0 {
            step.cpu.append("of the rest, voicecore \(deployment.side.rawValue) itself (pid \(deployment.pid), /proc): "
                + "\(Int(((after - before) * 1_000_000 / Double(totals.accepted)).rounded())) µs per accepted webhook")
        }
        // The last call starts at (calls - 1) / rate and lasts callSeconds + 1 s; a tenth (at least
        // a second) of slack for timers and the last answers.
        let scheduled = Double(step.calls - 1) / callsPerSecond + Double(callSeconds + 1)
        step.behind = max(0, step.elapsed - scheduled - max(1, scheduled / 10))
        let latencies = step.statistics.httpLatencies.sorted()
        if !latencies.isEmpty {
            step.p50 = latencies[latencies.count / 2] / .milliseconds(1)
            step.p99 = latencies[min(latencies.count - 1, latencies.count * 99 / 100)] / .milliseconds(1)
        }
        // Effects: present now, or within the drain time.
        let deadline = finished + .seconds(drainSeconds)
        while true {
            let missing = try await deployment.missingEffects(of: step.statistics, entriesBefore: entriesBefore)
            step.lost = missing
            if missing == 0 {
                step.drained = (ContinuousClock.now - finished) / .seconds(1)
                break
            }
            guard ContinuousClock.now < deadline else { break }
            try await Task.sleep(for: .milliseconds(200))
        }
        return step
    }

    /// After a failed step, waits (up to a minute) until `up` has worked off its backlog, so that
    /// the next step does not pay for this one.
    private func settle(_ deployment: Deployment) async throws {
        guard deployment.side == .up else { return }
        let deadline = ContinuousClock.now + .seconds(60)
        var idle = 0
        var last = try await deployment.rowsWritten()
        while ContinuousClock.now < deadline, idle < 3 {
            try await Task.sleep(for: .milliseconds(500))
            let now = try await deployment.rowsWritten()
            idle = now == last ? idle + 1 : 0
            last = now
        }
    }

    // MARK: Half the platform's rate

    private func measureHalfRate(_ rate: Int, on deployment: Deployment, report: @escaping @Sendable (String) -> Void) async throws {
        let peak = Mutex(0)
        let pid = deployment.pid
        let sampler = Task {
            while !Task.isCancelled {
                if let rss = Self.residentKilobytes(pid) { peak.withLock { $0 = max($0, rss) } }
                try? await Task.sleep(for: .milliseconds(200))
            }
        }
        let step = try await self.step(rate, seconds: halfRateSeconds, on: deployment)
        sampler.cancel()
        _ = await sampler.value
        report("at half the platform's sustainable rate, on a fresh voicecore up (\(halfRateSeconds) s):")
        report("  " + step.summary(limit: p99LimitMilliseconds))
        let latencies = try await deployment.segmentLatencies(of: step.statistics)
        let rss = peak.withLock { $0 }
        if let latencies {
            let sorted = latencies.sorted()
            let p50 = sorted.isEmpty ? Double.nan : sorted[sorted.count / 2] / .milliseconds(1)
            let p99 = sorted.isEmpty ? Double.nan : sorted[min(sorted.count - 1, sorted.count * 99 / 100)] / .milliseconds(1)
            report("  end to end (webhook accepted → its transcripts row committed): \(LoadStatistics.describe(sorted)) "
                + "(target p99 ≤ 50 ms: \(p99 <= 50 ? "met" : "NOT met"); p50 \(Self.format(p50, digits: 1)) ms)")
        } else {
            report("  end to end: no commit times (start Postgres with track_commit_timestamp=on, as tools/dev-env does)")
        }
        report("  voicecore up RSS: peak \(rss / 1024) MB while measured, \(Self.peakResidentKilobytes(pid).map { "\($0 / 1024) MB" } ?? "?") since it started "
            + "(target < 150 MB: \(rss > 0 && rss < 150 * 1024 ? "met" : "NOT met"))")
        if let machine = step.machine { report("  " + machine) }
        for line in step.cpu { report("  " + line) }
        report("  (Postgres: every process named postgres on this machine, including other users' backends)")
    }

    // MARK: A side, deployed

    /// One side running: its process, its Redis, its schema, its tenant, the load client.
    final class Deployment: Sendable {
        let side: Side
        let base: String
        let pid: Int32
        let prefix: String
        let tenant: Identifier
        let accountSID: String
        let authToken: String
        let redis: RedisClient
        let db: PostgresConnection
        let client: WebhookLoadClient

        init(side: Side, base: String, pid: Int32, prefix: String, tenant: Identifier, accountSID: String, authToken: String, redis: RedisClient,
             db: PostgresConnection, client: WebhookLoadClient) {
            self.side = side
            self.base = base
            self.pid = pid
            self.prefix = prefix
            self.tenant = tenant
            self.accountSID = accountSID
            self.authToken = authToken
            self.redis = redis
            self.db = db
            self.client = client
        }

        /// Entries ever added to this run's streams (XINFO STREAM entries-added: trimming does not lower it).
        func entriesAdded() async throws -> Int {
            var total = 0
            for key in try await redis.scanAll(match: "\(prefix):*", type: "stream") {
                let reply = try await redis.send("XINFO", "STREAM", .string(key))
                guard let fields = reply.array else { throw BenchmarkFailure("XINFO STREAM \(key) answered \(reply)") }
                var index = 0
                while index + 1 < fields.count {
                    if fields[index].string == "entries-added", let value = fields[index + 1].int { total += value }
                    index += 2
                }
            }
            return total
        }

        /// Accepted webhooks whose effect is not there: for the edge alone, those beyond the entries
        /// added to its streams since `entriesBefore`; for `up`, accepted segments not in
        /// `transcripts` and completed calls not ended in `call_sessions`.
        func missingEffects(of statistics: LoadStatistics, entriesBefore: Int) async throws -> Int {
            let totals = statistics.snapshot
            if side == .edge {
                let added = try await entriesAdded() - entriesBefore
                return max(0, totals.accepted - added)
            }
            let ids = statistics.callIDs.map(\.uuid)
            var transcripts = 0, ended = 0
            for chunk in stride(from: 0, to: ids.count, by: 2000) {
                let some = Array(ids[chunk..<min(ids.count, chunk + 2000)])
                let rows = try await db.query("""
                    SELECT (SELECT count(*) FROM transcripts WHERE tenant_id = \(tenant.uuid) AND call_id = ANY(\(some)::uuid[]) AND track = 'inbound') AS transcripts,
                           (SELECT count(*) FROM call_sessions WHERE tenant_id = \(tenant.uuid) AND call_id = ANY(\(some)::uuid[]) AND end_status IS NOT NULL) AS ended
                    """)
                transcripts += try rows[0].decode(Int.self, "transcripts")
                ended += try rows[0].decode(Int.self, "ended")
            }
            return max(0, totals.acceptedSegments - transcripts) + max(0, totals.completedCalls - ended)
        }

        /// Rows in the read models the workload fills (they grow while a backlog is worked off).
        func rowsWritten() async throws -> Int {
            let rows = try await db.query("SELECT (SELECT count(*) FROM transcripts) + (SELECT count(*) FROM call_sessions WHERE end_status IS NOT NULL) AS n")
            return try rows[0].decode(Int.self, "n")
        }

        /// Each accepted segment's time from its 2xx to its transcripts row's commit; nil without commit times.
        func segmentLatencies(of statistics: LoadStatistics) async throws -> [Duration]? {
            let accepted = statistics.segmentAcceptance
            let ids = statistics.callIDs.map(\.uuid)
            var latencies: [Duration] = []
            for chunk in stride(from: 0, to: ids.count, by: 2000) {
                let some = Array(ids[chunk..<min(ids.count, chunk + 2000)])
                let rows: PostgresRows
                do {
                    rows = try await db.query("""
                        SELECT call_id, sequence, (extract(epoch FROM pg_xact_commit_timestamp(xmin)) * 1000000)::int8 AS committed
                        FROM transcripts WHERE tenant_id = \(tenant.uuid) AND call_id = ANY(\(some)::uuid[]) AND track = 'inbound'
                        """)
                } catch let error as PostgresError where "\(error)".contains("track_commit_timestamp") {
                    return nil
                }
                for row in rows {
                    guard let committed = try row.decode(Int64?.self, "committed") else { return nil }
                    let key = SegmentKey(call: Identifier(try row.decode(UUID.self, "call_id")), sequence: try row.decode(Int.self, "sequence"))
                    if let at = accepted[key] { latencies.append(.microseconds(max(0, committed - at))) }
                }
            }
            return latencies
        }
    }

    /// Deploys `side` (a Redis of its own, a scratch schema with a tenant, the process), warms it
    /// up with a few calls whose effects must all arrive, runs `body`, and removes everything,
    /// also when `body` throws.
    private func withDeployment<Result: Sendable>(_ side: Side, servers: BenchmarkServers, _ body: (Deployment) async throws -> Result) async throws -> Result {
        let report = servers.report
        guard !EdgeBenchmark.accepts(port: port) else { throw BenchmarkFailure("something already listens on 127.0.0.1:\(port): give --port a free one") }
        let suffix = UUID().uuidString.prefix(8).lowercased()
        let schema = "bench_platform_\(suffix)"
        let prefix = "bench-platform-\(suffix)"
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("voicecore-bench-platform-\(suffix)")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        let privateRedis = sharedRedis ? nil : try await BenchRedis.start()
        let redisURL = privateRedis?.url ?? servers.redisURL
        if let privateRedis {
            report("  \(side.title): redis of its own on 127.0.0.1:\(privateRedis.port) in \(privateRedis.directory.path)")
        }
        var process: Process?
        var redis: RedisClient?
        var admin: PostgresConnection?
        var db: PostgresConnection?
        var client: WebhookLoadClient?
        let log = work.appendingPathComponent("\(side.rawValue).log")
        func logTail() -> String { String((try? String(contentsOf: log, encoding: .utf8))?.suffix(4000) ?? "(no output)") }
        func tearDown() async {
            if let process, process.isRunning {
                kill(process.processIdentifier, SIGKILL)
                process.waitUntilExit()
            }
            await client?.shutdown()
            if let redis {
                if sharedRedis, let keys = try? await redis.scanAll(match: "\(prefix):*"), !keys.isEmpty { _ = try? await redis.execute(.del(keys)) }
                await redis.close()
            }
            await db?.close()
            if let admin {
                _ = try? await admin.query("DROP SCHEMA IF EXISTS \(identifier: schema) CASCADE")
                await admin.close()
            }
            if let privateRedis {
                let forks = await privateRedis.forkReport()
                privateRedis.stop()
                report("  \(side.title): " + forks)
            }
            try? FileManager.default.removeItem(at: work)
        }
        do {
            admin = try await PostgresConnection.connect(try servers.postgresConfiguration())
            try await admin?.query("CREATE SCHEMA \(identifier: schema)")
            let databaseURL = servers.databaseURL(searchPath: schema)
            let connection = try await PostgresConnection.connect(try PostgresConfiguration(url: databaseURL))
            db = connection
            // The bench's own setup is not news: only warnings from it.
            var quiet = Logger(label: "voicecore.bench.platform")
            quiet.logLevel = .warning
            _ = try await Migrator(connection: connection, directory: URL(fileURLWithPath: migrations), logger: quiet).up()
            let masterKey = Data((0..<32).map { _ in UInt8.random(in: 0...255) }).base64EncodedString()
            let accountSID = "AC" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()
            let authToken = UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()
            let directory = TenantDirectory(connection: connection, secrets: try SecretBox(base64: masterKey), logger: quiet)
            let tenant = try await directory.provision(NewTenant(name: "Bench platform", plan: .growth, twilioAccountSID: accountSID, twilioAuthToken: authToken,
                                                                 requestsPerSecond: 10_000_000), publisher: nil).tenant.id
            redis = try await RedisClient.connect(try RedisConfiguration(url: redisURL))

            let base = "http://127.0.0.1:\(port)"
            let started = Process()
            started.executableURL = executable
            let common = ["--port", String(port), "--prefix", prefix, "--partitions", String(partitions), "--redis-url", redisURL, "--database-url", databaseURL]
            started.arguments = side == .edge ? ["edge"] + common : ["up"] + common + ["--instance", "benchplatform", "--migrations", migrations]
            var environment = ProcessInfo.processInfo.environment
            environment["VOICECORE_MASTER_KEY"] = masterKey
            environment["VOICECORE_PUBLIC_URL"] = base
            environment["VOICECORE_LOG_LEVEL"] = "warning"
            environment["VOICECORE_ADMIN_KEY"] = nil
            started.environment = environment
            _ = FileManager.default.createFile(atPath: log.path, contents: nil)
            let handle = try FileHandle(forWritingTo: log)
            defer { try? handle.close() }
            started.standardOutput = handle
            started.standardError = handle
            started.standardInput = FileHandle.nullDevice
            try started.run()
            process = started
            var ready = false
            for _ in 0..<600 where !ready && started.isRunning {
                try await Task.sleep(for: .milliseconds(100))
                ready = EdgeBenchmark.accepts(port: port)
            }
            guard ready else { throw BenchmarkFailure("voicecore \(side.rawValue) did not come up on port \(port):\n\(logTail())") }
            guard let redis else { throw BenchmarkFailure("internal: the deployment's Redis connection is missing") }
            let loadClient = WebhookLoadClient(host: "127.0.0.1", port: port, maximumConnections: clientConnections)
            client = loadClient
            let deployment = Deployment(side: side, base: base, pid: started.processIdentifier, prefix: prefix, tenant: tenant, accountSID: accountSID,
                                        authToken: authToken, redis: redis, db: connection, client: loadClient)
            try await warmUp(deployment, log: logTail)
            let result = try await body(deployment)
            await tearDown()
            return result
        } catch {
            await tearDown()
            throw error
        }
    }

    /// A few calls through the side before anything is measured: connections, caches and consumer
    /// groups in place, and proof that every webhook's effect arrives.
    private func warmUp(_ deployment: Deployment, log: () -> String) async throws {
        let statistics = LoadStatistics()
        let entriesBefore = try await deployment.side == .edge ? deployment.entriesAdded() : 0
        let load = CallLoad(tenant: deployment.tenant, accountSID: deployment.accountSID, authToken: deployment.authToken, publicBase: deployment.base,
                            host: "127.0.0.1:\(port)", calls: 8, rate: 8, callSeconds: 1)
        try await load.play(through: deployment.client, statistics: statistics, started: .now) { _ in }
        let totals = statistics.snapshot
        guard totals.errors == 0, totals.accepted > 0 else {
            throw BenchmarkFailure("voicecore \(deployment.side.rawValue) refused the warm-up's webhooks (\(totals.errors) of \(totals.errors + totals.accepted)):\n\(log())")
        }
        let deadline = ContinuousClock.now + .seconds(60)
        while true {
            let missing = try await deployment.missingEffects(of: statistics, entriesBefore: entriesBefore)
            if missing == 0 { return }
            guard ContinuousClock.now < deadline else {
                throw BenchmarkFailure("voicecore \(deployment.side.rawValue): \(missing) of the warm-up's webhooks left no effect within 60 s:\n\(log())")
            }
            try await Task.sleep(for: .milliseconds(200))
        }
    }

    // MARK: Helpers

    /// CPU seconds (user + system) of process `pid`, from /proc/`pid`/stat.
    static func cpuSeconds(_ pid: Int32) -> Double? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let close = stat.lastIndex(of: ")") else { return nil }
        // After the command's closing parenthesis: state is field 3, utime and stime 14 and 15.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    static func residentKilobytes(_ pid: Int32) -> Int? { statusField("VmRSS:", pid) }

    static func peakResidentKilobytes(_ pid: Int32) -> Int? { statusField("VmHWM:", pid) }

    private static func statusField(_ name: String, _ pid: Int32) -> Int? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
        return status.split(separator: "\n").first { $0.hasPrefix(name) }.flatMap { line in
            line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first.flatMap { Int($0) }
        }
    }

    static func format(_ value: Double, digits: Int = 0) -> String {
        value.isFinite ? String(format: "%.\(digits)f", value) : "-"
    }
}
