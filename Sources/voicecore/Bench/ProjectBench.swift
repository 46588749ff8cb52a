import ArgumentParser
import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import VoiceCoreBus
import VoiceCoreEvents
import VoiceCorePostgres
import VoiceCoreProjections
import VoiceCoreRedis
import VoiceCoreTime

struct ProjectBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "project",
        abstract: "Events per second through every projection into Postgres, beside plain COPY.",
        discussion: """
            Publishes --events events of a mixed call workload (call events, transcript chunks, \
            intents, summaries, leads, usage, with realistic duplicates) into streams of its own, then \
            runs all projections (exactly-once checkpoints, as `voicecore project` does) from a \
            backlog and times until every projection has applied every entry: events/s is events \
            ÷ that time. Tables live in a scratch schema. As the reference, the same number of \
            archive rows is loaded into a plain table with COPY. Everything is removed afterwards.
            """
    )

    @OptionGroup var connections: ConnectionOptions

    @Option(help: "Events to publish and project.")
    var events = 200_000

    @Option(help: "Partitions per category.")
    var partitions = 16

    @Option(help: "Workers (each with its own connections; partitions are shared out among all workers of all instances).")
    var workers = 2

    @Option(help: "Entries read per stream per batch.")
    var batchSize = 250

    @Option(name: .customLong("only"), parsing: .upToNextOption, help: "Run only these projections (default: all).")
    var only: [String] = []

    @Option(help: "The migrations directory.")
    var migrations = "database/migrations"

    func run() async throws {
        let suffix = UUID().uuidString.prefix(8).lowercased()
        let schema = "bench_projection_\(suffix)"
        let naming = StreamNaming(partitions: partitions, prefix: "bench-proj-\(suffix)")
        let separator = connections.resolvedDatabaseURL.contains("?") ? "&" : "?"
        let databaseURL = connections.resolvedDatabaseURL + separator + "options=-c%20search_path%3D\(schema)"
        let admin = try await PostgresConnection.connect(try connections.postgresConfiguration())
        try await admin.query("CREATE SCHEMA \(identifier: schema)")
        let redis = try await RedisClient.connect(try connections.redisConfiguration())
        do {
            try await bench(schema: schema, naming: naming, databaseURL: databaseURL, redis: redis)
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

    private func bench(schema: String, naming: StreamNaming, databaseURL: String, redis: RedisClient) async throws {
        let db = try await PostgresConnection.connect(try PostgresConfiguration(url: databaseURL))
        _ = try await Migrator(connection: db, directory: URL(fileURLWithPath: migrations)).up()

        var workload = CallWorkload(seed: 42, tenants: 20)
        var items = workload.provisioning()
        while items.count < events { items += workload.nextCall() }
        let publisherConfiguration = PublisherConfiguration(source: "/bench", naming: naming)
        let publisher = Publisher(connection: redis, configuration: publisherConfiguration)
        let publishSeconds = try await measure {
            var start = 0
            while start < items.count {
                let chunk = items[start..<min(start + 10_000, items.count)]
                for result in await publisher.publish(batch: chunk.map { ($0.envelope, $0.category, MessageKind.event) }) { _ = try result.get() }
                start += chunk.count
            }
        }
        var perCategory: [StreamCategory: Int] = [:]
        for item in items { perCategory[item.category, default: 0] += 1 }
        let kinds = Dictionary(grouping: items, by: { $0.envelope.type }).mapValues(\.count).sorted { $0.value > $1.value }
        print("workload: \(items.count) events (\(kinds.prefix(6).map { "\($0.key.split(separator: ".").suffix(2).joined(separator: ".")) \($0.value)" }.joined(separator: ", ")), …), published in \(String(format: "%.1f", publishSeconds)) s")

        let projections = try StandardProjections.named(only)
        var configuration = ProjectorConfiguration(naming: naming, instance: "bench", workers: workers, batchSize: batchSize)
        configuration.block = .milliseconds(50)
        let runner = ProjectorRunner(projections: projections, redis: try connections.redisConfiguration(), postgres: try PostgresConfiguration(url: databaseURL),
                                     configuration: configuration, logger: Logger(label: "voicecore.bench"))
        let group = ServiceGroup(services: [runner], logger: Logger(label: "voicecore.bench"))
        let expected = Dictionary(uniqueKeysWithValues: projections.map { projection in
            (projection.name, projection.categories.reduce(0) { $0 + (perCategory[$1] ?? 0) })
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
        print("projected \(items.count) events through \(projections.count) projections in \(String(format: "%.2f", seconds)) s: \(formatRate(Double(items.count) / seconds)) events/s (peak RSS \(rss.peakMegabytes) MB)")
        for projection in projections {
            let s = statistics[projection.name] ?? .init()
            print("  \(projection.name.padding(toLength: 12, withPad: " ", startingAt: 0)) applied \(s.applied), passed over \(s.passedOver), failed \(s.failed), batches \(s.batches)")
        }
        if let share { print("  " + share) }
        if let forkWarning { print("  " + forkWarning) }
        if let busy, let redisBefore = before.redis, let redisAfter = after.redis {
            let redisUsed = redisAfter - redisBefore
            // Where the machine's busy time went, per event: the projector is this process; Redis
            // reports its own; the rest is Postgres, mostly (and whatever else ran meanwhile).
            func micros(_ seconds: Double) -> String { String(format: "%.1f", seconds * 1e6 / Double(items.count)) }
            print("  CPU per event: projector \(micros(projectorCPU)) µs, Redis \(micros(redisUsed)) µs, the rest of the machine (Postgres, mostly) \(micros(max(0, busy - projectorCPU - redisUsed))) µs")
        }
        let failed = statistics.values.reduce(0) { $0 + $1.failed }
        if failed > 0 { throw CommandFailure("\(failed) entries failed to project: see projection_failures") }

        // The reference: the same number of archive-shaped rows through plain COPY, in text (as
        // earlier figures were taken) and in binary (as the archive projection copies).
        try await db.query("CREATE TABLE bench_copy (event_id uuid, stream text, entry_id text, type text, version int, tenant_id uuid, subject text, time timestamptz, payload json)")
        try await db.query("CREATE TABLE bench_copy_binary (LIKE bench_copy)")
        let rows = items
        let copySeconds = try await measure {
            try await db.withTransaction { db in
                _ = try db.copyFromStdin("COPY bench_copy FROM STDIN") { writer in
                    for (index, item) in rows.enumerated() {
                        let e = item.envelope
                        try writer.appendRow(e.id.description, "stream", "\(index)-0", e.type, e.version, e.tenantID.description, e.subject, e.time, String(decoding: e.data, as: UTF8.self))
                    }
                }
            }
        }
        let binarySeconds = try await measure {
            try await db.withTransaction { db in
                _ = try db.copyBinaryFromStdin("COPY bench_copy_binary FROM STDIN (FORMAT binary)") { writer in
                    for (index, item) in rows.enumerated() {
                        let e = item.envelope
                        try writer.appendRow(e.id, "stream", "\(index)-0", e.type, Int32(clamping: e.version), e.tenantID, e.subject, e.time, PostgresJSONText(rawJSON: e.data))
                    }
                }
            }
        }
        print("plain COPY of \(rows.count) archive rows (no indexes): \(formatRate(Double(rows.count) / copySeconds)) rows/s in text, \(formatRate(Double(rows.count) / binarySeconds)) rows/s in binary")
    }
}

/// Samples this process's resident set size from /proc/self/statm.
final class RSSSampler: Sendable {
    private let peakPages = Mutex(0)

    func sample() {
        guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return }
        let fields = text.split(separator: " ")
        if fields.count > 1, let pages = Int(fields[1]) { peakPages.withLock { $0 = max($0, pages) } }
    }

    var peakMegabytes: Int { peakPages.withLock { $0 } * Int(sysconf(Int32(_SC_PAGESIZE))) / 1_048_576 }
}
