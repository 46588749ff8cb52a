import Foundation
import Logging
import Metrics
import Prometheus
import ServiceLifecycle
import Synchronization
import Testing
import VoiceCoreBus
import VoiceCoreEvents
import VoiceCoreRedis
import VoiceCoreTime
@testable import VoiceCoreEdge

/// The edge's shared wait for receptionist replies, on the real Redis: a wait is answered by the
/// reply with its command as causation, from the tail, the cache or a look-up; a wait with no
/// reply ends at its deadline; no wait is left behind.
@Suite struct TurnRepliesTests {
    /// A stream prefix of its own, a publisher, and ``TurnReplies`` over its conversations streams.
    final class Harness: Sendable {
        let naming = StreamNaming(partitions: 4, prefix: "t\(UUID().uuidString.prefix(8).lowercased())")
        let tenant = Identifier.v7()
        let redis: RedisClient
        let publisher: Publisher
        let registry = PrometheusCollectorRegistry()
        let turns: TurnReplies
        private let running = Mutex<Task<Void, any Error>?>(nil)

        init() async throws {
            redis = try await RedisClient.connect(try RedisConfiguration(url: TestServers.redisURL))
            publisher = Publisher(connection: redis, configuration: PublisherConfiguration(source: "/test", naming: naming))
            let tail = try await StreamTail.connect(try RedisConfiguration(url: TestServers.redisURL), clientName: "test-turns",
                                                    configuration: StreamTail.Configuration(streams: naming.streams(.conversations, kind: .event),
                                                                                            block: .milliseconds(200)))
            turns = TurnReplies(tail: tail, metricsFactory: PrometheusMetricsFactory(registry: registry))
        }

        /// Runs the service and waits until it follows the streams.
        func start() async throws {
            let turns = self.turns
            running.withLock { $0 = Task { try await turns.run() } }
            let deadline = ContinuousClock.now + .seconds(10)
            while !turns.isFollowing {
                guard ContinuousClock.now < deadline else { throw TestError("TurnReplies did not start following") }
                try await Task.sleep(for: .milliseconds(5))
            }
        }

        func stop() async {
            let task = running.withLock { $0 }
            task?.cancel()
            _ = try? await task?.value
        }

        /// Publishes the receptionist's reply to a call's turn, as the receptionist does.
        @discardableResult
        func publishReply(call: Identifier, turn: Int, text: String, action: ReceptionistAction = .continue) async throws -> ReceptionistReplied {
            let command = ReportCallerTurn.commandID(callID: call, turn: turn)
            // A time of whole microseconds, as the payload carries it: the reply read back equals this one.
            let repliedAt = try #require(Timestamp(rfc3339: Timestamp.now.rfc3339))
            let reply = ReceptionistReplied(callID: call, provider: .twilio, providerCallID: "CA\(turn)", turn: turn, channel: .gather, heard: "hello",
                                            text: text, action: action, decidedBy: .builtIn, repliedAt: repliedAt)
            _ = try await publisher.publish(EventEnvelope(reply, tenant: tenant, source: "/services/receptionist", causationID: command,
                                                          id: ReceptionistReplied.replyID(commandID: command)),
                                            category: .conversations, kind: .event)
            return reply
        }

        func stream(of call: Identifier) -> String {
            naming.stream(for: .conversations, kind: .event, tenant: tenant, subject: call.description)
        }

        func metric(_ name: String) -> Int? {
            var bytes: [UInt8] = []
            registry.emit(into: &bytes)
            let line = String(decoding: bytes, as: UTF8.self).split(separator: "\n").first { $0.hasPrefix(name + " ") }
            return line.flatMap { Int($0.split(separator: " ").last ?? "") }
        }

        func drop() async throws {
            await stop()
            for stream in naming.streams(.conversations, kind: .event) { _ = try await redis.execute(.del([stream])) }
            await redis.close()
        }
    }

    @Test func aWaitIsAnsweredByTheReplyToItsCommandAndLeavesNothing() async throws {
        let harness = try await Harness()
        try await harness.start()
        let call = Identifier.v7()
        let command = ReportCallerTurn.commandID(callID: call, turn: 1)
        let turns = harness.turns
        let stream = harness.stream(of: call)
        let waiting = Task { try await turns.reply(to: command, stream: stream, deadline: .seconds(30)) }
        while turns.openWaits == 0 { try await Task.sleep(for: .milliseconds(2)) }
        // Another turn's reply of the same call does not answer it.
        try await harness.publishReply(call: call, turn: 2, text: "Not yours.")
        let published = try await harness.publishReply(call: call, turn: 1, text: "How can I help?")
        let reply = try await waiting.value
        #expect(reply == published)
        #expect(turns.openWaits == 0)
        #expect(harness.metric(TurnReplyMetricNames.replies) == 2)
        #expect(harness.metric(TurnReplyMetricNames.deadlineMisses) ?? 0 == 0)
        try await harness.drop()
    }

    @Test func aRepliedTurnIsAnsweredAgainFromTheCacheWithoutItsStream() async throws {
        let harness = try await Harness()
        try await harness.start()
        let call = Identifier.v7()
        let command = ReportCallerTurn.commandID(callID: call, turn: 3)
        let published = try await harness.publishReply(call: call, turn: 3, text: "Tuesday at ten works.")
        let first = try await harness.turns.reply(to: command, stream: harness.stream(of: call), deadline: .seconds(30))
        #expect(first == published)
        // The stream is gone: only the cache can answer a retried callback now.
        _ = try await harness.redis.execute(.del([harness.stream(of: call)]))
        let again = try await harness.turns.reply(to: command, stream: harness.stream(of: call), deadline: .seconds(30))
        #expect(again == published)
        #expect(harness.turns.openWaits == 0)
        try await harness.drop()
    }

    @Test func aReplyWrittenBeforeTheEdgeStartedIsLookedUpInTheCallsStream() async throws {
        let harness = try await Harness()
        let call = Identifier.v7()
        // Other calls' entries in front of it, in the same stream (a bounded read finds it).
        let published = try await harness.publishReply(call: call, turn: 1, text: "Welcome back.")
        for turn in 1...20 { try await harness.publishReply(call: Identifier.v7(), turn: turn, text: "Someone else.") }
        try await harness.start()
        let reply = try await harness.turns.reply(to: ReportCallerTurn.commandID(callID: call, turn: 1), stream: harness.stream(of: call),
                                                  deadline: .seconds(30))
        #expect(reply == published)
        #expect(harness.metric(TurnReplyMetricNames.lookups) ?? 0 >= 1)
        #expect(harness.turns.openWaits == 0)
        try await harness.drop()
    }

    @Test func aTurnJustPublishedForTheFirstTimeCostsNoRead() async throws {
        let harness = try await Harness()
        let call = Identifier.v7()
        // Written before the tail followed: a look-up would find it; a first wait does not look.
        try await harness.publishReply(call: call, turn: 1, text: "Stale.")
        // The tail starts at the millisecond Redis's clock says, which includes entries written
        // earlier in that millisecond (delivered twice rather than lost): let the clock move on.
        try await Task.sleep(for: .milliseconds(5))
        try await harness.start()
        let reply = try await harness.turns.reply(to: ReportCallerTurn.commandID(callID: call, turn: 1), stream: harness.stream(of: call),
                                                  deadline: .milliseconds(100), alreadyPublished: false)
        #expect(reply == nil)
        #expect(harness.metric(TurnReplyMetricNames.lookups) ?? 0 == 0)
        try await harness.drop()
    }

    @Test func aWaitWithNoReplyEndsAtItsDeadlineAndALateReplyIsCounted() async throws {
        let harness = try await Harness()
        try await harness.start()
        let call = Identifier.v7()
        let command = ReportCallerTurn.commandID(callID: call, turn: 1)
        let reply = try await harness.turns.reply(to: command, stream: harness.stream(of: call), deadline: .milliseconds(100))
        #expect(reply == nil)
        #expect(harness.turns.openWaits == 0)
        #expect(harness.metric(TurnReplyMetricNames.deadlineMisses) == 1)
        let late = try await harness.publishReply(call: call, turn: 1, text: "Sorry for the wait.")
        // The retry (attempt 2) is answered by the late reply.
        let retried = try await harness.turns.reply(to: command, stream: harness.stream(of: call), deadline: .seconds(30))
        #expect(retried == late)
        #expect(harness.metric(TurnReplyMetricNames.lateReplies) == 1)
        try await harness.drop()
    }

    @Test func aCancelledWaitThrowsAndLeavesNothing() async throws {
        let harness = try await Harness()
        try await harness.start()
        let call = Identifier.v7()
        let turns = harness.turns
        let stream = harness.stream(of: call)
        let waiting = Task { try await turns.reply(to: ReportCallerTurn.commandID(callID: call, turn: 1), stream: stream, deadline: .seconds(60)) }
        while turns.openWaits == 0 { try await Task.sleep(for: .milliseconds(2)) }
        waiting.cancel()
        await #expect(throws: CancellationError.self) { try await waiting.value }
        #expect(turns.openWaits == 0)
        try await harness.drop()
    }

    @Test func stoppingTheServiceAnswersOpenWaitsWithNoReply() async throws {
        let harness = try await Harness()
        try await harness.start()
        let call = Identifier.v7()
        let turns = harness.turns
        let stream = harness.stream(of: call)
        let waiting = Task { try await turns.reply(to: ReportCallerTurn.commandID(callID: call, turn: 1), stream: stream, deadline: .seconds(60)) }
        while turns.openWaits == 0 { try await Task.sleep(for: .milliseconds(2)) }
        await harness.stop()
        #expect(try await waiting.value == nil)
        #expect(turns.openWaits == 0)
        try await harness.drop()
    }

    @Test func theCacheKeepsAtMostItsCapacityDroppingTheOldest() {
        var map = BoundedMap<Int>(capacity: 3)
        let keys = (0..<5).map { _ in Identifier.v7() }
        for (i, key) in keys.enumerated() { map.insert(key, i) }
        #expect(map.count == 3)
        #expect(map[keys[0]] == nil && map[keys[1]] == nil)
        #expect(map[keys[2]] == 2 && map[keys[3]] == 3 && map[keys[4]] == 4)
        let removed = map.remove(keys[3])
        #expect(removed)
        map.insert(Identifier.v7(), 5)
        #expect(map.count <= 3)
    }
}
