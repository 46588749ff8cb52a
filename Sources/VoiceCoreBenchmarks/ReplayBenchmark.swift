import Foundation
import VoiceCoreBus
import VoiceCoreEvents
import VoiceCorePostgres
import VoiceCoreProjections
import VoiceCoreRedis
import VoiceCoreSimulation
import VoiceCoreTime

/// Events per second rebuilding every projection from an archive of the mixed call workload, with
/// `voicecore replay`'s code, and the peak RSS while replaying (`voicecore bench replay`).
public struct ReplayBenchmark: Sendable {
    /// Archived events.
    public var events: Int
    /// Events per batch.
    public var batchSize: Int
    /// The migrations directory.
    public var migrations: String

    public init(events: Int = 1_000_000, batchSize: Int = 5_000, migrations: String = "database/migrations") {
        self.events = events
        self.batchSize = batchSize
        self.migrations = migrations
    }

    public func run(on servers: BenchmarkServers) async throws {
        let schema = "bench_replay_\(UUID().uuidString.prefix(8).lowercased())"
        let postgres = try PostgresConfiguration(url: servers.databaseURL(searchPath: schema))
        let admin = try await PostgresConnection.connect(try servers.postgresConfiguration())
        try await admin.query("CREATE SCHEMA \(identifier: schema)")
        do {
            try await bench(postgres, report: servers.report)
        } catch {
            _ = try? await admin.query("DROP SCHEMA \(identifier: schema) CASCADE")
            throw error
        }
        try await admin.query("DROP SCHEMA \(identifier: schema) CASCADE")
    }

    private func bench(_ postgres: PostgresConfiguration, report: @Sendable (String) -> Void) async throws {
        let db = try await PostgresConnection.connect(postgres)
        _ = try await Migrator(connection: db, directory: URL(fileURLWithPath: migrations)).up()
        try await loadArchive(db, report: report)
        // The generated workload is gone; give its memory back, so the RSS below is the replay's.
        #if os(Linux)
        // `malloc_trim` lives in <malloc.h>, which Swift's Glibc module does not import.
        if let process = dlopen(nil, RTLD_NOW), let symbol = dlsym(process, "malloc_trim") {
            typealias MallocTrim = @convention(c) (Int) -> Int32
            _ = unsafeBitCast(symbol, to: MallocTrim.self)(0)
        }
        #endif

        let rss = RSSSampler()
        rss.sample()
        let baseline = rss.peakMegabytes
        var totalEvents = 0
        var totalTime = Duration.zero
        let cpu = MachineCPU.now()
        for projection in StandardProjections.all where projection.isReplayable {
            let replayer = Replayer(projection: projection, postgres: postgres)
            let replayed = try await replayer.run(ReplayOptions(mode: .rebuild, batchSize: batchSize)) { _ in rss.sample() }
            rss.sample()
            let seconds = replayed.duration / .seconds(1)
            report(projection.name.padding(toLength: 12, withPad: " ", startingAt: 0)
                + String(format: " %9d events in %6.1f s: %8.0f events/s", replayed.eventsRead, seconds, Double(replayed.eventsRead) / seconds)
                + (replayed.retried > 0 ? " (\(replayed.retried) writer transactions run again after a deadlock)" : ""))
            totalEvents += replayed.eventsRead
            totalTime += replayed.duration
        }
        let seconds = totalTime / .seconds(1)
        report(String(format: "all          %9d events in %6.1f s: %8.0f events/s (each projection reads only its own types); peak RSS while replaying %d MB (%d MB before)",
                   totalEvents, seconds, Double(totalEvents) / seconds, rss.peakMegabytes, baseline))
        if let share = MachineCPU.share(since: cpu) { report("  " + share) }
        await db.close()
    }

    /// The archive, as the projector leaves it: event_log rows and equal checkpoints.
    private func loadArchive(_ db: PostgresConnection, report: (String) -> Void) async throws {
        let naming = StreamNaming(partitions: 16, prefix: "bench")
        var workload = CallWorkload(seed: 42, tenants: 20)
        var items = workload.provisioning()
        while items.count < events { items += workload.nextCall() }
        items = Array(items.prefix(events))
        var seen = Set<Identifier>()
        var next: [String: UInt64] = [:]
        var rows: [(Identifier, String, String, String, Int, Identifier, String, Timestamp, PostgresJSON)] = []
        rows.reserveCapacity(items.count)
        for item in items where seen.insert(item.envelope.id).inserted {
            let e = item.envelope
            let stream = naming.stream(for: item.category, kind: .event, tenant: e.tenantID, subject: e.subject)
            let sequence = next[stream, default: 0]
            next[stream] = sequence + 1
            let entry = StreamEntryID(milliseconds: 1_790_000_000_000 + sequence, sequence: 0)
            rows.append((e.id, stream, entry.description, e.type, e.version, e.tenantID, e.subject, e.time, PostgresJSON(rawJSON: e.data)))
        }
        let loadStart = ContinuousClock.now
        let archiveRows = rows
        let streams = next.keys.sorted()
        let last = streams.map { StreamEntryID(milliseconds: 1_790_000_000_000 + next[$0, default: 1] - 1, sequence: 0).description }
        try await db.withTransaction { db in
            _ = try db.copyFromStdin("COPY event_log (event_id, stream, entry_id, type, version, tenant_id, subject, time, payload) FROM STDIN") { writer in
                for row in archiveRows { try writer.appendRow(row.0, row.1, row.2, row.3, row.4, row.5, row.6, row.7, row.8) }
            }
            for projection in StandardProjections.all {
                try db.query("""
                    INSERT INTO projection_checkpoints (projection, stream, last_entry_id)
                    SELECT \(projection.name), * FROM unnest(\(streams)::text[], \(last)::text[])
                    """)
            }
        }
        // The same machine's reference: plain COPY of the archive rows into the indexed event_log.
        let loadSeconds = (ContinuousClock.now - loadStart) / .seconds(1)
        report("archive: \(rows.count) events (\(items.count - rows.count) duplicates left out) loaded with COPY in \(String(format: "%.1f", loadSeconds)) s (\(String(format: "%.0f", Double(rows.count) / loadSeconds)) rows/s)")
    }
}
