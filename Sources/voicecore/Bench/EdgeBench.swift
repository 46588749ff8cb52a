import ArgumentParser
import Foundation
import VoiceCoreBenchmarks

struct EdgeBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "edge",
        abstract: "Signed Twilio status callbacks per second through `voicecore edge` (wrk, 64 connections), beside a plain route.",
        discussion: """
            Provisions a tenant in a scratch schema, starts `voicecore edge` as its own process \
            (publishing to a Redis of the bench's own unless --shared-redis, streams of its own), pre-signs --requests distinct \
            status callbacks (distinct CallSid/SequenceNumber, so each is verified and published, \
            not deduplicated) and plays them with wrk at --connections connections for --duration \
            seconds. The reference is the same wrk against the edge's plain GET /health route. \
            Prints requests/s, latency percentiles (wrk's), how many commands Redis stored, and the \
            edge's peak RSS. Needs wrk (apt-get install wrk). Everything is removed afterwards.
            """
    )

    @OptionGroup var connections: ConnectionOptions
    @OptionGroup var redis: BenchRedisOptions

    @Option(help: "Distinct signed requests to prepare (wrk cycles through them).")
    var requests = 400_000

    @Option(name: .customLong("connections"), help: "wrk connections.")
    var connectionsCount = 64

    @Option(help: "Seconds per wrk run.")
    var duration = 10

    @Option(help: "wrk threads.")
    var threads = 2

    @Option(help: "Port for the edge under test.")
    var port = 18_099

    @Option(help: "The migrations directory.")
    var migrations = "database/migrations"

    @Flag(name: .customLong("publisher-thread"), help: "Run the edge with --publisher-thread (publishing through the bus publisher's Redis thread), to compare.")
    var publisherThread = false

    func run() async throws {
        // The edge under test is this same executable, started as its own process.
        let executable = URL(fileURLWithPath: CommandLine.arguments[0]).standardizedFileURL
        try await connections.runBenchmark(redis) { servers in
            try await EdgeBenchmark(edgeExecutable: executable, requests: requests, connections: connectionsCount, duration: duration, threads: threads,
                                    port: port, migrations: migrations, publisherThread: publisherThread).run(on: servers)
        }
    }
}
