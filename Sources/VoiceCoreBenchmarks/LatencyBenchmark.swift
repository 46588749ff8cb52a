import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import VoiceCoreBus
import VoiceCoreEvents
import VoiceCoreRedis
import VoiceCoreTime

/// Publish-to-handler latency (p50, p99, max) at a steady event rate, publisher and consumer in
/// this process (`voicecore bench latency`).
public struct LatencyBenchmark: Sendable {
    /// Replicas that must confirm each pipeline (WAIT N 500) before a publish counts; 0 = off.
    public var waitReplicas: Int
    /// Events per second.
    public var rate: Int
    /// Seconds of measurement (after one second of warm-up).
    public var seconds: Int

    public init(waitReplicas: Int = 0, rate: Int = 10_000, seconds: Int = 10) {
        self.waitReplicas = waitReplicas
        self.rate = rate
        self.seconds = seconds
    }

    public func run(on servers: BenchmarkServers) async throws {
        let report = servers.report
        let redisConfiguration = try servers.redisConfiguration()
        let redis = try await RedisClient.connect(redisConfiguration)
        let naming = StreamNaming(partitions: 16, prefix: "benchl")
        let publisher = Publisher(connection: redis, configuration: PublisherConfiguration(
            source: "/bench", naming: naming,
            replicaAcknowledgement: waitReplicas > 0 ? ReplicaAcknowledgement(replicas: waitReplicas, timeout: .milliseconds(500)) : nil))
        let streams = naming.streams(.calls, kind: .event)
        for stream in streams { _ = try await redis.execute(.del([stream])) }

        let latencies = Mutex<[Int64]>([])
        let warmupEnds = Mutex(Timestamp(microsecondsSinceEpoch: .max))
        var handlers = MessageHandlers()
        handlers.on(TranscriptChunk.self) { message, _ in
            let now = Timestamp.now
            guard message.envelope.time >= warmupEnds.withLock({ $0 }) else { return }
            latencies.withLock { $0.append(now.microsecondsSinceEpoch - message.envelope.time.microsecondsSinceEpoch) }
        }
        var configuration = ConsumerConfiguration(group: "latency", streams: streams, consumer: "latency-1", start: .end)
        configuration.block = .seconds(1)
        var logger = Logger(label: "voicecore.bench")
        logger.logLevel = .warning
        let runner = ConsumerGroupRunner(redis: redisConfiguration, configuration: configuration, handlers: handlers, logger: logger)
        let group = ServiceGroup(services: [runner], logger: logger)
        let consumerTask = Task { try await group.run() }
        try await Task.sleep(for: .milliseconds(500))

        let tenant = Identifier.v7()
        let calls = (0..<1000).map { _ in Identifier.v7() }
        let perTick = max(1, rate / 1000)
        let clock = ContinuousClock()
        let start = clock.now
        warmupEnds.withLock { $0 = Timestamp.now.adding(microseconds: 1_000_000) }
        let ticks = (seconds + 1) * 1000
        var sent = 0
        var acknowledged: [Int64] = []
        acknowledged.reserveCapacity(ticks)
        for tick in 0..<ticks {
            let batch = (0..<perTick).map { k -> (EventEnvelope, StreamCategory, MessageKind) in
                let i = tick * perTick + k
                let chunk = TranscriptChunk(callID: calls[i % calls.count], sequence: i / calls.count, track: .inbound, text: "Hi, I'd like an appointment.",
                                            isFinal: true, confidence: 0.9, startOffsetMs: 0, endOffsetMs: 1)
                return (EventEnvelope(chunk, tenant: tenant, source: "/bench"), .calls, .event)
            }
            for result in await publisher.publish(batch: batch) { _ = try result.get() }
            if tick >= 1000 { acknowledged.append(Timestamp.now.microsecondsSinceEpoch - batch[0].0.time.microsecondsSinceEpoch) }
            sent += perTick
            // Steady pacing: the next batch leaves at its scheduled millisecond.
            let next = start + .milliseconds(tick + 1)
            if clock.now < next { try await Task.sleep(until: next, clock: clock) }
        }
        let achieved = Double(sent) / Double((clock.now - start).components.seconds)
        let expected = seconds * perTick * 1000
        let deadline = clock.now + .seconds(10)
        while latencies.withLock({ $0.count }) < expected && clock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
        await group.triggerGracefulShutdown()
        try await consumerTask.value
        for stream in streams { _ = try await redis.execute(.del([stream])) }

        let sorted = latencies.withLock { $0 }.sorted()
        guard !sorted.isEmpty else { throw BenchmarkFailure("no event was handled") }
        func percentile(_ p: Double) -> Double { Double(sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]) / 1000 }
        report("Latency: \(sent) events at a target of \(rate)/s (achieved ≈ \(formatRate(achieved))/s), \(sorted.count) measured after warm-up")
        let acks = acknowledged.sorted()
        func ackPercentile(_ p: Double) -> Double { Double(acks[min(acks.count - 1, Int(Double(acks.count) * p))]) / 1000 }
        report(String(format: "publish → acked    p50 %.2f ms  p99 %.2f ms  (the publisher's share: XADD acknowledged by Redis)", ackPercentile(0.5), ackPercentile(0.99)))
        report(String(format: "publish → handler  p50 %.2f ms  p99 %.2f ms  p99.9 %.2f ms  max %.2f ms", percentile(0.50), percentile(0.99), percentile(0.999), Double(sorted[sorted.count - 1]) / 1000))
    }
}
