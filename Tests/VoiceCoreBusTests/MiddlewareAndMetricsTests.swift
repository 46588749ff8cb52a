import Foundation
import Logging
import MetricsTestKit
import ServiceLifecycle
import Synchronization
import Testing
import VoiceCoreEvents
import VoiceCoreRedis
import VoiceCoreTime
@testable import VoiceCoreBus

@Suite("Middleware, correlation and metrics")
struct MiddlewareAndMetricsTests {
    let tenant = Identifier.v7()

    @Test func messagesPublishedWhileHandlingCarryCorrelationAndCausation() async throws {
        let redis = try await TestRedis.connect()
        let naming = StreamNaming(partitions: 1, prefix: TestRedis.prefix())
        let publisher = Publisher(connection: redis, configuration: PublisherConfiguration(source: "/test", naming: naming))
        let original = Identifier.v7()
        let call = Identifier.v7()
        let ended = try await publisher.publish(CallEnded(callID: call, endedAt: .now, status: .completed, durationSeconds: 61, answered: true),
                                               tenant: tenant, correlationID: original)

        final class Steps: Sendable {
            let list = Mutex<[String]>([])
            func record(_ step: String, _: Int) { list.withLock { $0.append(step) } }
        }
        let order = Steps()
        var handlers = MessageHandlers()
        handlers.use { message, next in
            order.record("outer-before", 0)
            try await next(message)
            order.record("outer-after", 0)
        }
        handlers.use { message, next in
            order.record("inner", 0)
            try await next(message)
        }
        handlers.on(CallEnded.self) { message, ended in
            order.record("handler", 0)
            // Bill the call: nothing about correlation is passed by hand.
            let usage = UsageRecorded(meter: .callMinutes, quantity: 2, callID: ended.callID, sourceEventID: message.envelope.id,
                                      sourceEventType: CallEnded.type, occurredAt: ended.endedAt)
            try await publisher.publish(usage, tenant: message.envelope.tenantID)
        }
        var configuration = ConsumerConfiguration(group: "billing", streams: naming.streams(.calls, kind: .event), consumer: "b")
        configuration.block = .milliseconds(100)
        let consumer = try RunningConsumer.start(configuration, handlers)
        let billing = naming.stream(.billing, kind: .event, partition: 0)
        try await eventually("usage is published") { try await redis.execute(.xlen(billing)) == 1 }
        try await consumer.stop()

        // The first middleware added is the outermost.
        #expect(order.list.withLock { $0 } == ["outer-before", "inner", "handler", "outer-after"])
        let usage = try #require(try await redis.execute(.xrange(billing)).first)
        #expect(usage["correlationid"] == original.description)
        #expect(usage["causationid"] == ended.eventID.description)
        #expect(usage["tenantid"] == tenant.description)
        _ = try await redis.execute(.del([billing] + naming.streams(.calls, kind: .event)))
    }

    @Test func publishAndConsumeAreCounted() async throws {
        let metrics = TestMetrics()
        let redis = try await TestRedis.connect()
        let naming = StreamNaming(partitions: 2, prefix: TestRedis.prefix())
        let publisher = Publisher(connection: redis, configuration: PublisherConfiguration(source: "/test", naming: naming), metricsFactory: metrics)
        let call = Identifier.v7()
        for sequence in 0..<9 {
            try await publisher.publish(TranscriptChunk(callID: call, sequence: sequence, track: .inbound, text: sequence == 4 ? "bad" : "ok",
                                                        isFinal: true, confidence: 1, startOffsetMs: 0, endOffsetMs: 1), tenant: tenant)
        }
        #expect(try metrics.expectCounter(BusMetricNames.published).totalValue == 9)

        struct Refused: Error {}
        var handlers = MessageHandlers()
        handlers.on(TranscriptChunk.self) { _, chunk in if chunk.text == "bad" { throw Refused() } }
        var configuration = ConsumerConfiguration(group: "m", streams: naming.streams(.calls, kind: .event), consumer: "m1")
        configuration.block = .milliseconds(100)
        configuration.retryDelay = .milliseconds(1)
        configuration.maxDeliveries = 2
        let runner = ConsumerGroupRunner(redis: try RedisConfiguration(url: TestRedis.url), configuration: configuration, handlers: handlers, metricsFactory: metrics)
        let group = ServiceGroup(services: [runner], logger: Logger(label: "test"))
        let task = Task { try await group.run() }
        try await eventually("all are handled or dead-lettered") { runner.statistics.handled == 8 && runner.statistics.deadLettered == 1 }
        await group.triggerGracefulShutdown()
        try await task.value

        #expect(try metrics.expectCounter(BusMetricNames.handled, [("group", "m")]).totalValue == 8)
        #expect(try metrics.expectCounter(BusMetricNames.handlerFailed, [("group", "m")]).totalValue == 2)
        #expect(try metrics.expectCounter(BusMetricNames.deadLettered, [("group", "m")]).totalValue == 1)
        #expect(try metrics.expectTimer(BusMetricNames.handlerDuration, [("group", "m"), ("type", TranscriptChunk.type)]).values.count == 8)

        // Gauges from a sample: nothing lagging or pending, one dead letter.
        let stream = naming.stream(for: .calls, kind: .event, tenant: tenant, subject: call.description)
        let collector = StreamMetricsCollector(redis: try RedisConfiguration(url: TestRedis.url), prefix: naming.prefix, factory: metrics)
        try await collector.sample(StreamAdmin(connection: RedisClient(redis)))
        #expect(try metrics.expectGauge(BusMetricNames.lag, [("stream", stream), ("group", "m")]).lastValue == 0)
        #expect(try metrics.expectGauge(BusMetricNames.pending, [("stream", stream), ("group", "m")]).lastValue == 0)
        #expect(try metrics.expectGauge(BusMetricNames.deadLetters, [("stream", configuration.deadLetterStream(of: stream))]).lastValue == 1)
        _ = try await redis.execute(.del(naming.streams(.calls, kind: .event) + [configuration.deadLetterStream(of: stream)]))
    }
}
