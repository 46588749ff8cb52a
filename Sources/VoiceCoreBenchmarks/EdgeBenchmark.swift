import Foundation
import VoiceCoreBus
import VoiceCoreEvents
import VoiceCoreExecutors
import VoiceCorePostgres
import VoiceCoreProjections
import VoiceCoreRedis
import VoiceCoreSimulation
import VoiceCoreTenants

/// Signed Twilio status callbacks per second through `voicecore edge` as its own process, played
/// by wrk, beside the same wrk against the edge's plain `GET /health` (`voicecore bench edge`).
public struct EdgeBenchmark: Sendable {
    /// The `voicecore` executable that runs the edge under test.
    public var edgeExecutable: URL
    /// Distinct signed requests to prepare (wrk cycles through them).
    public var requests: Int
    /// wrk connections.
    public var connections: Int
    /// Seconds per wrk run.
    public var duration: Int
    /// wrk threads.
    public var threads: Int
    /// Port for the edge under test.
    public var port: Int
    /// The migrations directory.
    public var migrations: String
    /// Run the edge with `--publisher-thread` (publishing through the bus publisher's Redis thread).
    public var publisherThread: Bool

    public init(edgeExecutable: URL, requests: Int = 400_000, connections: Int = 64, duration: Int = 10, threads: Int = 2, port: Int = 18_099,
                migrations: String = "database/migrations", publisherThread: Bool = false) {
        self.edgeExecutable = edgeExecutable
        self.requests = requests
        self.connections = connections
        self.duration = duration
        self.threads = threads
        self.port = port
        self.migrations = migrations
        self.publisherThread = publisherThread
    }

    public func run(on servers: BenchmarkServers) async throws {
        try Wrk.requireInstalled()
        let suffix = UUID().uuidString.prefix(8).lowercased()
        let schema = "bench_edge_\(suffix)"
        let prefix = "bench-edge-\(suffix)"
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("voicecore-bench-edge-\(suffix)")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        let databaseURL = servers.databaseURL(searchPath: schema)
        let admin = try await PostgresConnection.connect(try servers.postgresConfiguration())
        try await admin.query("CREATE SCHEMA \(identifier: schema)")
        let redis = try await RedisClient.connect(try servers.redisConfiguration())
        defer { try? FileManager.default.removeItem(at: work) }
        do {
            try await bench(schema: schema, prefix: prefix, databaseURL: databaseURL, work: work, redis: redis, servers: servers)
        } catch {
            try? await cleanup(admin: admin, schema: schema, prefix: prefix, redis: redis)
            throw error
        }
        try await cleanup(admin: admin, schema: schema, prefix: prefix, redis: redis)
    }

    private func bench(schema: String, prefix: String, databaseURL: String, work: URL, redis: RedisClient, servers: BenchmarkServers) async throws {
        let report = servers.report
        let db = try await PostgresConnection.connect(try PostgresConfiguration(url: databaseURL))
        _ = try await Migrator(connection: db, directory: URL(fileURLWithPath: migrations)).up()
        let masterKey = Data((0..<32).map { _ in UInt8.random(in: 0...255) }).base64EncodedString()
        let token = UUID().uuidString
        let directory = TenantDirectory(connection: db, secrets: try SecretBox(base64: masterKey))
        let tenant = try await directory.provision(NewTenant(name: "Bench", twilioAuthToken: token), publisher: nil).tenant.id

        // Pre-signed requests: one line each, "path \t signature \t body".
        let base = "http://127.0.0.1:\(port)"
        let path = "/webhooks/twilio/\(tenant)/status"
        var lines = ""
        lines.reserveCapacity(requests * 520)
        let statuses = ["initiated", "ringing", "in-progress", "completed"]
        let signer = TwilioRequestSigner(authToken: token)
        for index in 0..<requests {
            let callSid = String(format: "CA%032x", index / 4)
            let parameters: [(name: String, value: String)] = [
                ("AccountSid", "AC0000000000000000000000000000beef"), ("ApiVersion", "2010-04-01"), ("CallSid", callSid),
                ("CallStatus", statuses[index % 4]), ("Direction", "inbound"), ("From", "+14155550100"), ("To", "+14155550199"),
                ("SequenceNumber", String(index % 4)), ("Timestamp", "Tue, 24 Nov 2026 10:00:00 +0000"), ("CallbackSource", "call-progress-events"),
                ("CallDuration", index % 4 == 3 ? "61" : "0"),
            ]
            let body = TwilioRequestSigner.formBody(parameters)
            let signature = signer.signature(url: base + path, parameters: parameters)
            lines += "\(path)\t\(signature)\t\(body)\n"
        }
        let requestFile = work.appendingPathComponent("requests.tsv")
        try lines.write(to: requestFile, atomically: false, encoding: .utf8)
        let script = work.appendingPathComponent("signed.lua")
        try """
            local counter = 0
            setup = function(thread) thread:set("id", counter); counter = counter + 1 end
            init = function(args)
              requests = {}
              local n, i = 0, 0
              for line in io.lines("\(requestFile.path)") do
                if i % \(threads) == id then
                  local p, s, b = line:match("([^\\t]*)\\t([^\\t]*)\\t(.*)")
                  n = n + 1
                  requests[n] = wrk.format("POST", p, {["Content-Type"] = "application/x-www-form-urlencoded", ["X-Twilio-Signature"] = s}, b)
                end
                i = i + 1
              end
              count, next = n, 1
            end
            request = function()
              local r = requests[next]
              next = next + 1
              if next > count then next = 1 end
              return r
            end
            """.write(to: script, atomically: false, encoding: .utf8)

        // The edge, as its own process.
        let edge = Process()
        edge.executableURL = edgeExecutable
        edge.arguments = ["edge", "--port", String(port), "--prefix", prefix, "--redis-url", servers.redisURL, "--database-url", databaseURL]
            + (publisherThread ? ["--publisher-thread"] : [])
        var environment = ProcessInfo.processInfo.environment
        environment["VOICECORE_MASTER_KEY"] = masterKey
        environment["VOICECORE_PUBLIC_URL"] = base
        environment["VOICECORE_LOG_LEVEL"] = "warning"
        environment["VOICECORE_ADMIN_KEY"] = nil
        edge.environment = environment
        try edge.run()
        let pid = edge.processIdentifier
        defer { kill(pid, SIGKILL) }
        var ready = false
        for _ in 0..<100 where !ready {
            try await Task.sleep(for: .milliseconds(100))
            ready = Self.accepts(port: port)
        }
        guard ready else { throw BenchmarkFailure("the edge did not come up on port \(port)") }

        report("edge: pid \(edge.processIdentifier), \(formatRate(Double(requests))) pre-signed distinct status callbacks, wrk -t\(threads) -c\(connections) -d\(duration)s, "
              + (publisherThread ? "publishing through the publisher's Redis thread" : "publishing from the event loops"))
        let plainCPU = MachineCPU.now()
        let plain = try await wrk(["--latency", "-t\(threads)", "-c\(connections)", "-d\(duration)s", base + "/health"])
        let plainShare = MachineCPU.share(since: plainCPU)
        let forksBefore = try? MachineCPU.redisForks(await redis.execute(.info("stats")))
        let signedCPU = MachineCPU.now()
        let signed = try await wrk(["--latency", "-t\(threads)", "-c\(connections)", "-d\(duration)s", "-s", script.path, base])
        let signedShare = MachineCPU.share(since: signedCPU)
        let forkWarning = MachineCPU.forkWarning(before: forksBefore, after: try? MachineCPU.redisForks(await redis.execute(.info("stats"))))
        let rss = peakRSS(pid)
        var stored = 0
        for partition in 0..<16 {
            stored += Int(try await redis.execute(.xlen(StreamNaming(partitions: 16, prefix: prefix).stream(.calls, kind: .command, partition: partition))))
        }
        func row(_ name: String, _ result: WrkResult) -> String {
            "\(name.padding(toLength: 34, withPad: " ", startingAt: 0)) \(formatRate(result.rate).leftPadded(9)) req/s   p50 \(result.p50)  p90 \(result.p90)  p99 \(result.p99)   non-2xx \(result.non2xx)"
        }
        report(row("GET /health (plain route)", plain))
        if let plainShare { report("  " + plainShare) }
        report(row("POST signed status callback", signed))
        if let signedShare { report("  " + signedShare) }
        if let forkWarning { report("  " + forkWarning) }
        report("commands stored in Redis: \(formatRate(Double(stored))) for \(formatRate(Double(signed.requests))) requests wrk counted as completed (requests past --requests repeat earlier ones and are deduplicated)")
        report("edge peak RSS: \(rss.map { "\($0 / 1024) MB" } ?? "unknown")")
    }

    /// Whether something accepts TCP connections on 127.0.0.1:`port`.
    static func accepts(port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
    }

    struct WrkResult {
        var rate: Double
        var requests: Int
        var p50 = "-", p90 = "-", p99 = "-"
        var non2xx = 0
    }

    private func wrk(_ arguments: [String]) async throws -> WrkResult {
        let output = try await Wrk.run(arguments)
        var result = WrkResult(rate: 0, requests: 0)
        for line in output.split(separator: "\n") {
            let words = line.split(separator: " ", omittingEmptySubsequences: true)
            if line.hasPrefix("Requests/sec:"), let value = words.last.flatMap({ Double($0) }) { result.rate = value }
            if line.contains("requests in"), let value = words.first.flatMap({ Int($0) }) { result.requests = value }
            if line.contains("Non-2xx"), let value = words.last.flatMap({ Int($0) }) { result.non2xx = value }
            if words.count == 2 {
                switch words[0] {
                case "50%": result.p50 = String(words[1])
                case "90%": result.p90 = String(words[1])
                case "99%": result.p99 = String(words[1])
                default: break
                }
            }
        }
        guard result.requests > 0 else { throw BenchmarkFailure("wrk produced no result:\n\(output)") }
        return result
    }

    private func peakRSS(_ pid: Int32) -> Int? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
        return status.split(separator: "\n").first { $0.hasPrefix("VmHWM:") }.flatMap { line in
            line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first.flatMap { Int($0) }
        }
    }

    private func cleanup(admin: PostgresConnection, schema: String, prefix: String, redis: RedisClient) async throws {
        try await admin.query("DROP SCHEMA \(identifier: schema) CASCADE")
        let keys = try await redis.scanAll(match: "\(prefix):*")
        if !keys.isEmpty { _ = try await redis.execute(.del(keys)) }
    }
}
