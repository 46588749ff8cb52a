import ArgumentParser
import Foundation
import VoiceCoreBenchmarks

struct EventsBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "events",
        abstract: "The live event feed (GET /v1/events) with many open connections: the edge's memory per connection, publish-to-receipt latency.",
        discussion: """
            Provisions --tenants tenants in a scratch schema, starts `voicecore edge` as its own \
            process (streams of its own on a Redis of the bench's own unless --shared-redis), opens --connections Server-Sent \
            Events connections spread over the tenants, then publishes --rate events per second \
            for --duration seconds (each a new call, so every partition). Prints the edge's \
            resident memory before and with the connections open (and per connection), and the \
            latency from each event's publish (its CloudEvent `time`) to its receipt on every \
            connection of its tenant: p50, p90, p99, max. Targets: 1,000 connections cost the edge \
            ≤ 50 MB; p99 ≤ 100 ms. Everything is removed afterwards.
            """
    )

    @OptionGroup var connections: ConnectionOptions
    @OptionGroup var redis: BenchRedisOptions

    @Option(name: .customLong("connections"), help: "Open SSE connections.")
    var connectionCount = 1000

    @Option(help: "Tenants the connections are spread over.")
    var tenants = 10

    @Option(help: "Events published per second.")
    var rate = 100

    @Option(help: "Seconds of publishing.")
    var duration = 10

    @Option(help: "Port for the edge under test.")
    var port = 18_098

    @Option(help: "The migrations directory.")
    var migrations = "database/migrations"

    func validate() throws {
        guard connectionCount >= 1, tenants >= 1, rate >= 1, duration >= 1 else {
            throw ValidationError("--connections, --tenants, --rate and --duration must be at least 1")
        }
    }

    func run() async throws {
        // The edge under test is this same executable, started as its own process.
        let executable = URL(fileURLWithPath: CommandLine.arguments[0]).standardizedFileURL
        try await connections.runBenchmark(redis) { servers in
            try await EventsBenchmark(edgeExecutable: executable, connections: connectionCount, tenants: tenants, rate: rate, duration: duration,
                                      port: port, migrations: migrations).run(on: servers)
        }
    }
}
