import ArgumentParser
import VoiceCoreBenchmarks

struct RedisBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "redis",
        abstract: "Pipelined XADD of 300-byte entries through VoiceCoreRedis, beside redis-benchmark.",
        discussion: """
            Sends XADD bench:xadd * data <payload> in pipelines of each --depth over one connection, \
            then runs `redis-benchmark -c 1 -P <depth> xadd …` with the same payload on the same \
            server (when redis-benchmark is installed), and prints both rates and their ratio.
            """
    )

    @OptionGroup var connections: ConnectionOptions

    @Option(help: "Entries per run.")
    var count = 1_000_000

    @Option(help: "Payload size in bytes.")
    var payloadBytes = 300

    @Option(parsing: .upToNextOption, help: "Pipeline depths to measure.")
    var depth: [Int] = [64, 256]

    @Option(help: "Rounds per depth; the median is reported.")
    var repeats = 3

    @Flag(inversion: .prefixedNo, help: "Also run redis-benchmark with the same command for comparison.")
    var compare = true

    func run() async throws {
        try await RedisXADDBenchmark(count: count, payloadBytes: payloadBytes, depths: depth, repeats: repeats, compare: compare).run(on: connections.benchmarkServers())
    }
}
