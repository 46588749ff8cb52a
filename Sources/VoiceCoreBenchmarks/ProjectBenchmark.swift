import Foundation
import Logging
import ServiceLifecycle
import VoiceCoreBus
import VoiceCoreEvents
import VoiceCorePostgres
import VoiceCoreProjections
import VoiceCoreRedis
import VoiceCoreSimulation
import VoiceCoreTime

/// Events per second through every projection into Postgres from a backlog of the mixed call
/// workload, beside plain COPY of as many archive rows (`voicecore bench project`).
public struct ProjectBenchmark: Sendable {
    /// Events to publish and project.
    public var events: Int
    /// Partitions per category.
    public var partitions: Int
    /// Projector workers.
    public var workers: Int
    /// Entries read per stream per batch.
    public var batchSize: Int
    /// Projections to run, by name (empty: all).
    public var only: [String]
    /// The migrations directory.
    public var migrations: String

    public init(events: Int = 200_000, partitions: Int = 16, workers: Int = 2, batchSize: Int = 250, only: [String] = [], migrations: String = "database/migrations") {
        self.events = events
        self.partitions = partitions
        self.workers = workers
        self.batchSize = batchSize
        self.only = only
        self.migrations = migrations
    }

    public func run(on servers: BenchmarkServers) async throws {
        let suffix = UUID().uuidString.prefix(8).lowercased()
        let schema = "bench_projection_\(suffix)"
        let naming = StreamNaming(partitions: partitions, prefix: "bench-proj-\(suffix)")
        let databaseURL = servers.databaseURL(searchPath: schema)
        let admin = try await PostgresConnection.connect(try servers.postgresConfiguration())
        try await admin.query("CREATE SCHEMA \(identifier: schema)")
        let redis = try await RedisClient.connect(try servers.redisConfiguration())
        do {
            try await bench(schema: schema, naming: naming, databaseURL: databaseURL, redis: redis, servers: servers)
        } catch {
            try? await cleanup(admin: admin, schema: schema, naming: naming, redis: redis)
            throw error
        }
        try await cleanup(admin: admin, schema: schema, naming: naming, redis: redis)
    }

    private func cleanup(admin: PostgresConnection, schema: String, naming: StreamNaming, redis: RedisClient) async throws {
        try await admin.query("DROP SCHEMA \(identifier: schema) CASCADE")
        var keys: [String] = []
        for category in StreamCategory.allCases { keys += naming.streams(category, kind: .event) }
        _ = try await redis.execute(.del(keys))
    }

    /// The mixed call workload (seed 42, 20 tenants) in chunks of about 10,000 items, generated as
    /// iterated: at least `events` items in all, whole calls.
    static func workload(events: Int) -> some Sequence<[CallWorkload.Item]> {
        AnySequence {
            var workload = CallWorkload(seed: 42, tenants: 20)
            var produced = 0
            var first = true
            return AnyIterator { () -> [CallWorkload.Item]? in
                guard produced < events else { return nil }
                var chunk: [CallWorkload.Item] = []
                if first {
                    first = false
                    chunk = workload.provisioning()
                }
                while chunk.count < 10_000 && produced + chunk.count < events { chunk += workload.nextCall() }
                produced += chunk.count
                return chunk
            }
        }
    }

    private func bench(schema: String, naming: StreamNaming, databaseURL: String, redis: RedisClient, servers: BenchmarkServers) async throws {
        let report = servers.report
        let db = try await PostgresConnection.connect(try PostgresConfiguration(url: databaseURL))
        _ = try await Migrator(connection: db, directory: URL(fileURLWithPath: migrations)).up()

        // The workload is generated and published in chunks, never held whole: what the bench
        // holds is its counts, so the peak RSS below is the projector's (1,000,000 events of
        // items would be over a gigabyte). The COPY reference regenerates it the same way.
        let publisherConfiguration = PublisherConfiguration(source: "/bench", naming: naming)
        let publisher = Publisher(connection: redis, configuration: publisherConfiguration)
        var perCategory: [StreamCategory: Int] = [:]
        var perType: [String: Int] = [:]
        var published = 0
        let publishSeconds = try await measure {
            for chunk in Self.workload(events: events) {
                for item in chunk {
                    perCategory[item.category, default: 0] += 1
                    perType[item.envelope.type, default: 0] += 1
                }
                for result in await publisher.publish(batch: chunk.map { ($0.envelope, $0.category, MessageKind.event) }) { _ = try result.get() }
                published += chunk.count
            }
        }
        let kinds = perType.sorted { $0.value > $1.value }
        report("workload: \(published) events (\(kinds.prefix(6).map { "\($0.key.split(separator: ".").suffix(2).joined(separator: ".")) \($0.value)" }.joined(separator: ", ")), …), published in \(String(format: "%.1f", publishSeconds)) s")

        let projections = try StandardProjections.named(only)
        var configuration = ProjectorConfiguration(naming: naming, instance: "bench", workers: workers, batchSize: batchSize)
        configuration.block = .milliseconds(50)
        let runner = ProjectorRunner(projections: projections, redis: try servers.redisConfiguration(), postgres: try PostgresConfiguration(url: databaseURL),
                                     configuration: configuration, logger: Logger(label: "voicecore.bench"))
        let group = ServiceGroup(services: [runner], logger: Logger(label: "voicecore.bench"))
        let expected = Dictionary(uniqueKeysWithValues: projections.map { projection in
            // The workload is events: a projection of commands (the audit trail) has none to wait for.
            (projection.name, projection.kind == .event ? projection.categories.reduce(0) { $0 + (perCategory[$1] ?? 0) } : 0)
        })
        let rss = RSSSampler()
        let before = CPUAccount.now(redisInfo: try? await redis.execute(.info()))
        let seconds = try await measure {
            let task = Task { try await group.run() }
            while true {
                let statistics = runner.statistics
                let done = projections.allSatisfy { projection in
                    let s = statistics[projection.name] ?? .init()
                    return s.applied + s.passedOver + s.failed + s.skipped >= expected[projection.name] ?? 0
                }
                if done { break }
                rss.sample()
                try await Task.sleep(for: .milliseconds(20))
            }
            await group.triggerGracefulShutdown()
            try await task.value
        }
        let share = MachineCPU.share(since: before.machine)
        let busy = MachineCPU.busySeconds(since: before.machine)
        let after = CPUAccount.now(redisInfo: try? await redis.execute(.info()))
        let projectorCPU = after.process - before.process
        let forkWarning = MachineCPU.forkWarning(before: before.redisForks, after: after.redisForks)
        let statistics = runner.statistics
        report("projected \(published) events through \(projections.count) projections in \(String(format: "%.2f", seconds)) s: \(formatRate(Double(published) / seconds)) events/s (peak RSS \(rss.peakMegabytes) MB)")
        for projection in projections {
            let s = statistics[projection.name] ?? .init()
            report("  \(projection.name.padding(toLength: 12, withPad: " ", startingAt: 0)) applied \(s.applied), passed over \(s.passedOver), failed \(s.failed), batches \(s.batches)")
        }
        if let share { report("  " + share) }
        if let forkWarning { report("  " + forkWarning) }
        if let busy, let redisBefore = before.redis, let redisAfter = after.redis {
            let redisUsed = redisAfter - redisBefore
            // Where the machine's busy time went, per event: the projector is this process; Redis
            // reports its own; the rest is Postgres, mostly (and whatever else ran meanwhile).
            func micros(_ seconds: Double) -> String { String(format: "%.1f", seconds * 1e6 / Double(published)) }
            report("  CPU per event: projector \(micros(projectorCPU)) µs, Redis \(micros(redisUsed)) µs, the rest of the machine (Postgres, mostly) \(micros(max(0, busy - projectorCPU - redisUsed))) µs")
        }
        let failed = statistics.values.reduce(0) { $0 + $1.failed }
        if failed > 0 { throw BenchmarkFailure("\(failed) entries failed to project: see projection_failures") }

        // The reference: the same number of archive-shaped rows through plain COPY, in text (as
        // earlier figures were taken) and in binary (as the archive projection copies).
        try await db.query("CREATE TABLE bench_copy (event_id uuid, stream text, entry_id text, type text, version int, tenant_id uuid, subject text, time timestamptz, payload json)")
        try await db.query("CREATE TABLE bench_copy_binary (LIKE bench_copy)")
        let copySeconds = try await measure {
            try await db.withTransaction { db in
                _ = try db.copyFromStdin("COPY bench_copy FROM STDIN") { writer in
                    var index = 0
                    for chunk in Self.workload(events: events) {
                        for item in chunk {
                            let e = item.envelope
                            try writer.appendRow(e.id.description, "stream", "\(index)-0", e.type, e.version, e.tenantID.description, e.subject, e.time, String(decoding: e.data, as: UTF8.self))
                            index += 1
                        }
                    }
                }
            }
        }
        let binarySeconds = try await measure {
            try await db.withTransaction { db in
                _ = try db.copyBinaryFromStdin("COPY bench_copy_binary FROM STDIN (FORMAT binary)") { writer in
                    var index = 0
                    for chunk in Self.workload(events: events) {
                        for item in chunk {
                            let e = item.envelope
                            try writer.appendRow(e.id, "stream", "\(index)-0", e.type, Int32(clamping: e.version), e.tenantID, e.subject, e.time, PostgresJSONText(rawJSON: e.data))
                            index += 1
                        }
                    }
                }
            }
        }
        report("plain COPY of \(published) archive rows (no indexes), generated as they go: \(formatRate(Double(published) / copySeconds)) rows/s in text, \(formatRate(Double(published) / binarySeconds)) rows/s in binary")
    }
}
