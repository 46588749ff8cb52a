import ArgumentParser
import VoiceCoreBenchmarks

struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure throughput against the local servers, beside the servers' own tools.",
        discussion: "Benchmarks write to keys and tables of their own (prefix `bench`) and remove them after.",
        subcommands: [RedisBench.self, PostgresBench.self, CodecBench.self, PublishBench.self, ConsumeBench.self, LatencyBench.self, ProjectBench.self, EdgeBench.self, ReplayBench.self, ApiBench.self, EventsBench.self, TurnBench.self]
    )
}

extension ConnectionOptions {
    /// The servers `bench` measures against (each configuration made when the benchmark first
    /// needs it); the report goes to stdout a line at a time.
    func benchmarkServers() -> BenchmarkServers {
        let options = self
        return BenchmarkServers(redisURL: resolvedRedisURL, databaseURL: resolvedDatabaseURL,
                                redis: { try options.redisConfiguration() }, postgres: { try options.postgresConfiguration() }, report: { say($0) })
    }
}
