import ArgumentParser
import VoiceCoreBenchmarks

struct PublishBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "publish",
        abstract: "Events per second through the Publisher (group commit), beside redis-benchmark.",
        discussion: """
            --concurrency tasks publish TranscriptChunk events (the envelope is built and encoded in \
            each publish) through one Publisher on one connection, with default retention, into \
            16 partitions. Then redis-benchmark sends XADDs with the same field list (-P 64, with 1 \
            and with 50 connections) to the same server. Streams are deleted afterwards.
            """
    )

    @OptionGroup var connections: ConnectionOptions
    @OptionGroup var redis: BenchRedisOptions

    @Option(help: "Events to publish.")
    var count = 500_000

    @Option(help: "Concurrent publishing tasks.")
    var concurrency = 256

    @Flag(inversion: .prefixedNo, help: "Also run redis-benchmark with the same fields.")
    var compare = true

    @Option(help: "Replicas that must confirm each pipeline (WAIT N 500) before a publish counts; 0 = off.")
    var waitReplicas = 0

    func run() async throws {
        try await connections.runBenchmark(redis) { servers in
            try await PublishBenchmark(count: count, concurrency: concurrency, compare: compare, waitReplicas: waitReplicas).run(on: servers)
        }
    }
}
