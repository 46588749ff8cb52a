import Foundation
import VoiceCoreBus
import VoiceCoreEvents
import VoiceCoreRedis
import VoiceCoreSimulation
import VoiceCoreTime

/// Events per second through the bus `Publisher` (group commit), beside redis-benchmark sending
/// XADDs with the same fields (`voicecore bench publish`).
public struct PublishBenchmark: Sendable {
    /// Events to publish.
    public var count: Int
    /// Concurrent publishing tasks.
    public var concurrency: Int
    /// Also run redis-benchmark with the same fields.
    public var compare: Bool
    /// Replicas that must confirm each pipeline (WAIT N 500) before a publish counts; 0 = off.
    public var waitReplicas: Int

    public init(count: Int = 500_000, concurrency: Int = 256, compare: Bool = true, waitReplicas: Int = 0) {
        self.count = count
        self.concurrency = concurrency
        self.compare = compare
        self.waitReplicas = waitReplicas
    }

    public func run(on servers: BenchmarkServers) async throws {
        let report = servers.report
        let configuration = try servers.redisConfiguration()
        let redis = try await RedisClient.connect(configuration)
        let naming = StreamNaming(partitions: 16, prefix: "bench")
        let publisher = Publisher(connection: redis, configuration: PublisherConfiguration(
            source: "/bench", naming: naming,
            replicaAcknowledgement: waitReplicas > 0 ? ReplicaAcknowledgement(replicas: waitReplicas, timeout: .milliseconds(500)) : nil))
        let tenant = Identifier.v7()
        let calls = (0..<1000).map { CallID.derive(tenant: tenant, provider: .twilio, providerCallID: "CA\($0)") }
        @Sendable func chunk(_ i: Int) -> TranscriptChunk {
            TranscriptChunk(callID: calls[i % calls.count], sequence: i / calls.count, track: .inbound,
                            text: "Hi, I'd like to book an appointment for Tuesday, my number is +14155550123.",
                            isFinal: true, confidence: 0.93, startOffsetMs: 12_340, endOffsetMs: 15_870, language: "en-US")
        }
        let sample = EventEnvelope(chunk(0), tenant: tenant, source: "/bench").fields
        let entryBytes = sample.reduce(0) { $0 + $1.name.utf8.count + $1.value.count }
        for stream in naming.streams(.calls, kind: .event) { _ = try await redis.execute(.del([stream])) }

        let perTask = count / concurrency
        let total = perTask * concurrency
        let cpu = MachineCPU.now()
        let seconds = try await measure {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for t in 0..<concurrency {
                    group.addTask {
                        for k in 0..<perTask { try await publisher.publish(chunk(t * perTask + k), tenant: tenant) }
                    }
                }
                try await group.waitForAll()
            }
        }
        let share = MachineCPU.share(since: cpu)
        var length = 0
        for stream in naming.streams(.calls, kind: .event) { length += try await redis.execute(.xlen(stream)) }
        guard length == total else { throw BenchmarkFailure("expected \(total) entries, found \(length)") }
        for stream in naming.streams(.calls, kind: .event) { _ = try await redis.execute(.del([stream])) }
        let statistics = publisher.statistics
        let target = redis.isCluster ? "a Redis Cluster of \(redis.masters.count) masters (one connection per master)" : "one connection"
        report("Publisher: \(total) TranscriptChunk events (\(entryBytes) bytes of fields each), \(concurrency) concurrent publishers, \(target)\(waitReplicas > 0 ? ", WAIT \(waitReplicas)" : "")")
        report("published  \(formatRate(Double(total) / seconds)) events/s  (\(statistics.batches) pipelines, \(String(format: "%.1f", Double(total) / Double(max(1, statistics.batches)))) entries each)")
        if let share { report("  " + share) }

        if compare, !redis.isCluster, case .tcp(let host, let port) = configuration.endpoint {
            var fieldArguments: [String] = []
            for field in sample { fieldArguments += [field.name, field.string] }
            for clients in [1, 50] {
                if let rate = try await RedisBenchmarkTool.run(host: host, port: port, clients: clients, pipeline: 64, requests: total, database: configuration.database,
                                                               password: configuration.password, arguments: ["xadd", "bench:rb", "*"] + fieldArguments) {
                    report("redis-benchmark -c \(clients) -P 64 xadd (same fields)  \(formatRate(rate)) req/s")
                }
            }
            _ = try await redis.execute(.del(["bench:rb"]))
        }
    }
}
