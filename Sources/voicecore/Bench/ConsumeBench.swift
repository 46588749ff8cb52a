import ArgumentParser
import VoiceCoreBenchmarks

struct ConsumeBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "consume",
        abstract: "Events per second through a ConsumerGroupRunner with a no-op typed handler.",
        discussion: """
            Prefills --count TranscriptChunk events over 16 partitions (batch publish), then one \
            ConsumerGroupRunner reads them with XREADGROUP COUNT --batch-size, decodes each into its \
            type, calls a no-op handler and acknowledges them with batched XACK; the rate is taken from \
            the first read to the last acknowledgement. Streams are deleted afterwards.
            """
    )

    @OptionGroup var connections: ConnectionOptions
    @OptionGroup var redis: BenchRedisOptions

    @Option(help: "Events in the backlog.")
    var count = 300_000

    @Option(help: "Entries read per stream per XREADGROUP.")
    var batchSize = 1000

    func run() async throws {
        try await connections.runBenchmark(redis) { servers in
            try await ConsumeBenchmark(count: count, batchSize: batchSize).run(on: servers)
        }
    }
}
