import ArgumentParser
import Foundation
import VoiceCoreEvents
import VoiceCorePostgres
import VoiceCoreProjections
import VoiceCoreRedis
import VoiceCoreTime

struct ReplayBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replay",
        abstract: "Events per second rebuilding every projection from an archive of --events mixed events.",
        discussion: """
            Fills the archive (event_log) of a scratch schema with --events events of the mixed call \
            workload (as the projector would have archived them: stream, entry id, checkpoints), \
            then rebuilds each projection from it with `voicecore replay`'s code (shadow tables, \
            catch-up, swap) and reports events/s per projection and over all, and this process's \
            peak RSS. The scratch schema is dropped afterwards.
            """
    )

    @OptionGroup var connections: ConnectionOptions

    @Option(help: "Archived events.")
    var events = 1_000_000

    @Option(help: "Events per batch.")
    var batchSize = 5_000

    @Option(help: "The migrations directory.")
    var migrations = "database/migrations"

    func run() async throws {
        let schema = "bench_replay_\(UUID().uuidString.prefix(8).lowercased())"
        let separator = connections.resolvedDatabaseURL.contains("?") ? "&" : "?"
        let postgres = try PostgresConfiguration(url: connections.resolvedDatabaseURL + separator + "options=-c%20search_path%3D\(schema)")
        let admin = try await PostgresConnection.connect(try connections.postgresConfiguration())
        try await admin.query("CREATE SCHEMA \(identifier: schema)")
        do {
            try await bench(postgres)
        } catch {
            _ = try? await admin.query("DROP SCHEMA \(identifier: schema) CASCADE")
            throw error
        }
        try await admin.query("DROP SCHEMA \(identifier: schema) CASCADE")
    }

    private func bench(_ postgres: PostgresConfiguration) async throws {
        let db = try await PostgresConnection.connect(postgres)
        _ = try await Migrator(connection: db, directory: URL(fileURLWithPath: migrations)).up()
        try await loadArchive(db)
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
        for projection in StandardProjections.all where projection.name != "archive" {
            let replayer = Replayer(projection: projection, postgres: postgres)
            let report = try await replayer.run(ReplayOptions(mode: .rebuild, batchSize: batchSize)) { _ in rss.sample() }
            rss.sample()
            let seconds = report.duration / .seconds(1)
            say(projection.name.padding(toLength: 12, withPad: " ", startingAt: 0)
                + String(format: " %9d events in %6.1f s: %8.0f events/s", report.eventsRead, seconds, Double(report.eventsRead) / seconds))
            totalEvents += report.eventsRead
            totalTime += report.duration
        }
        let seconds = totalTime / .seconds(1)
        say(String(format: "all          %9d events in %6.1f s: %8.0f events/s (each projection reads only its own types); peak RSS while replaying %d MB (%d MB before)",
                   totalEvents, seconds, Double(totalEvents) / seconds, rss.peakMegabytes, baseline))
        if let share = MachineCPU.share(since: cpu) { say("  " + share) }
        await db.close()
    }

    /// The archive, as the projector leaves it: event_log rows and equal checkpoints.
    private func loadArchive(_ db: PostgresConnection) async throws {
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
        let last = streams.map { StreamEntryID(milliseconds: 1_790_000_000_000 + next[$0]! - 1, sequence: 0).description }
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
        say("archive: \(rows.count) events (\(items.count - rows.count) duplicates left out) loaded with COPY in \(String(format: "%.1f", loadSeconds)) s (\(String(format: "%.0f", Double(rows.count) / loadSeconds)) rows/s)")
    }
}
