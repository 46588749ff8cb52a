import ArgumentParser
import Foundation
import VoiceCoreBenchmarks

struct ApiBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "api",
        abstract: "GET /v1/calls and GET /v1/calls/{id} through `voicecore up` (wrk, 64 connections), beside pgbench running the same SQL.",
        discussion: """
            Seeds --calls calls over --tenants tenants (transcripts, analytics, leads with contacts \
            and interactions, usage items) with COPY into a database of its own (default \
            voicecore_bench on the development server, which `tools/dev-env start` creates; never \
            the development data) and keeps them for the next run (--reseed loads them again; a \
            different size or new migrations reload by themselves). Then provisions the tenants \
            there with fresh API keys, starts `voicecore up` on that database as its own process \
            (streams of its own, removed afterwards), checks each route answers 200 (and another \
            tenant's call 404), and measures, --rounds times alternating A/B: wrk at \
            --connections connections for --duration s (a random tenant's newest 50 calls; a \
            random call), and pgbench with as many clients running the same statements in the \
            same round trips (BEGIN, SET TRANSACTION READ ONLY, SET LOCAL ROLE voicecore_tenant, \
            set_config of app.tenant_id and statement_timeout, the route's statement from \
            VoiceCoreQueries.CallQueries, in one pipeline; then COMMIT). Prints per round and \
            the median: requests/s, p50, p99 of each side, their ratio, and the issue's targets \
            (≥ 0.5× pgbench, p99 ≤ 20 ms). With --with-ingest N, loadgen's signed Twilio calls \
            play into the same edge at N webhooks/s throughout (through the services and \
            projectors into the same tables; target p99 ≤ 50 ms at half the machine's saturation \
            rate). With --read-rate N the reads are paced instead of saturating: wrk's \
            connections together offer N requests/s to each route (each pausing between half and \
            one and a half of connections/N s between its requests, drawn anew each time), and \
            pgbench runs at the same rate (-R N, its latency counted from each transaction's \
            scheduled start, and its mean schedule lag printed); each round prints the rate \
            achieved, p50 and p99, the machine's CPU (busy, idle, stolen) while HTTP was measured \
            and, with --with-ingest, the webhooks/s the ingest achieved meanwhile. A saturating \
            run measures its own queue; a paced one the latency a reader sees at that load. Needs \
            wrk (apt-get install -y wrk) and pgbench (apt-get install -y postgresql). Use a \
            release build for figures.
            """
    )

    @OptionGroup var connections: ConnectionOptions
    @OptionGroup var redis: BenchRedisOptions

    @Option(help: "Calls in the seed.")
    var calls = 100_000

    @Option(help: "Tenants in the seed (calls spread evenly).")
    var tenants = 20

    @Option(name: .customLong("connections"), help: "HTTP connections (wrk), and pgbench clients.")
    var connectionsCount = 64

    @Option(help: "Seconds per measured run.")
    var duration = 10

    @Option(help: "A/B rounds (each route over HTTP, then pgbench; the order flips every round).")
    var rounds = 3

    @Option(help: "wrk and pgbench threads.")
    var threads = 2

    @Option(help: "Port for the edge under test.")
    var port = 18_097

    @Option(help: "The migrations directory.")
    var migrations = "database/migrations"

    @Option(name: .customLong("bench-database-url"), help: "The bench database (default: the development server's database voicecore_bench).")
    var benchDatabaseURL: String?

    @Flag(help: "Load the seed again even when the kept one fits.")
    var reseed = false

    @Option(name: .customLong("with-ingest"), help: "Also play loadgen's signed Twilio calls into the edge at this many webhooks per second while measuring.")
    var ingestRate: Int?

    @Option(name: .customLong("read-rate"), help: "Pace the reads: this many requests per second to each route over all connections (wrk with a jittered delay; pgbench -R). Default: as fast as they go.")
    var readRate: Int?

    @Option(name: .customLong("up-argument"), parsing: .unconditionalSingleValue, help: "An extra argument for the `voicecore up` under test (repeat for several).")
    var upArguments: [String] = []

    func validate() throws {
        guard calls > 0, tenants > 0, tenants < 255, connectionsCount > 0, duration > 0, rounds > 0, threads > 0 else {
            throw ValidationError("--calls, --connections, --duration, --rounds and --threads must be positive; --tenants 1…254")
        }
        guard calls >= tenants else { throw ValidationError("--calls must be at least --tenants (every tenant needs a call)") }
        if let ingestRate, ingestRate <= 0 { throw ValidationError("--with-ingest must be a positive number of webhooks per second") }
        if let readRate {
            // Each connection pauses connections/rate seconds between its requests, in whole milliseconds.
            guard readRate > 0, readRate <= connectionsCount * 1000 else {
                throw ValidationError("--read-rate must be a positive number of requests per second, at most 1000 × --connections (\(connectionsCount * 1000))")
            }
        }
    }

    func run() async throws {
        // The platform under test is this same executable, started as its own process.
        let executable = URL(fileURLWithPath: CommandLine.arguments[0]).standardizedFileURL
        try await connections.runBenchmark(redis) { servers in
            try await ApiBenchmark(edgeExecutable: executable, calls: calls, tenants: tenants, connections: connectionsCount, duration: duration, rounds: rounds,
                                   threads: threads, port: port, migrations: migrations, databaseURL: benchDatabaseURL, reseed: reseed, ingestRate: ingestRate,
                                   upArguments: upArguments, readRate: readRate).run(on: servers)
        }
    }
}
