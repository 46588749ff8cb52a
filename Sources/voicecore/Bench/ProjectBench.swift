import ArgumentParser
import VoiceCoreBenchmarks

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
    @OptionGroup var redis: BenchRedisOptions

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
        try await connections.runBenchmark(redis) { servers in
            try await ProjectBenchmark(events: events, partitions: partitions, workers: workers, batchSize: batchSize, only: only, migrations: migrations)
                .run(on: servers)
        }
    }
}
