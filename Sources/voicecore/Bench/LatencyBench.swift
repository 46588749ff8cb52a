import ArgumentParser
import VoiceCoreBenchmarks

struct LatencyBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "latency",
        abstract: "Publish-to-handler latency (p50, p99, max) at a steady event rate.",
        discussion: """
            Publishes TranscriptChunk events at --rate per second (a batch every millisecond) for \
            --seconds through a Publisher, while a ConsumerGroupRunner in the same process handles them; \
            each handler measures now minus the envelope's `time` (set when the event was built). The \
            first second is warm-up and not counted.
            """
    )

    @Option(help: "Replicas that must confirm each pipeline (WAIT N 500) before a publish counts; 0 = off.")
    var waitReplicas = 0

    @OptionGroup var connections: ConnectionOptions

    @Option(help: "Events per second.")
    var rate = 10_000

    @Option(help: "Seconds of measurement.")
    var seconds = 10

    func run() async throws {
        try await LatencyBenchmark(waitReplicas: waitReplicas, rate: rate, seconds: seconds).run(on: connections.benchmarkServers())
    }
}
