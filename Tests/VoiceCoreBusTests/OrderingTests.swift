import Foundation
import Synchronization
import Testing
import VoiceCoreEvents
import VoiceCoreRedis
@testable import VoiceCoreBus

@Suite("Order per call across several consumers")
struct OrderingTests {
    let tenant = Identifier.v7()

    /// Records (call, sequence, consumer) in the order handlers ran.
    final class Log: Sendable {
        let entries = Mutex<[(call: String, sequence: Int, consumer: String)]>([])
        func add(_ call: String, _ sequence: Int, _ consumer: String) { entries.withLock { $0.append((call, sequence, consumer)) } }
        var count: Int { entries.withLock { $0.count } }
        var byCall: [String: [Int]] {
            entries.withLock { entries in Dictionary(grouping: entries, by: \.call).mapValues { $0.map(\.sequence) } }
        }
        var consumers: Set<String> { entries.withLock { Set($0.map(\.consumer)) } }
    }

    private func start(_ naming: StreamNaming, _ name: String, _ log: Log) throws -> RunningConsumer {
        var handlers = MessageHandlers()
        handlers.on(TranscriptChunk.self) { _, chunk in
            try await Task.sleep(for: .microseconds(200))
            log.add(chunk.callID.description, chunk.sequence, name)
        }
        var configuration = ConsumerConfiguration(group: "ordered", streams: naming.streams(.calls, kind: .event), consumer: name)
        configuration.block = .milliseconds(100)
        configuration.batchSize = 50
        // Long enough that a member starved of CPU by a loaded machine (CI runs the suites in
        // parallel) still renews in time (every third of it): a lease that expires mid-batch hands
        // its entries to another member, which handles them again (at least once, correct, but
        // not the exactly-once, no-failure case these tests assert). With 900 ms, 18 of 1,000
        // entries were handled twice under full-suite load.
        configuration.leaseTTL = .seconds(3)
        return try RunningConsumer.start(configuration, handlers)
    }

    private func leaseHolders(_ redis: RedisConnection, _ naming: StreamNaming) async throws -> [String] {
        var holders: [String] = []
        for stream in naming.streams(.calls, kind: .event) {
            if let holder = try await redis.send("GET", .string("\(stream):lease:ordered")).string { holders.append(holder) }
        }
        return holders
    }

    @Test func threeConsumersKeepEachCallsOrderAndShareThePartitions() async throws {
        let redis = try await TestRedis.connect()
        let naming = StreamNaming(partitions: 8, prefix: TestRedis.prefix())
        let publisher = Publisher(connection: redis, configuration: PublisherConfiguration(source: "/test", naming: naming))
        let log = Log()
        let consumers = try ["a", "b", "c"].map { try start(naming, $0, log) }
        // Wait until the eight partitions are spread over the three members (3, 3, 2).
        try await eventually("the leases are balanced") {
            let holders = try await leaseHolders(redis, naming)
            let perMember = Dictionary(grouping: holders, by: { $0 }).mapValues(\.count)
            return holders.count == 8 && perMember.count == 3 && perMember.values.allSatisfy { $0 <= 3 }
        }

        let calls = (0..<40).map { _ in Identifier.v7() }
        let rounds = 25
        for sequence in 0..<rounds {
            let batch = calls.map { call in
                (EventEnvelope(TranscriptChunk(callID: call, sequence: sequence, track: .inbound, text: "t", isFinal: true, confidence: 1, startOffsetMs: 0, endOffsetMs: 1),
                               tenant: tenant, source: "/test"), StreamCategory.calls, MessageKind.event)
            }
            for result in await publisher.publish(batch: batch) { _ = try result.get() }
        }
        try await eventually("all \(calls.count * rounds) events are handled", within: .seconds(30)) { log.count >= calls.count * rounds }
        for consumer in consumers { try await consumer.stop() }

        #expect(log.count == calls.count * rounds, "each event handled once when nothing fails")
        for (call, sequences) in log.byCall { #expect(sequences == Array(0..<rounds), "call \(call) out of order") }
        #expect(log.consumers == ["a", "b", "c"], "every member did part of the work")
        _ = try await redis.execute(.del(naming.streams(.calls, kind: .event)))
    }

    @Test func whenAMemberLeavesTheOthersTakeItsPartitionsInOrder() async throws {
        let redis = try await TestRedis.connect()
        let naming = StreamNaming(partitions: 4, prefix: TestRedis.prefix())
        let publisher = Publisher(connection: redis, configuration: PublisherConfiguration(source: "/test", naming: naming))
        let log = Log()
        let a = try start(naming, "a", log)
        let b = try start(naming, "b", log)
        try await eventually("both hold leases") { Set(try await leaseHolders(redis, naming)) == ["a", "b"] }
        let calls = (0..<16).map { _ in Identifier.v7() }
        func publish(_ sequences: Range<Int>) async throws {
            for sequence in sequences {
                let batch = calls.map { call in
                    (EventEnvelope(TranscriptChunk(callID: call, sequence: sequence, track: .inbound, text: "t", isFinal: true, confidence: 1, startOffsetMs: 0, endOffsetMs: 1),
                                   tenant: tenant, source: "/test"), StreamCategory.calls, MessageKind.event)
                }
                for result in await publisher.publish(batch: batch) { _ = try result.get() }
            }
        }
        try await publish(0..<10)
        try await eventually("the first half is handled") { log.count >= calls.count * 10 }
        try await a.stop()
        try await eventually("b holds every partition") { try await leaseHolders(redis, naming) == ["b", "b", "b", "b"] }
        try await publish(10..<20)
        try await eventually("the second half is handled", within: .seconds(30)) { log.count >= calls.count * 20 }
        try await b.stop()
        for (call, sequences) in log.byCall { #expect(sequences == Array(0..<20), "call \(call) out of order") }
        _ = try await redis.execute(.del(naming.streams(.calls, kind: .event)))
    }
}

@Suite("Leases during long batches")
struct LongBatchLeaseTests {
    @Test func aBatchLongerThanTheLeaseKeepsItsPartition() async throws {
        let redis = try await TestRedis.connect()
        let naming = StreamNaming(partitions: 1, prefix: TestRedis.prefix())
        let publisher = Publisher(connection: redis, configuration: PublisherConfiguration(source: "/test", naming: naming))
        let call = Identifier.v7()
        for sequence in 0..<20 {
            try await publisher.publish(TranscriptChunk(callID: call, sequence: sequence, track: .inbound, text: "t", isFinal: true, confidence: 1, startOffsetMs: 0, endOffsetMs: 1), tenant: Identifier.v7())
        }
        let handled = Recorder()
        var handlers = MessageHandlers()
        handlers.on(TranscriptChunk.self) { _, chunk in
            try await Task.sleep(for: .milliseconds(50))   // 20 × 50 ms = a 1 s batch
            handled.record("seq", chunk.sequence)
        }
        var configuration = ConsumerConfiguration(group: "slow", streams: naming.streams(.calls, kind: .event), consumer: "slow-1")
        configuration.block = .milliseconds(100)
        configuration.leaseTTL = .milliseconds(300)
        let consumer = try RunningConsumer.start(configuration, handlers)
        let lease = "\(naming.stream(.calls, kind: .event, partition: 0)):lease:slow"
        try await eventually("the batch is under way") { handled.count >= 3 }
        // Well past the 300 ms TTL, mid-batch: the lease is still ours.
        try await Task.sleep(for: .milliseconds(450))
        #expect(handled.count < 20, "the check must fall inside the batch")
        #expect(try await redis.send("GET", .string(lease)).string == "slow-1")
        try await eventually("the batch is done") { handled.count == 20 }
        try await consumer.stop()
        _ = try await redis.execute(.del(naming.streams(.calls, kind: .event)))
    }
}
