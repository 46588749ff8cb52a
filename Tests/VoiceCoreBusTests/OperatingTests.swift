import Foundation
import Testing
import VoiceCoreEvents
import VoiceCoreRedis
@testable import VoiceCoreBus

@Suite("Stream overview and dead-letter operations against a real Redis")
struct OperatingTests {
    let tenant = Identifier.v7()

    private func chunk(_ call: Identifier, _ sequence: Int, text: String = "ok") -> TranscriptChunk {
        TranscriptChunk(callID: call, sequence: sequence, track: .inbound, text: text, isFinal: true, confidence: 0.9, startOffsetMs: 0, endOffsetMs: 1)
    }

    @Test func streamReportShowsLagPendingAndConsumers() async throws {
        let redis = try await TestRedis.connect()
        let naming = StreamNaming(partitions: 1, prefix: TestRedis.prefix())
        let publisher = Publisher(connection: redis, configuration: PublisherConfiguration(source: "/test", naming: naming))
        let call = Identifier.v7()
        for sequence in 0..<10 { try await publisher.publish(chunk(call, sequence), tenant: tenant) }
        let stream = naming.stream(.calls, kind: .event, partition: 0)
        try await redis.execute(.xgroupCreate(stream, group: "billing", start: .beginning))
        _ = try await redis.execute(.xreadgroup(group: "billing", consumer: "b1", streams: [(stream, .newEntries)], count: 4))

        let admin = StreamAdmin(connection: RedisClient(redis))
        #expect(try await admin.streams(prefix: naming.prefix) == [stream])
        let report = try await admin.report(stream)
        #expect(report.length == 10)
        let group = try #require(report.groups.first)
        #expect(group.name == "billing")
        #expect(group.lag == 6)
        #expect(group.pending == 4)
        #expect(group.oldestPendingIdleMs != nil)
        #expect(group.consumers.map(\.name) == ["b1"])
        #expect(group.consumers.first?.pending == 4)
        _ = try await redis.execute(.del([stream]))
    }

    @Test func requeuedDeadLettersAreHandledAgainAndLoopsAreRefused() async throws {
        let redis = try await TestRedis.connect()
        let naming = StreamNaming(partitions: 1, prefix: TestRedis.prefix())
        let publisher = Publisher(connection: redis, configuration: PublisherConfiguration(source: "/test", naming: naming))
        let call = Identifier.v7()
        let poison = try await publisher.publish(chunk(call, 0, text: "fails until fixed"), tenant: tenant)

        // A handler that fails until "fixed".
        let fixed = Recorder()
        let handled = Recorder()
        var handlers = MessageHandlers()
        handlers.on(TranscriptChunk.self) { _, chunk in
            struct NotYet: Error {}
            if fixed.count == 0 { throw NotYet() }
            handled.record("seq", chunk.sequence)
        }
        var settings = ConsumerConfiguration(group: "g", streams: naming.streams(.calls, kind: .event), consumer: "c")
        settings.block = .milliseconds(100)
        settings.retryDelay = .milliseconds(1)
        settings.maxDeliveries = 2
        let consumer = try RunningConsumer.start(settings, handlers)
        let deadLetterStream = settings.deadLetterStream(of: poison.stream)
        let dlq = DeadLetters(connection: RedisClient(redis))
        try await eventually("the entry is dead-lettered") { try await redis.execute(.xlen(deadLetterStream)) == 1 }
        #expect(try await dlq.list(prefix: naming.prefix).map(\.stream) == [deadLetterStream])
        #expect(try await dlq.show(deadLetterStream).first?["dlq.origin_id"] == poison.entryID.description)

        // Requeue while still broken: dead-lettered again, now carrying one requeue.
        #expect(try await dlq.requeue(deadLetterStream).count == 1)
        try await eventually("it is dead-lettered again") {
            let entries = try await redis.execute(.xrange(deadLetterStream))
            return entries.count == 1 && entries[0][DeadLetters.requeueCountField] == "1"
        }
        // With a limit of one requeue, a second one is refused: no endless loop.
        await #expect(throws: DeadLetters.RequeueRefused.self) {
            try await dlq.requeue(deadLetterStream, maxRequeues: 1)
        }

        // Fixed: a requeue is handled, with its original event id and fields, and leaves the DLQ
        // empty. It went to the group's own requeue stream, never back to the shared origin.
        fixed.record("fixed", 1)
        #expect(try await dlq.requeue(deadLetterStream).count == 1)
        try await eventually("the requeued entry is handled") { handled.count == 1 }
        #expect(try await redis.execute(.xlen(deadLetterStream)) == 0)
        #expect(try await redis.execute(.xrange(poison.stream)).map(\.id) == [poison.entryID])
        let requeued = try await redis.execute(.xrange(settings.retryStream(of: poison.stream)))
        #expect(requeued.last?["id"] == poison.eventID.description)
        #expect(requeued.last?[DeadLetters.requeueCountField] == "2")
        #expect(requeued.last?[DeadLetters.originIDField] == poison.entryID.description)
        try await consumer.stop()

        // Purge.
        _ = try await redis.execute(.xadd(deadLetterStream, fields: [("dlq.origin_stream", poison.stream)]))
        #expect(try await dlq.purge(deadLetterStream) == 1)
        #expect(try await dlq.list(prefix: naming.prefix).isEmpty)
        _ = try await redis.execute(.del([poison.stream, settings.retryStream(of: poison.stream)]))
    }
}
