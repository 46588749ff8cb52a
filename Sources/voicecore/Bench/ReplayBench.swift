import ArgumentParser
import VoiceCoreBenchmarks

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
    @OptionGroup var redis: BenchRedisOptions

    @Option(help: "Archived events.")
    var events = 1_000_000

    @Option(help: "Events per batch.")
    var batchSize = 5_000

    @Option(help: "The migrations directory.")
    var migrations = "database/migrations"

    func run() async throws {
        try await connections.runBenchmark(redis) { servers in
            try await ReplayBenchmark(events: events, batchSize: batchSize, migrations: migrations).run(on: servers)
        }
    }
}
