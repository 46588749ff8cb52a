import ArgumentParser
import Foundation
import VoiceCoreRedis

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
        let configuration = try connections.redisConfiguration()
        let redis = try await RedisConnection.connect(configuration)
        let payload = Array(repeating: UInt8(ascii: "x"), count: payloadBytes)
        let key = "bench:xadd"
        print("Redis \(configuration), \(count) XADD of \(payloadBytes)-byte entries per run, one connection, median of \(repeats) rounds")
        print("depth   voicecore (entries/s)   redis-benchmark -c 1 (req/s)   ratio")
        for depth in depth {
            // Ours and redis-benchmark alternate, and the median of the rounds is reported, so that
            // background work of the server (AOF rewrites) falls on both alike.
            var oursRates: [Double] = []
            var theirRates: [Double] = []
            for _ in 0..<repeats {
                oursRates.append(try await pipelinedXADD(redis, key: key, depth: depth, payload: payload))
                if compare, let theirs = try await redisBenchmark(configuration, depth: depth, payload: payload) {
                    theirRates.append(theirs)
                }
                _ = try await redis.execute(.del([key, "bench:rb"]))
            }
            let ours = median(oursRates)
            let theirs = theirRates.isEmpty ? nil : median(theirRates)
            let theirsText = theirs.map { formatRate($0) } ?? "n/a"
            let ratio = theirs.map { String(format: "%.2f×", ours / $0) } ?? "-"
            print("\(String(depth).padding(toLength: 8, withPad: " ", startingAt: 0))\(formatRate(ours).padding(toLength: 24, withPad: " ", startingAt: 0))\(theirsText.padding(toLength: 31, withPad: " ", startingAt: 0))\(ratio)")
        }
        _ = try await redis.execute(.del([key, "bench:rb"]))
        let persistence = try await redis.execute(.info("persistence"))
        print("Redis persistence: " + (DoctorCommand.infoField("aof_enabled", in: persistence) == "1" ? "AOF on (appendfsync \(try await appendFsync(redis)))" : "AOF off"))
    }

    /// Sends `count` XADDs in pipelines of `depth` and returns entries per second.
    private func pipelinedXADD(_ redis: RedisConnection, key: String, depth: Int, payload: [UInt8]) async throws -> Double {
        _ = try await redis.execute(.del([key]))
        let batch = [RedisCommand<StreamEntryID>](repeating: .xadd(key, fields: [StreamField(name: "data", value: payload)]), count: depth)
        var sent = 0
        let count = count
        // The loop runs on the connection's thread: no thread hop per pipeline.
        let seconds = try await withTaskExecutorPreference(redis.taskExecutor) {
            try await measure {
            while sent < count {
                let n = min(depth, count - sent)
                let results = try await redis.pipeline(n == depth ? batch : Array(batch.prefix(n)))
                for result in results { _ = try result.get() }
                sent += n
            }
            }
        }
        let length = try await redis.execute(.xlen(key))
        guard length == count else { throw ValidationError("expected \(count) entries in \(key), found \(length)") }
        return Double(count) / seconds
    }

    private func median(_ values: [Double]) -> Double {
        let sorted = values.sorted()
        return sorted[sorted.count / 2]
    }

    private func appendFsync(_ redis: RedisConnection) async throws -> String {
        let reply = try await redis.send("CONFIG", "GET", "appendfsync")
        return reply.array?.last?.string ?? "?"
    }

    /// Runs redis-benchmark with the same command and payload, one connection.
    private func redisBenchmark(_ configuration: RedisConfiguration, depth: Int, payload: [UInt8]) async throws -> Double? {
        guard case .tcp(let host, let port) = configuration.endpoint else { return nil }
        return try await RedisBenchmarkTool.run(host: host, port: port, clients: 1, pipeline: depth, requests: count, database: configuration.database,
                                          password: configuration.password, arguments: ["xadd", "bench:rb", "*", "data", String(decoding: payload, as: UTF8.self)])
    }
}
