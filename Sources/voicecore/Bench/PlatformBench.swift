import ArgumentParser
import Foundation
import VoiceCoreBenchmarks

struct PlatformBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "platform",
        abstract: "The whole platform's sustainable webhook rate (`voicecore up`) beside the edge's alone (`voicecore edge`), alternating, with the ratio.",
        discussion: """
            Plays loadgen's workload (signed Twilio calls: the incoming-call webhook, in-progress, \
            one final caller transcript segment a second for --call-seconds, completed; each \
            request signed as it is sent, over loadgen's load client) against `voicecore edge` \
            alone and against `voicecore up`, each as its own process started from this \
            executable, alternating A/B/A/B for --rounds rounds (edge first in odd rounds). Every \
            side of every round runs on a fresh Redis of its own (a redis-server on a free port \
            in a scratch directory, AOF on with appendfsync everysec, no automatic rewrite, no \
            RDB saves; --shared-redis: REDIS_URL with a prefix of its own) and a scratch Postgres \
            schema with one tenant, all removed afterwards. A few warm-up calls go through first, \
            and all their effects must arrive.

            For each side it searches the sustainable rate: the highest offered webhook rate at \
            which a step passes. A step starts calls evenly for --step-seconds and lets them \
            finish; it passes when every webhook was answered 2xx, the load kept its schedule (a \
            load client that falls behind means the machine is saturated), HTTP p99 ≤ \
            --p99-ms and lost is 0: every accepted webhook's effect is present within \
            --drain-seconds after the step (for the edge alone, an entry added to its streams; \
            for `up`, every segment's row in transcripts and every completed call ended in \
            call_sessions, as loadgen checks). The search doubles from --start-rate (later \
            rounds: from the side's previous result) until a step fails, then bisects \
            --bisect-steps times. After a failed step, `up` works off its backlog before the next.

            Prints every step, per round each side's sustainable rate, their ratio and where the \
            CPU went per webhook at that rate (the machine, this process as the load client, \
            Redis, every postgres process, the rest: the process under test), with the machine's \
            busy/idle/stolen share; then the medians. Finally, on a fresh `voicecore up` at half \
            its median sustainable rate for --half-rate-seconds: each segment's end-to-end \
            latency (the edge's 2xx → its transcripts row's commit time; needs \
            track_commit_timestamp=on, as tools/dev-env sets), up's peak RSS, and the CPU per \
            webhook. Issue 32's targets: ratio ≥ 0.5×, lost 0, end-to-end p99 ≤ 50 ms at half \
            that rate, up's RSS < 150 MB. The defaults take about 10 minutes. Use a release build \
            for figures.
            """
    )

    @OptionGroup var connections: ConnectionOptions
    @OptionGroup var redis: BenchRedisOptions

    @Option(help: "A/B rounds (edge alone, voicecore up; the order flips every round).")
    var rounds = 3

    @Option(name: .customLong("start-rate"), help: "The first offered rate of the first round's searches, webhooks per second.")
    var startRate = 1000

    @Option(name: .customLong("step-seconds"), help: "Seconds each step starts calls for (the calls then finish).")
    var stepSeconds = 10

    @Option(name: .customLong("call-seconds"), help: "Transcript segments per call, one a second.")
    var callSeconds = 4

    @Option(name: .customLong("bisect-steps"), help: "Bisections between the highest passing and the lowest failing rate.")
    var bisectSteps = 2

    @Option(name: .customLong("max-rate"), help: "The search never offers more webhooks per second than this.")
    var maxRate = 64_000

    @Option(name: .customLong("p99-ms"), help: "A step passes only with HTTP p99 at most this many milliseconds.")
    var p99Milliseconds = 50.0

    @Option(name: .customLong("drain-seconds"), help: "Seconds after a step's last webhook within which every effect must be present.")
    var drainSeconds = 5

    @Option(name: .customLong("half-rate-seconds"), help: "Seconds of the final run at half the platform's sustainable rate.")
    var halfRateSeconds = 15

    @Option(help: "Port for the edge under test.")
    var port = 18_095

    @Option(help: "Partitions per category (both sides).")
    var partitions = 16

    @Option(name: .customLong("client-connections"), help: "HTTP connections of the load client.")
    var clientConnections = 64

    @Option(help: "The migrations directory.")
    var migrations = "database/migrations"

    func validate() throws {
        guard (1...99).contains(rounds) else { throw ValidationError("--rounds must be between 1 and 99") }
        guard (1...3600).contains(stepSeconds) else { throw ValidationError("--step-seconds must be between 1 and 3600") }
        guard (1...3600).contains(halfRateSeconds) else { throw ValidationError("--half-rate-seconds must be between 1 and 3600") }
        guard (1...600).contains(callSeconds) else { throw ValidationError("--call-seconds must be between 1 and 600") }
        guard (0...20).contains(bisectSteps) else { throw ValidationError("--bisect-steps must be between 0 and 20") }
        guard maxRate >= 1, (1...maxRate).contains(startRate) else { throw ValidationError("--start-rate must be between 1 and --max-rate (\(maxRate))") }
        guard p99Milliseconds > 0, p99Milliseconds.isFinite else { throw ValidationError("--p99-ms must be a positive number of milliseconds") }
        guard (0...600).contains(drainSeconds) else { throw ValidationError("--drain-seconds must be between 0 and 600") }
        guard (1...65_535).contains(port) else { throw ValidationError("--port must be between 1 and 65535") }
        guard (1...1024).contains(partitions) else { throw ValidationError("--partitions must be between 1 and 1024") }
        guard (1...10_000).contains(clientConnections) else { throw ValidationError("--client-connections must be between 1 and 10000") }
    }

    func run() async throws {
        // The processes under test are this same executable.
        let executable = URL(fileURLWithPath: CommandLine.arguments[0]).standardizedFileURL
        try await PlatformBenchmark(executable: executable, rounds: rounds, startRate: startRate, stepSeconds: stepSeconds, callSeconds: callSeconds,
                                    bisectSteps: bisectSteps, maximumRate: maxRate, p99LimitMilliseconds: p99Milliseconds, drainSeconds: drainSeconds,
                                    halfRateSeconds: halfRateSeconds, port: port, partitions: partitions, clientConnections: clientConnections,
                                    migrations: migrations, sharedRedis: redis.sharedRedis).run(on: connections.benchmarkServers())
    }
}
