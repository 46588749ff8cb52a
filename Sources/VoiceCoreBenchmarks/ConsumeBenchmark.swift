import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import VoiceCoreBus
import VoiceCoreEvents
import VoiceCoreRedis
import VoiceCoreSimulation

/// Events per second through a `ConsumerGroupRunner` with a no-op typed handler, from a backlog
/// in 16 partitions (`voicecore bench consume`).
public struct ConsumeBenchmark: Sendable {
    /// Events in the backlog.
    public var count: Int
    /// Entries read per stream per XREADGROUP.
    public var batchSize: Int

    public init(count: Int = 300_000, batchSize: Int = 1000) {
        self.count = count
        self.batchSize = batchSize
    }

    public func run(on servers: BenchmarkServers) async throws {
        let report = servers.report
        let redisConfiguration = try servers.redisConfiguration()
        let redis = try await RedisClient.connect(redisConfiguration)
        let naming = StreamNaming(partitions: 16, prefix: "benchc")
        let publisherConfiguration = PublisherConfiguration(source: "/bench", naming: naming)
        let publisher = Publisher(connection: redis, configuration: publisherConfiguration)
        let streams = naming.streams(.calls, kind: .event)
        for stream in streams { _ = try await redis.execute(.del([stream])) }

        let tenant = Identifier.v7()
        let calls = (0..<1000).map { _ in Identifier.v7() }
        var published = 0
        while published < count {
            let n = min(10_000, count - published)
            let batch = (0..<n).map { k -> (EventEnvelope, StreamCategory, MessageKind) in
                let i = published + k
                let chunk = TranscriptChunk(callID: calls[i % calls.count], sequence: i / calls.count, track: .inbound,
                                            text: "Hi, I'd like to book an appointment for Tuesday, my number is +14155550123.",
                                            isFinal: true, confidence: 0.93, startOffsetMs: 12_340, endOffsetMs: 15_870, language: "en-US")
                return (EventEnvelope(chunk, tenant: tenant, source: "/bench"), .calls, .event)
            }
            for result in await publisher.publish(batch: batch) { _ = try result.get() }
            published += n
        }

        let handled = Mutex(0)
        let clock = ContinuousClock()
        let firstAndLast = Mutex<(ContinuousClock.Instant?, ContinuousClock.Instant?)>((nil, nil))
        let total = count
        var handlers = MessageHandlers()
        handlers.on(TranscriptChunk.self) { _, _ in
            let now = clock.now
            handled.withLock { $0 += 1 }
            firstAndLast.withLock { if $0.0 == nil { $0.0 = now }; $0.1 = now }
        }
        var configuration = ConsumerConfiguration(group: "bench", streams: streams, consumer: "bench-1")
        configuration.batchSize = batchSize
        configuration.block = .milliseconds(100)
        var logger = Logger(label: "voicecore.bench")
        logger.logLevel = .warning
        let runner = ConsumerGroupRunner(redis: redisConfiguration, configuration: configuration, handlers: handlers, logger: logger)
        let group = ServiceGroup(services: [runner], logger: logger)
        let cpu = MachineCPU.now()
        let task = Task { try await group.run() }
        while handled.withLock({ $0 }) < total { try await Task.sleep(for: .milliseconds(5)) }
        // Acknowledged too: nothing pending.
        var pending = 1
        while pending > 0 {
            pending = 0
            for stream in streams { pending += try await redis.execute(.xpending(stream, group: "bench")).count }
            if pending > 0 { try await Task.sleep(for: .milliseconds(5)) }
        }
        let end = clock.now
        let share = MachineCPU.share(since: cpu)
        await group.triggerGracefulShutdown()
        try await task.value
        let start = firstAndLast.withLock { $0.0 } ?? end
        let seconds = Double((end - start).components.seconds) + Double((end - start).components.attoseconds) / 1e18
        report("ConsumerGroupRunner: \(total) TranscriptChunk events from a backlog in 16 partitions, COUNT \(batchSize), one consumer")
        report("consumed  \(formatRate(Double(total) / seconds)) events/s (decode + no-op handler + XACK)")
        if let share { report("  " + share) }
        for stream in streams { _ = try await redis.execute(.del([stream])) }
    }
}
