import Foundation
import VoiceCoreRedis

/// Pipelined XADD of fixed-size entries through VoiceCoreRedis on one connection, beside
/// `redis-benchmark -c 1` with the same command, alternating (`voicecore bench redis`).
public struct RedisXADDBenchmark: Sendable {
    /// Entries per run.
    public var count: Int
    /// Payload size in bytes.
    public var payloadBytes: Int
    /// Pipeline depths to measure.
    public var depths: [Int]
    /// Rounds per depth; the median is reported.
    public var repeats: Int
    /// Also run redis-benchmark with the same command.
    public var compare: Bool

    public init(count: Int = 1_000_000, payloadBytes: Int = 300, depths: [Int] = [64, 256], repeats: Int = 3, compare: Bool = true) {
        self.count = count
        self.payloadBytes = payloadBytes
        self.depths = depths
        self.repeats = repeats
        self.compare = compare
    }

    /// The value of `name` in the text of `INFO`.
    static func infoField(_ name: String, in info: String) -> String? {
        for line in info.split(whereSeparator: \.isNewline) where line.hasPrefix(name + ":") {
            return String(line.dropFirst(name.count + 1))
        }
        return nil
    }

    public func run(on servers: BenchmarkServers) async throws {
        let report = servers.report
        let configuration = try servers.redisConfiguration()
        let redis = try await RedisConnection.connect(configuration)
        let payload = Array(repeating: UInt8(ascii: "x"), count: payloadBytes)
        let key = "bench:xadd"
        report("Redis \(configuration), \(count) XADD of \(payloadBytes)-byte entries per run, one connection, median of \(repeats) rounds")
        report("depth   voicecore (entries/s)   redis-benchmark -c 1 (req/s)   ratio")
        for depth in depths {
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
            report("\(String(depth).padding(toLength: 8, withPad: " ", startingAt: 0))\(formatRate(ours).padding(toLength: 24, withPad: " ", startingAt: 0))\(theirsText.padding(toLength: 31, withPad: " ", startingAt: 0))\(ratio)")
        }
        _ = try await redis.execute(.del([key, "bench:rb"]))
        let persistence = try await redis.execute(.info("persistence"))
        report("Redis persistence: " + (Self.infoField("aof_enabled", in: persistence) == "1" ? "AOF on (appendfsync \(try await appendFsync(redis)))" : "AOF off"))
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
        guard length == count else { throw BenchmarkFailure("expected \(count) entries in \(key), found \(length)") }
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
