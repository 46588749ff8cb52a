import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import Testing
import VoiceCoreEvents
import VoiceCoreRedis
import VoiceCoreTime
@testable import VoiceCoreBus

/// A runner in a service group, stopped gracefully at the end of a test.
struct RunningConsumer {
    let runner: ConsumerGroupRunner
    let group: ServiceGroup
    let task: Task<Void, any Error>

    static func start(_ configuration: ConsumerConfiguration, _ handlers: MessageHandlers) throws -> RunningConsumer {
        let runner = ConsumerGroupRunner(redis: try RedisConfiguration(url: TestRedis.url), configuration: configuration, handlers: handlers)
        let group = ServiceGroup(services: [runner], logger: Logger(label: "test"))
        let task = Task { try await group.run() }
        return RunningConsumer(runner: runner, group: group, task: task)
    }

    func stop() async throws {
        await group.triggerGracefulShutdown()
        try await task.value
    }
}

/// Waits (up to a generous deadline) until `condition` holds; records a failure otherwise.
func eventually(_ what: String, within limit: Duration = .seconds(15), _ condition: () async throws -> Bool) async throws {
    let clock = ContinuousClock()
    let deadline = clock.now + limit
    while clock.now < deadline {
        if try await condition() { return }
        try await Task.sleep(for: .milliseconds(20))
    }
    Issue.record("timed out waiting until \(what)")
}

/// What handlers saw, shared with the test.
final class Recorder: Sendable {
    private let seen = Mutex<[String: [Int]]>([:])
    func record(_ key: String, _ value: Int) { seen.withLock { $0[key, default: []].append(value) } }
    var all: [String: [Int]] { seen.withLock { $0 } }
    var count: Int { seen.withLock { $0.values.reduce(0) { $0 + $1.count } } }
}

@Suite("Consumer group runner against a real Redis")
struct ConsumerGroupRunnerTests {
    let tenant = Identifier.v7()

    private func chunk(_ call: Identifier, _ sequence: Int, text: String = "hello") -> TranscriptChunk {
        TranscriptChunk(callID: call, sequence: sequence, track: .inbound, text: text, isFinal: true, confidence: 0.9, startOffsetMs: 0, endOffsetMs: 1)
    }

    private func fixture(partitions: Int = 4) async throws -> (RedisConnection, StreamNaming, Publisher) {
        let redis = try await TestRedis.connect()
        let naming = StreamNaming(partitions: partitions, prefix: TestRedis.prefix())
        return (redis, naming, Publisher(connection: redis, configuration: PublisherConfiguration(source: "/test", naming: naming)))
    }

    private func configuration(_ naming: StreamNaming, group: String = "g", consumer: String = "c1") -> ConsumerConfiguration {
        var configuration = ConsumerConfiguration(group: group, streams: naming.streams(.calls, kind: .event), consumer: consumer)
        configuration.block = .milliseconds(200)
        configuration.retryDelay = .milliseconds(5)
        configuration.claimInterval = .milliseconds(100)
        return configuration
    }

    private func pending(_ redis: RedisConnection, _ naming: StreamNaming, group: String = "g") async throws -> Int {
        var total = 0
        for stream in naming.streams(.calls, kind: .event) { total += try await redis.execute(.xpending(stream, group: group)).count }
        return total
    }

    @Test func handlesEveryEntryInOrderPerCallAndAcknowledgesIt() async throws {
        let (redis, naming, publisher) = try await fixture()
        let calls = (0..<10).map { _ in Identifier.v7() }
        for sequence in 0..<30 { for call in calls { try await publisher.publish(chunk(call, sequence), tenant: tenant) } }

        let recorder = Recorder()
        var handlers = MessageHandlers()
        handlers.on(TranscriptChunk.self) { _, chunk in recorder.record(chunk.callID.description, chunk.sequence) }
        let consumer = try RunningConsumer.start(configuration(naming), handlers)
        try await eventually("300 entries are handled") { recorder.count == 300 }
        try await eventually("nothing is pending") { try await pending(redis, naming) == 0 }
        try await consumer.stop()

        for (_, sequences) in recorder.all { #expect(sequences == Array(0..<30)) }
        #expect(consumer.runner.statistics.handled == 300)
        _ = try await redis.execute(.del(naming.streams(.calls, kind: .event)))
    }

    @Test("a backlog, read ahead batch after batch, is handled once per entry and in order per call")
    func aBacklogReadAheadIsHandledOnceAndInOrder() async throws {
        let (redis, naming, publisher) = try await fixture(partitions: 2)
        let calls = (0..<4).map { _ in Identifier.v7() }
        let batch = (0..<250).flatMap { sequence in calls.map { (EventEnvelope(chunk($0, sequence), tenant: tenant, source: "/test"), StreamCategory.calls, MessageKind.event) } }
        for result in await publisher.publish(batch: batch) { _ = try result.get() }

        let recorder = Recorder()
        var handlers = MessageHandlers()
        handlers.on(TranscriptChunk.self) { _, chunk in recorder.record(chunk.callID.description, chunk.sequence) }
        var settings = configuration(naming)
        // Reads of more entries than are handled inline: each is followed by a read ahead.
        settings.batchSize = 100
        let consumer = try RunningConsumer.start(settings, handlers)
        try await eventually("1,000 entries are handled") { recorder.count >= 1000 }
        try await eventually("nothing is pending") { try await pending(redis, naming) == 0 }
        try await consumer.stop()
        #expect(recorder.count == 1000)
        for call in calls { #expect(recorder.all[call.description] == Array(0..<250)) }
        _ = try await redis.execute(.del(naming.streams(.calls, kind: .event)))
    }

    @Test("batches slower than the claim idle time are handled once each: the consumer never claims back its own entries")
    func slowBatchesAreNotClaimedBackByTheirOwnConsumer() async throws {
        let (redis, naming, publisher) = try await fixture(partitions: 1)
        let call = Identifier.v7()
        let batch = (0..<300).map { (EventEnvelope(chunk(call, $0), tenant: tenant, source: "/test"), StreamCategory.calls, MessageKind.event) }
        for result in await publisher.publish(batch: batch) { _ = try result.get() }
        let recorder = Recorder()
        var handlers = MessageHandlers()
        handlers.on(TranscriptChunk.self) { _, chunk in
            // A batch of 100 takes over 500 ms: longer than claimIdle, as a batch waiting out an
            // outage does. Its entries, and those read ahead meanwhile, are idle that long.
            try await Task.sleep(for: .milliseconds(5))
            recorder.record("seq", chunk.sequence)
        }
        var settings = configuration(naming)
        settings.batchSize = 100
        settings.claimIdle = .milliseconds(200)
        let consumer = try RunningConsumer.start(settings, handlers)
        try await eventually("300 entries are handled") { recorder.count >= 300 }
        try await eventually("nothing is pending") { try await pending(redis, naming) == 0 }
        try await consumer.stop()
        #expect(recorder.all["seq"] == Array(0..<300), "each entry once, in order")
        #expect(consumer.runner.statistics.claimed == 0)
        _ = try await redis.execute(.del(naming.streams(.calls, kind: .event)))
    }

    @Test("a shutdown while reading ahead handles and acknowledges what was read, in order, and reads no more")
    func aShutdownWhileReadingAheadLeavesNothingPending() async throws {
        let (redis, naming, publisher) = try await fixture(partitions: 1)
        let call = Identifier.v7()
        let batch = (0..<2000).map { (EventEnvelope(chunk(call, $0), tenant: tenant, source: "/test"), StreamCategory.calls, MessageKind.event) }
        for result in await publisher.publish(batch: batch) { _ = try result.get() }
        let recorder = Recorder()
        var handlers = MessageHandlers()
        handlers.on(TranscriptChunk.self) { _, chunk in
            try await Task.sleep(for: .milliseconds(1))
            recorder.record("seq", chunk.sequence)
        }
        var settings = configuration(naming)
        settings.batchSize = 100
        let consumer = try RunningConsumer.start(settings, handlers)
        try await eventually("150 entries are handled") { recorder.count >= 150 }
        try await consumer.stop()
        let handled = recorder.all["seq"] ?? []
        #expect(handled == Array(0..<handled.count), "a prefix of the stream, each entry once")
        #expect(handled.count < 2000)
        #expect(try await pending(redis, naming) == 0)
        #expect(consumer.runner.statistics.handled == handled.count)
        _ = try await redis.execute(.del(naming.streams(.calls, kind: .event)))
    }

    @Test("with a read interval, a busy stream is read in a few large batches, every entry in order")
    func aReadIntervalReadsABusyStreamInFewerBatches() async throws {
        let (redis, naming, publisher) = try await fixture(partitions: 1)
        let call = Identifier.v7()
        let recorder = Recorder()
        var handlers = MessageHandlers()
        handlers.on(TranscriptChunk.self) { _, chunk in recorder.record("seq", chunk.sequence) }
        handlers.aroundPartitionBatch { _, body in
            recorder.record("batch", 0)
            try await body()
        }
        var settings = configuration(naming)
        settings.readInterval = .milliseconds(250)
        let consumer = try RunningConsumer.start(settings, handlers)
        // One entry every 10 ms (about 0.6 s on an idle machine): read at every entry, that is 60 batches.
        let clock = ContinuousClock()
        let start = clock.now
        for sequence in 0..<60 {
            try await publisher.publish(chunk(call, sequence), tenant: tenant)
            try await Task.sleep(for: .milliseconds(10))
        }
        let publishing = clock.now - start
        try await eventually("60 entries are handled") { recorder.all["seq"]?.count == 60 }
        try await eventually("nothing is pending") { try await pending(redis, naming) == 0 }
        try await consumer.stop()
        #expect(recorder.all["seq"] == Array(0..<60))
        // Reads start at least 250 ms apart, except right after one that waited for the stream
        // (a quiet moment): at most two reads per interval, plus the first ones.
        let batches = recorder.all["batch"]?.count ?? 0
        let bound = Int(2 * (publishing / .milliseconds(250)).rounded(.up)) + 3
        #expect(batches <= bound, "\(batches) batches for 60 entries published over \(publishing) at one read per 250 ms")
        _ = try await redis.execute(.del(naming.streams(.calls, kind: .event)))
    }

    @Test func aPartitionBatchWhoseScopeFailsIsNotAcknowledgedAndIsHandledAgain() async throws {
        let (redis, naming, publisher) = try await fixture(partitions: 1)
        let call = Identifier.v7()
        for sequence in 0..<5 { try await publisher.publish(chunk(call, sequence), tenant: tenant) }
        let recorder = Recorder()
        let failures = Mutex(1)
        var handlers = MessageHandlers()
        handlers.on(TranscriptChunk.self) { _, chunk in recorder.record("handled", chunk.sequence) }
        handlers.aroundPartitionBatch { _, body in
            try await body()
            // The batch's deferred effects could not be applied (Redis went away once).
            let fail = failures.withLock { remaining -> Bool in
                remaining -= 1
                return remaining >= 0
            }
            if fail { throw RedisError(kind: .connection, message: "effects not applied") }
            recorder.record("applied", 0)
        }
        let consumer = try RunningConsumer.start(configuration(naming), handlers)
        try await eventually("the batch is applied") { recorder.all["applied"] != nil }
        try await eventually("nothing is pending") { try await pending(redis, naming) == 0 }
        try await consumer.stop()
        let handled = recorder.all["handled"] ?? []
        #expect(handled.count == 10, "each entry handled twice: \(handled)")
        #expect(Array(handled.prefix(5)) == [0, 1, 2, 3, 4] && Array(handled.suffix(5)) == [0, 1, 2, 3, 4], "in order both times")
        _ = try await redis.execute(.del(naming.streams(.calls, kind: .event)))
    }

    @Test func aPoisonEntryIsDeadLetteredAfterMaxDeliveriesAndLaterEntriesFlow() async throws {
        let (redis, naming, publisher) = try await fixture(partitions: 1)
        let call = Identifier.v7()
        let poison = try await publisher.publish(chunk(call, 0, text: "poison"), tenant: tenant)
        for sequence in 1...5 { try await publisher.publish(chunk(call, sequence), tenant: tenant) }

        struct Refused: Error {}
        let recorder = Recorder()
        var handlers = MessageHandlers()
        handlers.on(TranscriptChunk.self) { message, chunk in
            recorder.record("delivery", message.deliveryCount)
            if chunk.text == "poison" { throw Refused() }
            recorder.record("handled", chunk.sequence)
        }
        var settings = configuration(naming)
        settings.maxDeliveries = 3
        let consumer = try RunningConsumer.start(settings, handlers)
        try await eventually("the entries behind the poison are handled") { recorder.all["handled"]?.count == 5 }
        try await consumer.stop()

        #expect(recorder.all["handled"] == Array(1...5))
        // Three deliveries of the poison entry, counted by Redis.
        #expect(recorder.all["delivery"]?.prefix(3) == [1, 2, 3])
        let deadLetters = try await redis.execute(.xrange(settings.deadLetterStream(of: poison.stream)))
        #expect(deadLetters.count == 1)
        let letter = try #require(deadLetters.first)
        #expect(letter["dlq.origin_stream"] == poison.stream)
        #expect(letter["dlq.origin_id"] == poison.entryID.description)
        #expect(letter["dlq.attempts"] == "3")
        #expect(letter["dlq.reason"]?.contains("handler failed") == true)
        #expect(letter["dlq.error"]?.contains("Refused") == true)
        #expect(letter["id"] == poison.eventID.description)
        #expect(letter["type"] == TranscriptChunk.type)
        #expect(try await pending(redis, naming) == 0)
        #expect(consumer.runner.statistics.deadLettered == 1)
        _ = try await redis.execute(.del(naming.streams(.calls, kind: .event) + [settings.deadLetterStream(of: poison.stream)]))
    }

    @Test func anUndecodableEntryIsDeadLetteredAtOnce() async throws {
        let (redis, naming, publisher) = try await fixture(partitions: 1)
        let stream = naming.stream(.calls, kind: .event, partition: 0)
        let garbage = try await redis.execute(.xadd(stream, fields: [("specversion", "1.0"), ("type", "voicecore.call.transcript-chunk"), ("data", "{")]))
        try await publisher.publish(chunk(.v7(), 7), tenant: tenant)
        let recorder = Recorder()
        var handlers = MessageHandlers()
        handlers.on(TranscriptChunk.self) { _, chunk in recorder.record("handled", chunk.sequence) }
        let settings = configuration(naming)
        let consumer = try RunningConsumer.start(settings, handlers)
        try await eventually("the valid entry is handled") { recorder.count == 1 }
        try await eventually("nothing is pending") { try await pending(redis, naming) == 0 }
        try await consumer.stop()
        let letters = try await redis.execute(.xrange(settings.deadLetterStream(of: stream)))
        #expect(letters.map { $0["dlq.origin_id"] } == [garbage.description])
        #expect(letters.first?["dlq.reason"] == "undecodable")
        #expect(letters.first?["dlq.attempts"] == "1")
        _ = try await redis.execute(.del([stream, settings.deadLetterStream(of: stream)]))
    }

    @Test func entriesOfADeadConsumerAreClaimedAndHandled() async throws {
        let (redis, naming, publisher) = try await fixture(partitions: 2)
        let call = Identifier.v7()
        let settings = configuration(naming, consumer: "live")
        for stream in settings.streams { try await redis.execute(.xgroupCreate(stream, group: "g", start: .beginning)) }
        for sequence in 0..<10 { try await publisher.publish(chunk(call, sequence), tenant: tenant) }
        // A consumer that read the entries and died before acknowledging them.
        _ = try await redis.execute(.xreadgroup(group: "g", consumer: "dead", streams: settings.streams.map { ($0, .newEntries) }))

        var claiming = settings
        claiming.claimIdle = .milliseconds(200)
        let recorder = Recorder()
        var handlers = MessageHandlers()
        handlers.on(TranscriptChunk.self) { _, chunk in recorder.record("seq", chunk.sequence) }
        let consumer = try RunningConsumer.start(claiming, handlers)
        try await eventually("the dead consumer's entries are handled") { recorder.count == 10 }
        try await eventually("nothing is pending") { try await pending(redis, naming) == 0 }
        try await consumer.stop()
        #expect(recorder.all["seq"] == Array(0..<10))
        #expect(consumer.runner.statistics.claimed == 10)
        _ = try await redis.execute(.del(naming.streams(.calls, kind: .event)))
    }

    @Test func aRestartedConsumerHandlesItsOwnPendingEntriesFirst() async throws {
        let (redis, naming, publisher) = try await fixture(partitions: 1)
        let call = Identifier.v7()
        let settings = configuration(naming, consumer: "me")
        for stream in settings.streams { try await redis.execute(.xgroupCreate(stream, group: "g", start: .beginning)) }
        for sequence in 0..<5 { try await publisher.publish(chunk(call, sequence), tenant: tenant) }
        // "me" read them, then crashed before acknowledging.
        _ = try await redis.execute(.xreadgroup(group: "g", consumer: "me", streams: settings.streams.map { ($0, .newEntries) }))
        for sequence in 5..<8 { try await publisher.publish(chunk(call, sequence), tenant: tenant) }

        let recorder = Recorder()
        var handlers = MessageHandlers()
        handlers.on(TranscriptChunk.self) { message, chunk in
            recorder.record("seq", chunk.sequence)
            recorder.record("delivery", message.deliveryCount)
        }
        let consumer = try RunningConsumer.start(settings, handlers)
        try await eventually("all eight are handled") { recorder.all["seq"]?.count == 8 }
        try await consumer.stop()
        #expect(recorder.all["seq"] == Array(0..<8))
        // The first five were delivered before the crash, so this was their second delivery.
        #expect(recorder.all["delivery"] == [2, 2, 2, 2, 2, 1, 1, 1])
        _ = try await redis.execute(.del(naming.streams(.calls, kind: .event)))
    }

    @Test func aDeletedStreamsGroupIsCreatedAgain() async throws {
        let (redis, naming, publisher) = try await fixture(partitions: 1)
        let call = Identifier.v7()
        let recorder = Recorder()
        var handlers = MessageHandlers()
        handlers.on(TranscriptChunk.self) { _, chunk in recorder.record("seq", chunk.sequence) }
        let consumer = try RunningConsumer.start(configuration(naming), handlers)
        try await publisher.publish(chunk(call, 0), tenant: tenant)
        try await eventually("the first entry is handled") { recorder.count == 1 }
        // The stream and its group disappear (deleted, or Redis restarted without data).
        _ = try await redis.execute(.del(naming.streams(.calls, kind: .event)))
        try await Task.sleep(for: .milliseconds(300))
        try await publisher.publish(chunk(call, 1), tenant: tenant)
        try await eventually("entries after the loss are handled") { recorder.count == 2 }
        try await consumer.stop()
        #expect(recorder.all["seq"] == [0, 1])
        _ = try await redis.execute(.del(naming.streams(.calls, kind: .event)))
    }

    @Test func gracefulShutdownFinishesTheBatchInHand() async throws {
        let (redis, naming, publisher) = try await fixture(partitions: 1)
        let call = Identifier.v7()
        for sequence in 0..<20 { try await publisher.publish(chunk(call, sequence), tenant: tenant) }
        let recorder = Recorder()
        var handlers = MessageHandlers()
        handlers.on(TranscriptChunk.self) { _, chunk in
            try await Task.sleep(for: .milliseconds(10))
            recorder.record("seq", chunk.sequence)
        }
        var settings = configuration(naming)
        settings.batchSize = 20
        let consumer = try RunningConsumer.start(settings, handlers)
        try await eventually("handling has begun") { recorder.count > 0 }
        try await consumer.stop()
        // Whatever was handled was acknowledged; nothing handled is left pending.
        let handled = recorder.count
        #expect(handled == 20)
        #expect(try await pending(redis, naming) == 0)
        _ = try await redis.execute(.del(naming.streams(.calls, kind: .event)))
    }
}

@Suite("Consumer resilience")
struct ConsumerResilienceTests {
    @Test func killedConnectionsAreRecoveredAndNothingIsLost() async throws {
        let redis = try await TestRedis.connect()
        let naming = StreamNaming(partitions: 2, prefix: TestRedis.prefix())
        let publisher = Publisher(connection: redis, configuration: PublisherConfiguration(source: "/test", naming: naming))
        let tenant = Identifier.v7()
        let call = Identifier.v7()
        let seen = Recorder()
        var handlers = MessageHandlers()
        handlers.on(TranscriptChunk.self) { _, chunk in seen.record("seq", chunk.sequence) }
        var configuration = ConsumerConfiguration(group: "resilient", streams: naming.streams(.calls, kind: .event), consumer: "r1")
        configuration.block = .milliseconds(100)
        let consumer = try RunningConsumer.start(configuration, handlers)
        for sequence in 0..<10 {
            try await publisher.publish(TranscriptChunk(callID: call, sequence: sequence, track: .inbound, text: "t", isFinal: true, confidence: 1, startOffsetMs: 0, endOffsetMs: 1), tenant: tenant)
        }
        try await eventually("the first ten are handled") { seen.count == 10 }

        // Kill both of the runner's connections (found by their client names).
        #expect(try await killClients(named: "vc-consumer:resilient:r1:", on: redis) == 2)

        for sequence in 10..<20 {
            try await publisher.publish(TranscriptChunk(callID: call, sequence: sequence, track: .inbound, text: "t", isFinal: true, confidence: 1, startOffsetMs: 0, endOffsetMs: 1), tenant: tenant)
        }
        try await eventually("the runner reconnects and handles the rest") { Set(seen.all["seq"] ?? []) == Set(0..<20) }
        // Acknowledgements follow the handlers: wait for them too.
        try await eventually("nothing is left pending") {
            var pending = 0
            for stream in naming.streams(.calls, kind: .event) { pending += try await redis.execute(.xpending(stream, group: "resilient")).count }
            return pending == 0
        }
        try await consumer.stop()
        _ = try await redis.execute(.del(naming.streams(.calls, kind: .event)))
    }

    @Test("connections killed while a backlog is read ahead: nothing is lost and the partition's order holds")
    func killedConnectionsWhileReadingAheadLoseNothingAndKeepOrder() async throws {
        let redis = try await TestRedis.connect()
        let naming = StreamNaming(partitions: 1, prefix: TestRedis.prefix())
        let publisher = Publisher(connection: redis, configuration: PublisherConfiguration(source: "/test", naming: naming))
        let tenant = Identifier.v7()
        let call = Identifier.v7()
        let batch = (0..<2000).map {
            (EventEnvelope(TranscriptChunk(callID: call, sequence: $0, track: .inbound, text: "t", isFinal: true, confidence: 1, startOffsetMs: 0, endOffsetMs: 1),
                           tenant: tenant, source: "/test"), StreamCategory.calls, MessageKind.event)
        }
        for result in await publisher.publish(batch: batch) { _ = try result.get() }
        let seen = Recorder()
        var handlers = MessageHandlers()
        handlers.on(TranscriptChunk.self) { _, chunk in
            try await Task.sleep(for: .microseconds(500))
            seen.record("seq", chunk.sequence)
        }
        var configuration = ConsumerConfiguration(group: "resilient", streams: naming.streams(.calls, kind: .event), consumer: "r2")
        configuration.block = .milliseconds(100)
        // Reads of 100: each is followed by a read ahead while it is handled.
        configuration.batchSize = 100
        let consumer = try RunningConsumer.start(configuration, handlers)
        try await eventually("300 are handled") { seen.count >= 300 }
        #expect(try await killClients(named: "vc-consumer:resilient:r2:", on: redis) == 2)
        try await eventually("the runner reconnects and handles the rest", within: .seconds(60)) { Set(seen.all["seq"] ?? []) == Set(0..<2000) }
        try await eventually("nothing is left pending") { try await redis.execute(.xpending(naming.streams(.calls, kind: .event)[0], group: "resilient")).count == 0 }
        try await consumer.stop()
        // Entries handled but not acknowledged when the connections died come again (in order);
        // no entry is ever handled before every earlier one was.
        let handled = seen.all["seq"] ?? []
        var furthest = -1
        var skips: [(after: Int, handled: Int)] = []
        for sequence in handled {
            if sequence > furthest + 1 { skips.append((furthest, sequence)) }
            furthest = max(furthest, sequence)
        }
        #expect(skips.isEmpty, "handled before an earlier entry: \(skips.prefix(5))")
        _ = try await redis.execute(.del(naming.streams(.calls, kind: .event)))
    }
}

/// Kills the connections whose client name starts with `prefix`; returns how many.
func killClients(named prefix: String, on redis: RedisConnection) async throws -> Int {
    let clients = try await redis.send("CLIENT", "LIST").string ?? ""
    let ids = clients.split(separator: "\n").filter { $0.contains("name=\(prefix)") }.compactMap { line in
        line.split(separator: " ").first { $0.hasPrefix("id=") }.flatMap { Int($0.dropFirst(3)) }
    }
    for id in ids { try await redis.send("CLIENT", "KILL", "ID", .integer(id)) }
    return ids.count
}

/// A Redis of the test's own, on a free port, that the test may kill.
final class PrivateRedis: @unchecked Sendable {
    let process = Process()
    let port: Int

    init() throws {
        // Apart from the other suites' test ports (see EdgeTests.redisUnreachableAnswers503WithRetryAfter).
        port = Int.random(in: 20_000..<23_000)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("vc-redis-\(port)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        process.executableURL = URL(fileURLWithPath: "/usr/bin/redis-server")
        process.arguments = ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", directory.path]
        process.standardOutput = FileHandle.nullDevice
        try process.run()
    }

    var url: String { "redis://127.0.0.1:\(port)" }

    func kill() {
        Foundation.kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }
}

@Suite("Consumer during a Redis outage")
struct RedisOutageTests {
    @Test(.timeLimit(.minutes(1))) func gracefulShutdownDoesNotWaitForADeadRedis() async throws {
        let redisServer = try PrivateRedis()
        defer { redisServer.kill() }
        try await eventually("the private Redis answers") {
            (try? await RedisConnection.connect(RedisConfiguration(url: redisServer.url))) != nil
        }
        let naming = StreamNaming(partitions: 1, prefix: "outage")
        var configuration = ConsumerConfiguration(group: "g", streams: naming.streams(.calls, kind: .event), consumer: "c")
        configuration.block = .milliseconds(100)
        let runner = ConsumerGroupRunner(redis: try RedisConfiguration(url: redisServer.url), configuration: configuration, handlers: MessageHandlers())
        let group = ServiceGroup(services: [runner], logger: Logger(label: "test"))
        let task = Task { try await group.run() }
        try await Task.sleep(for: .milliseconds(300))
        redisServer.kill()
        try await Task.sleep(for: .milliseconds(300))

        let clock = ContinuousClock()
        let start = clock.now
        await group.triggerGracefulShutdown()
        _ = try? await task.value
        #expect(clock.now - start < .seconds(8), "shutdown took \(clock.now - start) with Redis down")
    }
}
