import ArgumentParser
import Foundation
import VoiceCoreBenchmarks

struct TurnBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "turn",
        abstract: "A caller turn's latency through the edge and the receptionist (signed <Gather> callbacks), beside the same edge's plain publish latency.",
        discussion: """
            Provisions a tenant in a scratch schema, starts `voicecore edge` and `voicecore consume \
            receptionist` (built-in policy) as processes of their own on streams of their own, and \
            plays pre-signed Twilio callbacks with wrk at each --concurrency (connections: calls in \
            progress, each pausing about --think-ms after an answer before its next callback: from half to one and a half of it, \
            drawn anew each time, or exactly it with --lockstep). Per level it alternates --runs phases of signed status \
            callbacks (verified and published: the plain publish latency) and signed gather \
            callbacks (published as ReportCallerTurn, answered by ReceptionistReplied over the bus, \
            returned as TwiML), and the same gather callbacks answered by the least a responder \
            can do (one Redis connection, a fixed reply; the receptionist paused meanwhile), \
            --duration seconds each, every callback distinct. Prints each run's p50/p99 and \
            replies by kind, the medians, what the bus round trip adds (target: ≤ 5 ms p99 at 50 \
            calls, ≤ 25 ms at 500), and how much of it the minimal responder already costs on \
            this machine. Needs wrk and curl. Build with -c release for \
            figures that mean something. Everything is removed afterwards.
            """
    )

    @OptionGroup var connections: ConnectionOptions
    @OptionGroup var redis: BenchRedisOptions

    @Option(parsing: .upToNextOption, help: "Concurrent calls (wrk connections), one measurement each.")
    var concurrency: [Int] = [50, 500]

    @Option(help: "Alternating status and gather phases per concurrency (medians are reported).")
    var runs = 3

    @Option(help: "Seconds per phase.")
    var duration = 10

    @Option(help: "Distinct signed callbacks prepared per phase (wrk repeats them past that, which the report flags).")
    var requests = 60_000

    @Option(help: "wrk threads.")
    var threads = 2

    @Option(help: "Port for the edge under test.")
    var port = 18_097

    @Option(help: "The migrations directory.")
    var migrations = "database/migrations"

    @Option(name: .customLong("turn-deadline-ms"), help: "The edge's turn deadline (default: the edge's own).")
    var turnDeadlineMs: Int?

    @Option(name: .customLong("think-ms"), help: "How long each call waits after an answer before its next callback (a caller speaks between turns); 0: back to back, which measures the saturated queue.")
    var thinkMs = 500

    @Flag(name: .customLong("lockstep"), help: "Every call pauses exactly --think-ms (all calls send their turns in the same few milliseconds); by default each pause is drawn from half to one and a half of it, as independent callers speak.")
    var lockstep = false

    func validate() throws {
        guard !concurrency.isEmpty, concurrency.allSatisfy({ (1...10_000).contains($0) }) else {
            throw ValidationError("--concurrency takes 1 to 10000 calls per level")
        }
        guard (1...99).contains(runs) else { throw ValidationError("--runs must be between 1 and 99") }
        guard (1...3600).contains(duration) else { throw ValidationError("--duration must be between 1 and 3600 seconds") }
        guard (1...10_000_000).contains(requests) else { throw ValidationError("--requests must be between 1 and 10000000") }
        guard (1...64).contains(threads) else { throw ValidationError("--threads must be between 1 and 64") }
        guard let smallest = concurrency.min(), threads <= smallest else { throw ValidationError("--threads must not exceed the smallest --concurrency") }
        if let turnDeadlineMs, !(1...60_000).contains(turnDeadlineMs) { throw ValidationError("--turn-deadline-ms must be between 1 and 60000") }
        guard (0...60_000).contains(thinkMs) else { throw ValidationError("--think-ms must be between 0 and 60000") }
    }

    func run() async throws {
        // The edge and the receptionist under test are this same executable, started as processes of their own.
        let executable = URL(fileURLWithPath: CommandLine.arguments[0]).standardizedFileURL
        try await connections.runBenchmark(redis) { servers in
            try await TurnBenchmark(executable: executable, concurrency: concurrency, runs: runs, duration: duration, requests: requests, threads: threads,
                                    port: port, migrations: migrations, turnDeadlineMs: turnDeadlineMs,
                                    thinkMs: thinkMs, jitter: !lockstep).run(on: servers)
        }
    }
}
