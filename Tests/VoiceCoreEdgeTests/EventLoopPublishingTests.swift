import Foundation
import HTTPTypes
import Logging
import NIOCore
import NIOPosix
import Prometheus
import ServiceLifecycle
import Synchronization
import Testing
import VoiceCoreBus
import VoiceCoreEvents
import VoiceCoreRedis
import VoiceCoreTime
@testable import VoiceCoreEdge
import VoiceCoreSimulation
import VoiceCoreTestSupport

/// A redis-server of a test's own, to stop and start again (ports 23000–25999: see
/// EdgeTests.redisUnreachableAnswers503WithRetryAfter).
func privateRedis() -> RestartableRedis {
    RestartableRedis(ports: 23_000..<26_000, appendOnly: false)
}

struct TestError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

@Suite("The edge publishes from its event loops", .serialized)
struct EventLoopPublishingTests {
    let tenant = Identifier.v7()

    private func chunk(_ call: Identifier, _ sequence: Int) -> TranscriptChunk {
        TranscriptChunk(callID: call, sequence: sequence, track: .inbound, text: "chunk \(sequence)", isFinal: true, confidence: 0.9,
                        startOffsetMs: sequence * 1000, endOffsetMs: sequence * 1000 + 900)
    }

    private func envelope(_ call: Identifier, _ sequence: Int) -> EventEnvelope {
        EventEnvelope(chunk(call, sequence), tenant: tenant, source: "/test")
    }

    private static func redisConfiguration(_ url: String) throws -> RedisConfiguration {
        var configuration = try RedisConfiguration(url: url)
        configuration.commandTimeout = .seconds(10)
        return configuration
    }

    /// A publisher over a transport on `loops` loops of its own (its metrics in `registry`), and
    /// an admin connection to look at what Redis holds; all closed afterwards.
    private func withLoopPublisher(url: String = TestServers.redisURL, loops: Int = 2, registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry(),
                                   _ body: (Publisher, MultiThreadedEventLoopGroup, StreamNaming, RedisConnection) async throws -> Void) async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: loops)
        let transport = EventLoopRedisTransport(group: group, configuration: try Self.redisConfiguration(url), reconnectDelay: .milliseconds(100))
        let naming = StreamNaming(partitions: 4, prefix: "t\(UUID().uuidString.prefix(8).lowercased())")
        let publisher = Publisher(eventLoops: transport, configuration: PublisherConfiguration(source: "/test", naming: naming, replicaAcknowledgement: nil),
                                  metricsFactory: PrometheusMetricsFactory(registry: registry))
        let admin = try await RedisConnection.connect(try Self.redisConfiguration(url))
        var failure: (any Error)?
        do { try await body(publisher, group, naming, admin) } catch { failure = error }
        if let keys = try? await admin.scanAll(match: "\(naming.prefix):*"), !keys.isEmpty { _ = try? await admin.execute(.del(keys)) }
        await transport.close()
        try await group.shutdownGracefully()
        if let failure { throw failure }
    }

    private func entries(_ admin: RedisConnection, _ naming: StreamNaming) async throws -> [StreamEntry] {
        var all: [StreamEntry] = []
        for partition in 0..<naming.partitions { all += try await admin.execute(.xrange(naming.stream(.calls, kind: .event, partition: partition))) }
        return all
    }

    @Test func eachPublishIsAcknowledgedOnTheLoopThatSentItAndCalledInOrder() async throws {
        let registry = PrometheusCollectorRegistry()
        try await withLoopPublisher(registry: registry) { publisher, group, naming, admin in
            let calls = (0..<4).map { _ in Identifier.v7() }
            // Each loop publishes its calls' chunks as its handlers would: concurrently, resumed on the loop.
            typealias Published = (subject: String, events: [String], resumedOnLoop: Bool)
            let published: [Published] = try await withThrowingTaskGroup(of: [Published].self) { tasks in
                for (index, loop) in group.makeIterator().enumerated() {
                    tasks.addTask {
                        try await withTaskExecutorPreference(EventLoopTaskExecutor(group: loop)) {
                            try await withThrowingTaskGroup(of: Published.self) { handlers in
                                for (number, call) in calls.enumerated() where number % 2 == index {
                                    handlers.addTask {
                                        var result: Published = (envelope(call, 0).subject, [], true)
                                        for sequence in 0..<50 {
                                            let entry = try await publisher.publish(envelope(call, sequence), category: .calls, kind: .event)
                                            result.events.append(entry.eventID.description)
                                            result.resumedOnLoop = result.resumedOnLoop && loop.inEventLoop
                                        }
                                        return result
                                    }
                                }
                                return try await handlers.reduce(into: []) { $0.append($1) }
                            }
                        }
                    }
                }
                return try await tasks.reduce(into: []) { $0 += $1 }
            }
            #expect(published.count == 4)
            let resumedOnLoop = published.allSatisfy { $0.resumedOnLoop }
            #expect(resumedOnLoop, "every publish resumes its caller on the loop that sent it")
            let stored = try await entries(admin, naming)
            #expect(stored.count == 200)
            func field(_ name: String, _ entry: StreamEntry) -> String? {
                entry.fields?.first { $0.name == name }.map { String(decoding: $0.value, as: UTF8.self) }
            }
            for call in published {
                #expect(stored.filter { field("subject", $0) == call.subject }.compactMap { field("id", $0) } == call.events,
                        "one call's chunks in one partition, in the order published")
            }
            #expect(publisher.statistics.published == 200 && publisher.statistics.failed == 0)
            var text: [UInt8] = []
            registry.emit(into: &text)
            #expect(String(decoding: text, as: UTF8.self).contains("voicecore_bus_published_total 200"))
        }
    }

    @Test func deduplicatedPublishesOnTheLoopsPublishEachKeyOnceEvenWhenTheServerForgotTheScript() async throws {
        let server = privateRedis()
        try await server.start()
        try await withLoopPublisher(url: server.url) { publisher, _, naming, admin in
            let call = Identifier.v7()
            // A new server does not know the script: the first call is answered NOSCRIPT and sent again with its source.
            let first = try await publisher.publish(envelope(call, 0), category: .calls, kind: .event, deduplicationKey: "k1")
            #expect(!first.isDuplicate)
            try await admin.send("SCRIPT", "FLUSH")
            let again = try await publisher.publish(envelope(call, 0), category: .calls, kind: .event, deduplicationKey: "k1")
            #expect(again == .duplicate(first.entry))

            try await admin.send("SCRIPT", "FLUSH")
            let batch = (1..<6).map { envelope(call, $0) }
            let keys = ["a", "b", "a", "k1", "c"]
            let outcomes = try await publisher.publish(deduplicated: zip(batch, keys).map { ($0, .calls, .event, $1) }).map { try $0.get() }
            #expect(outcomes.map(\.isDuplicate) == [false, false, true, true, false])
            #expect(outcomes[2] == .duplicate(outcomes[0].entry) && outcomes[3] == .duplicate(first.entry))
            let stored = try await entries(admin, naming).compactMap { $0.fields?.first { $0.name == "id" }.map { String(decoding: $0.value, as: UTF8.self) } }
            #expect(stored == [first.entry.eventID.description] + [0, 1, 4].map { batch[$0].id.description }, "each key once, in order")
            #expect(publisher.statistics.published == 4, "duplicates are not counted as published")
        }
        try await server.stop()
    }

    @Test func aPublishRedisRefusesFailsAloneAndLeavesNoKeySoTheRetryPublishes() async throws {
        try await withLoopPublisher { publisher, _, naming, admin in
            let call = Identifier.v7()
            let stream = naming.stream(for: .calls, kind: .event, tenant: tenant, subject: envelope(call, 0).subject)
            try await admin.send("SET", .string(stream), "not a stream")
            await #expect(throws: RedisError.self) {
                _ = try await publisher.publish(envelope(call, 0), category: .calls, kind: .event, deduplicationKey: "retry-me")
            }
            await #expect(throws: RedisError.self) {
                _ = try await publisher.publish(envelope(call, 0), category: .calls, kind: .event)
            }
            #expect(publisher.statistics.failed == 2)
            _ = try await admin.execute(.del([stream]))
            let retried = try await publisher.publish(envelope(call, 0), category: .calls, kind: .event, deduplicationKey: "retry-me")
            #expect(!retried.isDuplicate, "the failed publish left no deduplication key behind")
            #expect(try await admin.execute(.xrange(stream)).count == 1)
        }
    }

    @Test func publishesFailAsAnOutageWhileRedisIsDownAndSucceedOnceItIsBack() async throws {
        let server = privateRedis()
        try await server.start()
        try await withLoopPublisher(url: server.url) { publisher, _, _, _ in
            let call = Identifier.v7()
            _ = try await publisher.publish(envelope(call, 0), category: .calls, kind: .event)
            try await server.stop()
            do {
                _ = try await publisher.publish(envelope(call, 1), category: .calls, kind: .event, deduplicationKey: "during-outage")
                Issue.record("a publish succeeded with Redis down")
            } catch let error as RedisError {
                #expect(error.isOutage, "\(error)")
            }
            try await server.start()
            var published: DeduplicatedOutcome?
            for _ in 0..<50 where published == nil {
                published = try? await publisher.publish(envelope(call, 1), category: .calls, kind: .event, deduplicationKey: "during-outage")
                if published == nil { try await Task.sleep(for: .milliseconds(50)) }
            }
            #expect(published?.isDuplicate == false, "the next publish after Redis returned reconnects and publishes")
        }
        try await server.stop()
    }

    @Test func theServingEdgePublishesOnceAnswers503WithoutRedisAndRecovers() async throws {
        let server = privateRedis()
        try await server.start()
        let fixture = try await EdgeFixture(requestsPerSecond: 1000, redisURL: server.url)
        let edge = Edge(configuration: EdgeConfiguration(host: "127.0.0.1", port: 0, publicBaseURL: EdgeFixture.publicBase, tenantCacheTTL: .zero),
                        publisher: fixture.publisher, lookup: fixture.directory)
        let port = Mutex<Int?>(nil)
        let services = ServiceGroup(services: [edge.application(onServerRunning: { channel in port.withLock { $0 = channel.localAddress?.port } })],
                                    logger: Logger(label: "test.edge"))
        let running = Task { try await services.run() }
        defer { running.cancel() }
        let deadline = ContinuousClock.now + .seconds(10)
        while port.withLock({ $0 }) == nil {
            guard ContinuousClock.now < deadline else { throw TestError("the edge did not start listening") }
            try await Task.sleep(for: .milliseconds(10))
        }
        let listening = try #require(port.withLock { $0 })
        let load = WebhookLoadClient(host: "127.0.0.1", port: listening, maximumConnections: 8)
        func post(_ parameters: [(String, String)]) async throws -> Int {
            let (uri, headers, body) = fixture.twilio("status", parameters)
            return try await load.send(WebhookLoadClient.Request(post: uri, host: "edge.example.com", headers: headers.map { ($0.name.rawName, $0.value) },
                                                                 body: String(buffer: body)))
        }
        // Forty callbacks at once, each twice: one command each.
        let callbacks = (0..<40).map { fixture.statusCallback(callSid: String(format: "CA%032x", $0), status: "ringing", sequence: 1) }
        let statuses = try await withThrowingTaskGroup(of: Int.self) { tasks in
            for callback in callbacks + callbacks { tasks.addTask { try await post(callback) } }
            return try await tasks.reduce(into: []) { $0.append($1) }
        }
        #expect(statuses == Array(repeating: 200, count: 80))
        let stored = try await fixture.commands()
        #expect(stored.count == 40)
        #expect(Set(stored.map(\.subject)).count == 40)

        try await server.stop()
        let lost = fixture.statusCallback(callSid: "CA00000000000000000000000000000999", status: "completed", sequence: 2)
        #expect(try await post(lost) == 503, "never 2xx for a command Redis did not store")

        try await server.start()
        var status = 0
        for _ in 0..<50 where status != 200 {
            status = try await post(lost)
            if status != 200 { try await Task.sleep(for: .milliseconds(100)) }
        }
        #expect(status == 200, "the edge publishes again once Redis is back")
        // The fixture's own connection broke with the restart.
        if (try? await fixture.redis.execute(.ping())) == nil { try await fixture.redis.reconnect() }
        #expect(try await fixture.commands().count == 1, "the restarted Redis (no persistence) holds the retried callback only")
        await load.shutdown()
        await services.triggerGracefulShutdown()
        _ = await running.result
        try await fixture.drop()
        try await server.stop()
    }
}
