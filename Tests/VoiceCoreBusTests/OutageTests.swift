import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import Testing
import VoiceCoreEvents
import VoiceCoreRedis
@testable import VoiceCoreBus
import VoiceCoreTestSupport

/// Counts what a handler saw, by entry.
final class Seen: Sendable {
    private let counts = Mutex<[String: Int]>([:])
    func record(_ key: String) { counts.withLock { $0[key, default: 0] += 1 } }
    var keys: Set<String> { counts.withLock { Set($0.keys) } }
    var total: Int { counts.withLock { $0.values.reduce(0, +) } }
}

@Suite("Consumers through Redis and Postgres outages", .serialized)
struct OutageTests {
    let tenant = Identifier.v7()

    private func chunk(_ call: Identifier, _ sequence: Int) -> TranscriptChunk {
        TranscriptChunk(callID: call, sequence: sequence, track: .inbound, text: "segment \(sequence)", isFinal: true, confidence: 0.9, startOffsetMs: 0, endOffsetMs: 1)
    }

    @Test func anOutageUsesUpNoDeliveryAndIsNotDeadLettered() async throws {
        let redis = try await TestRedis.connect()
        let naming = StreamNaming(partitions: 1, prefix: TestRedis.prefix())
        let publisher = Publisher(connection: redis, configuration: PublisherConfiguration(source: "/test", naming: naming))
        let entry = try await publisher.publish(chunk(Identifier.v7(), 0), tenant: tenant)

        // The handler's dependency is out for more tries than the entry's whole delivery budget.
        let failuresLeft = Mutex(8)
        let handled = Seen()
        var handlers = MessageHandlers()
        handlers.on(TranscriptChunk.self) { message, _ in
            let fail = failuresLeft.withLock { left in
                defer { left -= 1 }
                return left > 0
            }
            if fail { throw RedisError(kind: .connection, message: "cannot connect to 127.0.0.1:1: Connection refused") }
            handled.record(message.entryID.description)
        }
        var settings = ConsumerConfiguration(group: "g", streams: naming.streams(.calls, kind: .event), consumer: "c")
        settings.block = .milliseconds(100)
        settings.retryDelay = .milliseconds(1)
        settings.maxDeliveries = 2
        let consumer = try RunningConsumer.start(settings, handlers)
        // While the dependency is out, the partition reports its wait (readiness reads this).
        try await eventually("the wait is reported") { consumer.runner.statistics.waitingOnOutage >= 1 }
        try await eventually("the entry is handled once the dependency answers") { handled.total == 1 }
        #expect(handled.keys == [entry.entryID.description])
        #expect(try await redis.execute(.xlen(settings.deadLetterStream(of: entry.stream))) == 0)
        let statistics = consumer.runner.statistics
        #expect(statistics.deadLettered == 0)
        #expect(statistics.outageRetries >= 8)
        #expect(statistics.failedAttempts == 0)
        #expect(statistics.waitingOnOutage == 0)
        // Acknowledged (with the consumer's next read): nothing left pending, nothing dead-lettered.
        try await eventually("the entry is acknowledged") { try await redis.execute(.xpending(entry.stream, group: "g", count: 10)).isEmpty }
        try await consumer.stop()
        _ = try await redis.execute(.del([entry.stream]))
    }

    @Test func aMessageFailureStillDeadLettersAfterItsBudget() async throws {
        let redis = try await TestRedis.connect()
        let naming = StreamNaming(partitions: 1, prefix: TestRedis.prefix())
        let publisher = Publisher(connection: redis, configuration: PublisherConfiguration(source: "/test", naming: naming))
        let entry = try await publisher.publish(chunk(Identifier.v7(), 0), tenant: tenant)
        var handlers = MessageHandlers()
        handlers.on(TranscriptChunk.self) { _, _ in
            // A server error that is the command's fault, not an outage.
            throw RedisError.server("WRONGTYPE Operation against a key holding the wrong kind of value")
        }
        var settings = ConsumerConfiguration(group: "g", streams: naming.streams(.calls, kind: .event), consumer: "c")
        settings.block = .milliseconds(100)
        settings.retryDelay = .milliseconds(1)
        settings.maxDeliveries = 2
        let consumer = try RunningConsumer.start(settings, handlers)
        try await eventually("the entry is dead-lettered") { try await redis.execute(.xlen(settings.deadLetterStream(of: entry.stream))) == 1 }
        #expect(consumer.runner.statistics.outageRetries == 0)
        try await consumer.stop()
        _ = try await redis.execute(.del([entry.stream, settings.deadLetterStream(of: entry.stream)]))
    }

    @Test func shutdownDuringAnOutageIsBoundedAndLeavesTheEntryPending() async throws {
        let redis = try await TestRedis.connect()
        let naming = StreamNaming(partitions: 1, prefix: TestRedis.prefix())
        let publisher = Publisher(connection: redis, configuration: PublisherConfiguration(source: "/test", naming: naming))
        let entry = try await publisher.publish(chunk(Identifier.v7(), 0), tenant: tenant)
        let tries = Mutex(0)
        var handlers = MessageHandlers()
        handlers.on(TranscriptChunk.self) { _, _ in
            tries.withLock { $0 += 1 }
            throw RedisError(kind: .timeout, message: "no reply within the command timeout")
        }
        var settings = ConsumerConfiguration(group: "g", streams: naming.streams(.calls, kind: .event), consumer: "c")
        settings.block = .milliseconds(100)
        settings.maxDeliveries = 1
        let consumer = try RunningConsumer.start(settings, handlers)
        try await eventually("the partition waits for the dependency") { tries.withLock { $0 } >= 3 && consumer.runner.statistics.waitingOnOutage >= 1 }

        let stopped = Mutex(false)
        let stopping = Task {
            try await consumer.stop()
            stopped.withLock { $0 = true }
        }
        // A consumer that waited for Redis to return would never stop here.
        try await eventually("the consumer stops within its drain bound", within: .seconds(8)) { stopped.withLock { $0 } }
        stopping.cancel()
        // Nothing was given up: the entry is still pending for the next start, not dead-lettered.
        let pending = try await redis.execute(.xpending(entry.stream, group: "g", count: 10))
        #expect(pending.map(\.id) == [entry.entryID])
        #expect(try await redis.execute(.xlen(settings.deadLetterStream(of: entry.stream))) == 0)
        _ = try await redis.execute(.del([entry.stream]))
    }

    @Test func aRedisKilledAndRestartedLosesNothingAndDeadLettersNothing() async throws {
        let server = RestartableRedis()
        try await server.start()
        let naming = StreamNaming(partitions: 4, prefix: "outage")
        let publishing = try await RedisClient.connect(try server.configuration)
        let publisher = Publisher(connection: publishing, configuration: PublisherConfiguration(source: "/test", naming: naming))

        // The handler keeps state in Redis on a connection of its own (as the services' state
        // stores do): it must come back by itself too.
        let state = try await RedisClient.connect(try server.configuration)
        let handled = Seen()
        var handlers = MessageHandlers()
        handlers.on(TranscriptChunk.self) { message, _ in
            _ = try await state.send("INCR", .string("outage:{p00}:handled"))
            handled.record(message.envelope.id.description)
        }
        var settings = ConsumerConfiguration(group: "calls", streams: naming.streams(.calls, kind: .event), consumer: "c1")
        settings.block = .milliseconds(200)
        settings.retryDelay = .milliseconds(5)
        settings.maxDeliveries = 3
        let runner = ConsumerGroupRunner(redis: try server.configuration, configuration: settings, handlers: handlers)
        let group = ServiceGroup(services: [runner], logger: Logger(label: "test"))
        let running = Task { try await group.run() }

        // Publish steadily; what Redis acknowledged must be handled, whatever happens to Redis.
        let acknowledged = Mutex<Set<String>>([])
        let stop = Mutex(false)
        let load = Task {
            var sequence = 0
            let calls = (0..<8).map { _ in Identifier.v7() }
            while !stop.withLock({ $0 }) {
                let batch = (0..<20).map { i in
                    (EventEnvelope(chunk(calls[i % calls.count], sequence + i), tenant: tenant, source: "/test"), StreamCategory.calls, MessageKind.event)
                }
                sequence += batch.count
                for (index, result) in await publisher.publish(batch: batch).enumerated() {
                    if case .success = result { acknowledged.withLock { _ = $0.insert(batch[index].0.id.description) } }
                }
                try? await Task.sleep(for: .milliseconds(10))
            }
        }
        try await eventually("traffic flows") { handled.total >= 200 }
        server.kill()
        try await Task.sleep(for: .seconds(1))
        #expect(runner.statistics.waitingOnOutage >= 1, "the consumer reports that it waits for Redis")
        let beforeRestart = acknowledged.withLock { $0.count }
        try await server.start()
        let restarted = ContinuousClock.now
        try await eventually("publishing works again after the restart") { acknowledged.withLock { $0.count } >= beforeRestart + 200 }
        stop.withLock { $0 = true }
        _ = await load.value
        try await eventually("every acknowledged entry is handled", within: .seconds(20)) {
            acknowledged.withLock { $0 }.isSubset(of: handled.keys)
        }
        #expect(ContinuousClock.now - restarted < .seconds(20))
        #expect(runner.statistics.deadLettered == 0)
        #expect(runner.statistics.waitingOnOutage == 0)
        var deadLetters = 0
        for stream in settings.streams { deadLetters += try await publishing.execute(.xlen(settings.deadLetterStream(of: stream))) }
        #expect(deadLetters == 0)
        // The handler's own connection recovered: every handling counted in Redis is at least
        // the acknowledged entries (redeliveries may count twice; none was lost).
        let counted = Int(try await publishing.send("GET", "outage:{p00}:handled").string ?? "0") ?? 0
        #expect(counted >= acknowledged.withLock { $0.count } - 20)

        await group.triggerGracefulShutdown()
        try await running.value
    }

    @Test func aRequeueReachesOnlyTheGroupThatFailedAndOnlyOnce() async throws {
        let redis = try await TestRedis.connect()
        let naming = StreamNaming(partitions: 1, prefix: TestRedis.prefix())
        let publisher = Publisher(connection: redis, configuration: PublisherConfiguration(source: "/test", naming: naming))
        let poison = try await publisher.publish(chunk(Identifier.v7(), 0), tenant: tenant)
        let fixed = Mutex(false)
        let failing = Seen(), other = Seen()
        let streamsSeen = Mutex<Set<String>>([])
        var failingHandlers = MessageHandlers()
        failingHandlers.on(TranscriptChunk.self) { message, _ in
            struct NotYet: Error {}
            guard fixed.withLock({ $0 }) else { throw NotYet() }
            failing.record(message.envelope.id.description)
            streamsSeen.withLock { _ = $0.insert(message.stream) }
        }
        var otherHandlers = MessageHandlers()
        otherHandlers.on(TranscriptChunk.self) { message, _ in other.record(message.envelope.id.description) }
        func settings(_ group: String) -> ConsumerConfiguration {
            var settings = ConsumerConfiguration(group: group, streams: naming.streams(.calls, kind: .event), consumer: "c")
            settings.block = .milliseconds(100)
            settings.retryDelay = .milliseconds(1)
            settings.maxDeliveries = 2
            settings.claimInterval = .milliseconds(100)
            return settings
        }
        let crm = try RunningConsumer.start(settings("crm"), failingHandlers)
        let integrations = try RunningConsumer.start(settings("integrations"), otherHandlers)
        let deadLetterStream = settings("crm").deadLetterStream(of: poison.stream)
        try await eventually("crm dead-letters the entry") { try await redis.execute(.xlen(deadLetterStream)) == 1 }
        try await eventually("integrations handles it") { other.total == 1 }
        let lengthBefore = try await redis.execute(.xlen(poison.stream))

        fixed.withLock { $0 = true }
        let dlq = DeadLetters(connection: RedisClient(redis))
        let deadLetterID = try #require(try await dlq.show(deadLetterStream).first?.id)
        // Two operators requeue the same dead letter: it is delivered once.
        #expect(try await dlq.requeue(deadLetterStream, ids: [deadLetterID]).count == 1)
        #expect(try await dlq.requeue(deadLetterStream, ids: [deadLetterID]).count == 0)
        try await eventually("crm handles the requeued entry") { failing.total == 1 }
        #expect(failing.keys == [poison.eventID.description])
        // Handled as its partition's (the services key a call's state by the stream it came on).
        #expect(streamsSeen.withLock { $0 } == [poison.stream])
        // Nothing new in the shared stream; the other group handled nothing again.
        #expect(try await redis.execute(.xlen(poison.stream)) == lengthBefore)
        try await Task.sleep(for: .milliseconds(500))
        #expect(other.total == 1)
        #expect(failing.total == 1)
        #expect(try await redis.execute(.xlen(deadLetterStream)) == 0)
        try await crm.stop()
        try await integrations.stop()
        _ = try await redis.execute(.del([poison.stream, deadLetterStream, settings("crm").retryStream(of: poison.stream)]))
    }
}
