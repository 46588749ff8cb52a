import ArgumentParser
import VoiceCoreBenchmarks

struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure throughput against the local servers, beside the servers' own tools.",
        discussion: "Benchmarks write to keys and tables of their own (prefix `bench`) and remove them after.",
        subcommands: [RedisBench.self, PostgresBench.self, CodecBench.self, PublishBench.self, ConsumeBench.self, LatencyBench.self, ProjectBench.self, EdgeBench.self, ReplayBench.self, ApiBench.self, EventsBench.self, TurnBench.self, PlatformBench.self]
    )
}

/// `--shared-redis`: whether a bench runs against REDIS_URL instead of a Redis of its own.
struct BenchRedisOptions: ParsableArguments {
    @Flag(name: .customLong("shared-redis"),
          help: "Measure against --redis-url / $REDIS_URL (the development server, with whatever it holds and its automatic AOF rewrites) instead of a redis-server of the bench's own (started on a free port in a scratch directory, AOF on with appendfsync everysec, no automatic rewrite, no RDB saves; stopped at the end, saying whether it forked meanwhile).")
    var sharedRedis = false
}

extension ConnectionOptions {
    /// The servers `bench` measures against (each configuration made when the benchmark first
    /// needs it); the report goes to stdout a line at a time.
    func benchmarkServers() -> BenchmarkServers {
        let options = self
        return BenchmarkServers(redisURL: resolvedRedisURL, databaseURL: resolvedDatabaseURL,
                                redis: { try options.redisConfiguration() }, postgres: { try options.postgresConfiguration() }, report: { say($0) })
    }

    /// Runs a benchmark on ``benchmarkServers()`` with a Redis of its own unless `--shared-redis`.
    func runBenchmark(_ redis: BenchRedisOptions, _ body: (BenchmarkServers) async throws -> Void) async throws {
        try await benchmarkServers().withBenchRedis(shared: redis.sharedRedis, body)
    }
}
