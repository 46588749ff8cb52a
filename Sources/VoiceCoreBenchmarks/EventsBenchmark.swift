import Foundation
import Synchronization
import VoiceCoreBus
import VoiceCoreEvents
import VoiceCorePostgres
import VoiceCoreProjections
import VoiceCoreRedis
import VoiceCoreSimulation
import VoiceCoreTenants
import VoiceCoreTime

/// The live event feed under many open connections (`voicecore bench events`): `voicecore edge`
/// as its own process, `connections` SSE connections spread over `tenants` tenants, events
/// published at `rate` per second. Prints the edge's resident memory per open connection and how
/// long an event took from its publish (the CloudEvent's `time`, set as it is published) to its
/// receipt on each connection (p50/p99 over every delivery).
public struct EventsBenchmark: Sendable {
    /// The `voicecore` executable that runs the edge under test.
    public var edgeExecutable: URL
    /// Open SSE connections.
    public var connections: Int
    /// Tenants the connections are spread over (each event goes to its tenant's connections).
    public var tenants: Int
    /// Events published per second (over all tenants).
    public var rate: Int
    /// Seconds of publishing.
    public var duration: Int
    /// Port for the edge under test.
    public var port: Int
    /// The migrations directory.
    public var migrations: String

    public init(edgeExecutable: URL, connections: Int = 1000, tenants: Int = 10, rate: Int = 100, duration: Int = 10, port: Int = 18_098,
                migrations: String = "database/migrations") {
        self.edgeExecutable = edgeExecutable
        self.connections = max(1, connections)
        self.tenants = max(1, min(tenants, connections))
        self.rate = max(1, rate)
        self.duration = max(1, duration)
        self.port = port
        self.migrations = migrations
    }

    public func run(on servers: BenchmarkServers) async throws {
        let suffix = UUID().uuidString.prefix(8).lowercased()
        let schema = "bench_events_\(suffix)"
        let prefix = "bench-events-\(suffix)"
        let admin = try await PostgresConnection.connect(try servers.postgresConfiguration())
        try await admin.query("CREATE SCHEMA \(identifier: schema)")
        let redis = try await RedisClient.connect(try servers.redisConfiguration())
        do {
            try await bench(databaseURL: servers.databaseURL(searchPath: schema), prefix: prefix, redis: redis, servers: servers)
        } catch {
            try? await cleanup(admin: admin, schema: schema, prefix: prefix, redis: redis)
            throw error
        }
        try await cleanup(admin: admin, schema: schema, prefix: prefix, redis: redis)
    }

    private func bench(databaseURL: String, prefix: String, redis: RedisClient, servers: BenchmarkServers) async throws {
        let report = servers.report
        let db = try await PostgresConnection.connect(try PostgresConfiguration(url: databaseURL))
        _ = try await Migrator(connection: db, directory: URL(fileURLWithPath: migrations)).up()
        let masterKey = Data((0..<32).map { _ in UInt8.random(in: 0...255) }).base64EncodedString()
        let directory = TenantDirectory(connection: db, secrets: try SecretBox(base64: masterKey))
        var keys: [(tenant: Identifier, key: String)] = []
        for index in 0..<tenants {
            let provisioned = try await directory.provision(NewTenant(name: "Bench \(index)", twilioAuthToken: UUID().uuidString, requestsPerSecond: 100_000),
                                                            publisher: nil)
            keys.append((provisioned.tenant.id, provisioned.apiKey.plaintext))
        }
        let naming = StreamNaming(partitions: 16, prefix: prefix)

        let edge = Process()
        edge.executableURL = edgeExecutable
        edge.arguments = ["edge", "--port", String(port), "--prefix", prefix, "--redis-url", servers.redisURL, "--database-url", databaseURL,
                          "--events-per-tenant", String(connections)]
        var environment = ProcessInfo.processInfo.environment
        environment["VOICECORE_MASTER_KEY"] = masterKey
        environment["VOICECORE_LOG_LEVEL"] = "warning"
        environment["VOICECORE_ADMIN_KEY"] = nil
        edge.environment = environment
        try edge.run()
        let pid = edge.processIdentifier
        defer { kill(pid, SIGKILL) }

        // Up when a feed connection is accepted (the feed follows the streams).
        var probe: EventStreamClient?
        for _ in 0..<150 where probe == nil {
            try await Task.sleep(for: .milliseconds(100))
            if let client = try? await EventStreamClient.connect(port: port, path: "/v1/events", headers: [("Authorization", "Bearer \(keys[0].key)")]) {
                if client.status == 200 { probe = client } else { await client.close() }
            }
        }
        guard let probe else { throw BenchmarkFailure("the edge's event feed did not come up on port \(port)") }
        await probe.close()
        try await Task.sleep(for: .milliseconds(500))
        let before = Self.residentKilobytes(pid) ?? 0

        let latencies = Mutex<[Double]>([])
        latencies.withLock { $0.reserveCapacity(rate * duration * connections / tenants + 1024) }
        let record: @Sendable (EventStreamClient.Item) -> Void = { item in
            guard case .event(_, _, let data) = item, let sent = Self.eventTime(data) else { return }
            let now = Timestamp.now
            let milliseconds = Double(now.microsecondsSinceEpoch - sent.microsecondsSinceEpoch) / 1000
            latencies.withLock { $0.append(milliseconds) }
        }
        var clients: [EventStreamClient] = []
        clients.reserveCapacity(connections)
        let opening = ContinuousClock.now
        while clients.count < connections {
            let batch = min(100, connections - clients.count)
            let first = clients.count
            let opened = try await withThrowingTaskGroup(of: EventStreamClient.self) { group in
                for index in first..<(first + batch) {
                    let key = keys[index % tenants].key
                    group.addTask {
                        try await EventStreamClient.connect(port: port, path: "/v1/events", headers: [("Authorization", "Bearer \(key)")], onItem: record)
                    }
                }
                return try await group.reduce(into: [EventStreamClient]()) { $0.append($1) }
            }
            for client in opened where client.status != 200 {
                throw BenchmarkFailure("a feed connection was answered \(client.status): \(client.body)")
            }
            clients += opened
        }
        let openedIn = ContinuousClock.now - opening
        try await Task.sleep(for: .seconds(2))
        let idle = Self.residentKilobytes(pid) ?? 0
        report("edge: pid \(pid), \(connections) SSE connections over \(tenants) tenants opened in \(openedIn.components.seconds * 1000 + openedIn.components.attoseconds / 1_000_000_000_000_000) ms; "
               + "publishing \(rate) events/s for \(duration) s (\(naming.partitions) partitions)")

        // Publish at the rate, round robin over the tenants, each event a new call (all partitions).
        let publisher = Publisher(connection: BusConnection(redis), configuration: PublisherConfiguration(source: "/bench/events", naming: naming))
        let total = rate * duration
        let interval = Duration.seconds(1) / rate
        let start = ContinuousClock.now
        for index in 0..<total {
            try await Task.sleep(until: start + interval * index)
            let call = Identifier.v7()
            try await publisher.publish(CallStarted(callID: call, provider: .twilio, providerCallID: "CA\(call)", direction: .inbound,
                                                    from: "+14155550100", to: "+14155550199", startedAt: .now),
                                        tenant: keys[index % tenants].tenant)
        }
        let expected = (0..<total).reduce(0) { sum, index in sum + (connections / tenants + (index % tenants < connections % tenants ? 1 : 0)) }
        let deadline = ContinuousClock.now + .seconds(10)
        while latencies.withLock({ $0.count }) < expected, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(50))
        }
        let busy = Self.residentKilobytes(pid) ?? 0
        let peak = Self.peakKilobytes(pid) ?? 0
        for client in clients { await client.close() }

        let sorted = latencies.withLock { $0 }.sorted()
        func percentile(_ p: Double) -> String {
            guard !sorted.isEmpty else { return "-" }
            let value = sorted[min(sorted.count - 1, Int((Double(sorted.count) * p).rounded(.up)) - 1)]
            return String(format: "%.1f ms", value)
        }
        report("deliveries: \(sorted.count) of \(expected) expected (\(total) events × their tenant's connections)")
        report("publish → receipt latency: p50 \(percentile(0.50))  p90 \(percentile(0.90))  p99 \(percentile(0.99))  max \(sorted.last.map { String(format: "%.1f ms", $0) } ?? "-")  (target p99 ≤ 100 ms)")
        let perConnection = Double(idle - before) / Double(connections)
        report(String(format: "edge RSS: %.1f MB before the connections, %.1f MB with %d open (%.1f KB each, %.1f MB in all; target ≤ 50 MB), %.1f MB after delivering, peak %.1f MB",
                      Double(before) / 1024, Double(idle) / 1024, connections, perConnection, Double(idle - before) / 1024,
                      Double(busy) / 1024, Double(peak) / 1024))
    }

    /// The CloudEvent's `time` in a frame's data, found without parsing the whole JSON.
    static func eventTime(_ data: String) -> Timestamp? {
        guard let range = data.range(of: "\"time\":\"") else { return nil }
        let rest = data[range.upperBound...]
        guard let end = rest.firstIndex(of: "\"") else { return nil }
        return Timestamp(rfc3339: String(rest[..<end]))
    }

    static func residentKilobytes(_ pid: Int32) -> Int? { statusValue(pid, "VmRSS:") }

    static func peakKilobytes(_ pid: Int32) -> Int? { statusValue(pid, "VmHWM:") }

    private static func statusValue(_ pid: Int32, _ field: String) -> Int? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
        return status.split(separator: "\n").first { $0.hasPrefix(field) }.flatMap { line in
            line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first.flatMap { Int($0) }
        }
    }

    private func cleanup(admin: PostgresConnection, schema: String, prefix: String, redis: RedisClient) async throws {
        try await admin.query("DROP SCHEMA \(identifier: schema) CASCADE")
        let keys = try await redis.scanAll(match: "\(prefix):*")
        if !keys.isEmpty { _ = try await redis.execute(.del(keys)) }
    }
}
