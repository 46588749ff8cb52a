import ArgumentParser

struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure throughput against the local servers, beside the servers' own tools.",
        discussion: "Benchmarks write to keys and tables of their own (prefix `bench`) and remove them after.",
        subcommands: [RedisBench.self, PostgresBench.self, CodecBench.self, PublishBench.self, ConsumeBench.self, LatencyBench.self, ProjectBench.self, EdgeBench.self, ReplayBench.self]
    )
}

/// Runs `body` and returns the elapsed seconds.
func measure(_ body: () async throws -> Void) async rethrows -> Double {
    let clock = ContinuousClock()
    let start = clock.now
    try await body()
    let elapsed = clock.now - start
    let (seconds, attoseconds) = elapsed.components
    return Double(seconds) + Double(attoseconds) / 1e18
}

func formatRate(_ value: Double) -> String {
    let rounded = Int(value.rounded())
    var digits = Array(String(rounded))
    var index = digits.count - 3
    while index > 0 {
        digits.insert(",", at: index)
        index -= 3
    }
    return String(digits)
}
