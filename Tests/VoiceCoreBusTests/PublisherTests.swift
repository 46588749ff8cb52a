import Foundation
import Testing
import VoiceCoreEvents
import VoiceCoreRedis
import VoiceCoreTime
@testable import VoiceCoreBus

enum TestRedis {
    static var url: String { ProcessInfo.processInfo.environment["REDIS_URL"] ?? "redis://127.0.0.1:16379/1" }

    static func connect() async throws -> RedisConnection {
        do {
            return try await RedisConnection.connect(RedisConfiguration(url: url))
        } catch {
            Issue.record("Redis is not reachable at \(url): \(error). Run the tests with `tools/test`, which starts it.")
            throw error
        }
    }

    /// A stream prefix no other test uses, so tests can run in parallel.
    static func prefix() -> String { "t\(UUID().uuidString.prefix(8).lowercased())" }

    /// A connection to a Redis server of the test's own, for tests that change server-wide state
    /// (the script cache) which other tests running in parallel rely on.
    static func withPrivateServer(_ body: (RedisConnection) async throws -> Void) async throws {
        // Apart from the other suites' test ports and below the ephemeral range (see
        // EdgeTests.redisUnreachableAnswers503WithRetryAfter).
        let port = Int.random(in: 12_000..<15_000)
        let server = Process()
        server.executableURL = URL(fileURLWithPath: "/usr/bin/redis-server")
        server.arguments = ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", FileManager.default.temporaryDirectory.path]
        server.standardOutput = FileHandle.nullDevice
        try server.run()
        defer { kill(server.processIdentifier, SIGKILL) }
        for _ in 0..<100 {
            if let connection = try? await RedisConnection.connect(RedisConfiguration(url: "redis://127.0.0.1:\(port)")) {
                try await body(connection)
                return
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        Issue.record("redis-server on port \(port) did not start")
    }
}

@Suite("Publisher against a real Redis")
struct PublisherTests {
    let tenant = Identifier.v7()

    private func chunk(_ call: Identifier, _ sequence: Int) -> TranscriptChunk {
        TranscriptChunk(callID: call, sequence: sequence, track: .inbound, text: "chunk \(sequence)", isFinal: true, confidence: 0.9,
                        startOffsetMs: sequence * 1000, endOffsetMs: sequence * 1000 + 900)
    }

    @Test func publishesToThePartitionOfTheSubjectAndDecodesBack() async throws {
        let redis = try await TestRedis.connect()
        let naming = StreamNaming(partitions: 8, prefix: TestRedis.prefix())
        let publisher = Publisher(connection: redis, configuration: PublisherConfiguration(source: "/test", naming: naming))
        let call = CallID.derive(tenant: tenant, provider: .twilio, providerCallID: "CA-test")
        let cause = Identifier.v7()
        let published = try await publisher.publish(chunk(call, 0), tenant: tenant, correlationID: cause, causationID: cause)

        #expect(published.stream == naming.stream(for: .calls, kind: .event, tenant: tenant, subject: call.description))
        let entries = try await redis.execute(.xrange(published.stream))
        #expect(entries.map(\.id) == [published.entryID])
        let fields = (entries[0].fields ?? []).map { EnvelopeField(name: $0.name, value: $0.value) }
        let (envelope, decoded) = try MessageRegistry.standard.decode(fields: fields, as: TranscriptChunk.self)
        #expect(decoded == chunk(call, 0))
        #expect(envelope.id == published.eventID)
        #expect(envelope.source == "/test")
        #expect(envelope.causationID == cause)
        _ = try await redis.execute(.del(naming.streams(.calls, kind: .event)))
    }

    @Test func withReplicaAcknowledgementAWriteNoReplicaConfirmedIsNotPublished() async throws {
        // The test server has no replica: WAIT 1 answers 0, so every publish must fail as
        // unreplicated (the entry is in the stream; the caller treats it as not published).
        let redis = try await TestRedis.connect()
        let naming = StreamNaming(partitions: 4, prefix: TestRedis.prefix())
        let publisher = Publisher(connection: redis, configuration: PublisherConfiguration(
            source: "/test", naming: naming, replicaAcknowledgement: ReplicaAcknowledgement(replicas: 1, timeout: .milliseconds(50))))
        let call = Identifier.v7()
        let error = await #expect(throws: RedisError.self) { try await publisher.publish(chunk(call, 0), tenant: tenant) }
        #expect(error?.kind == .replication)
        #expect(error?.message.contains("acknowledged by 0 of 1 replicas") == true)
        let results = await publisher.publish(batch: [(EventEnvelope(chunk(call, 1), tenant: tenant, source: "/test"), .calls, .event)])
        #expect(results.count == 1)
        if case .failure(let failure as RedisError) = results[0] { #expect(failure.kind == .replication) } else { Issue.record("published without a replica: \(results[0])") }
        // Both were written by the master (at-least-once: a retry may duplicate them), none acknowledged.
        var written = 0
        for stream in naming.streams(.calls, kind: .event) { written += try await redis.execute(.xlen(stream)) }
        #expect(written == 2)
        _ = try await redis.execute(.del(naming.streams(.calls, kind: .event)))
    }

    @Test func concurrentPublishesAreAcknowledgedInFewRoundTrips() async throws {
        let redis = try await TestRedis.connect()
        let naming = StreamNaming(partitions: 4, prefix: TestRedis.prefix())
        let publisher = Publisher(connection: redis, configuration: PublisherConfiguration(source: "/test", naming: naming))
        let calls = (0..<50).map { CallID.derive(tenant: tenant, provider: .telnyx, providerCallID: "call-\($0)") }
        let total = 2_000
        let results = try await withThrowingTaskGroup(of: PublishedEntry.self) { group in
            for i in 0..<total {
                group.addTask { try await publisher.publish(self.chunk(calls[i % calls.count], i / calls.count), tenant: self.tenant) }
            }
            var all: [PublishedEntry] = []
            for try await entry in group { all.append(entry) }
            return all
        }
        #expect(results.count == total)
        #expect(Set(results.map { "\($0.stream) \($0.entryID)" }).count == total)
        var length = 0
        for stream in naming.streams(.calls, kind: .event) { length += try await redis.execute(.xlen(stream)) }
        #expect(length == total)
        let statistics = publisher.statistics
        #expect(statistics.published == total)
        #expect(statistics.failed == 0)
        _ = try await redis.execute(.del(naming.streams(.calls, kind: .event)))
    }

    @Test func aBatchGoesOutInAsFewPipelinesAsMaxBatchAllows() async throws {
        let redis = try await TestRedis.connect()
        let naming = StreamNaming(partitions: 4, prefix: TestRedis.prefix())
        var configuration = PublisherConfiguration(source: "/test", naming: naming)
        configuration.maxBatch = 512
        let publisher = Publisher(connection: redis, configuration: configuration)
        let call = Identifier.v7()
        let batch = (0..<2_000).map { (EventEnvelope(chunk(call, $0), tenant: tenant, source: "/test"), StreamCategory.calls, MessageKind.event) }
        let results = await publisher.publish(batch: batch)
        let entries = try results.map { try $0.get() }
        #expect(entries.count == 2_000)
        // One partition (one call): ids strictly increase in publish order.
        #expect(entries.map(\.entryID) == entries.map(\.entryID).sorted())
        #expect(Set(entries.map(\.entryID)).count == 2_000)
        // Group commit: 2,000 XADDs in ceil(2000 / 512) = 4 round trips.
        #expect(publisher.statistics.batches == 4)
        #expect(try await redis.execute(.xlen(entries[0].stream)) == 2_000)
        _ = try await redis.execute(.del(naming.streams(.calls, kind: .event)))
    }

    @Test func eachCallsEventsKeepTheirOrderInOnePartition() async throws {
        let redis = try await TestRedis.connect()
        let naming = StreamNaming(partitions: 4, prefix: TestRedis.prefix())
        let publisher = Publisher(connection: redis, configuration: PublisherConfiguration(source: "/test", naming: naming))
        let call = Identifier.v7()
        for sequence in 0..<20 { try await publisher.publish(chunk(call, sequence), tenant: tenant) }
        let stream = naming.stream(for: .calls, kind: .event, tenant: tenant, subject: call.description)
        let sequences = try await redis.execute(.xrange(stream)).map { entry -> Int in
            let fields = (entry.fields ?? []).map { EnvelopeField(name: $0.name, value: $0.value) }
            return (try? MessageRegistry.standard.decode(fields: fields, as: TranscriptChunk.self).1.sequence) ?? -1
        }
        #expect(sequences == Array(0..<20))
        _ = try await redis.execute(.del(naming.streams(.calls, kind: .event)))
    }

    @Test func publishingNeverTrimsAStream() async throws {
        // Retention is the RetentionTrimmer's, below what every reader processed: an XADD must not
        // drop an entry a stopped consumer group has not read, however old.
        let redis = try await TestRedis.connect()
        let naming = StreamNaming(partitions: 1, prefix: TestRedis.prefix())
        let publisher = Publisher(connection: redis, configuration: PublisherConfiguration(source: "/test", naming: naming))
        let billing = naming.stream(.billing, kind: .event, partition: 0)
        let old = StreamEntryID(milliseconds: UInt64(Timestamp.now.millisecondsSinceEpoch - 30 * 86_400_000))
        _ = try await redis.execute(.xadd(billing, id: old, fields: [("old", "1")]))
        let usage = UsageRecorded(meter: .aiRequests, quantity: 1, sourceEventID: .v7(), sourceEventType: "test", occurredAt: .now)
        for _ in 0..<3 { try await publisher.publish(usage, tenant: tenant) }
        let remaining = try await redis.execute(.xrange(billing))
        #expect(remaining.first?.id == old)
        #expect(remaining.count == 4)
        _ = try await redis.execute(.del([billing]))
    }

    @Test func aKilledConnectionFailsTheBatchAndTheNextPublishReconnects() async throws {
        let redis = try await TestRedis.connect()
        let admin = try await TestRedis.connect()
        let naming = StreamNaming(partitions: 1, prefix: TestRedis.prefix())
        let publisher = Publisher(connection: redis, configuration: PublisherConfiguration(source: "/test", naming: naming))
        let call = Identifier.v7()
        try await publisher.publish(chunk(call, 0), tenant: tenant)
        try await admin.send("CLIENT", "KILL", "ID", .integer(try await redis.execute(.clientID())))
        await #expect(throws: RedisError.self) {
            try await publisher.publish(chunk(call, 1), tenant: tenant)
        }
        try await publisher.publish(chunk(call, 2), tenant: tenant)
        let stream = naming.stream(.calls, kind: .event, partition: 0)
        #expect(try await redis.execute(.xlen(stream)) == 2)
        #expect(publisher.statistics.failed == 1)
        _ = try await redis.execute(.del([stream]))
    }

    @Test func aServerErrorFailsOnlyItsOwnPublish() async throws {
        let redis = try await TestRedis.connect()
        let naming = StreamNaming(partitions: 1, prefix: TestRedis.prefix())
        let publisher = Publisher(connection: redis, configuration: PublisherConfiguration(source: "/test", naming: naming))
        // The CRM stream's key holds a string: XADD to it fails with WRONGTYPE.
        let crm = naming.stream(.crm, kind: .event, partition: 0)
        try await redis.send("SET", .string(crm), "not a stream")
        let lead = LeadCreated(leadID: .v7(), name: "Ada", intent: .sales, source: .api, createdAt: .now)
        let results = await publisher.publish(batch: [
            (EventEnvelope(lead, tenant: tenant, source: "/test"), .crm, .event),
            (EventEnvelope(chunk(.v7(), 0), tenant: tenant, source: "/test"), .calls, .event),
        ])
        #expect(throws: RedisError.self) { try results[0].get() }
        #expect((try? results[1].get()) != nil)
        _ = try await redis.execute(.del([crm, naming.stream(.calls, kind: .event, partition: 0)]))
    }

    @Test func aDeduplicatedPublishSurvivesAServerThatForgotItsScripts() async throws {
        try await TestRedis.withPrivateServer { redis in
            let naming = StreamNaming(partitions: 1, prefix: TestRedis.prefix())
            let publisher = Publisher(connection: redis, configuration: PublisherConfiguration(source: "/test", naming: naming))
            let call = Identifier.v7()
            // As after a Redis restart: the script cache is empty, so EVALSHA answers NOSCRIPT.
            try await redis.send("SCRIPT", "FLUSH")
            let first = try await publisher.publish(EventEnvelope(chunk(call, 0), tenant: tenant, source: "/test"), category: .calls, kind: .event,
                                                    deduplicationKey: "k1")
            #expect(!first.isDuplicate)
            try await redis.send("SCRIPT", "FLUSH")
            let again = try await publisher.publish(EventEnvelope(chunk(call, 0), tenant: tenant, source: "/test"), category: .calls, kind: .event,
                                                    deduplicationKey: "k1")
            #expect(again == .duplicate(first.entry))
            #expect(try await redis.execute(.xrange(first.entry.stream)).map(\.id) == [first.entry.entryID])
        }
    }

    @Test func aBatchOfDeduplicatedPublishesGoesOutInOrderAndPublishesEachKeyOnce() async throws {
        let redis = try await TestRedis.connect()
        let naming = StreamNaming(partitions: 1, prefix: TestRedis.prefix())
        let publisher = Publisher(connection: redis, configuration: PublisherConfiguration(source: "/test", naming: naming))
        let call = Identifier.v7()
        let envelopes = (0..<6).map { EventEnvelope(chunk(call, $0), tenant: tenant, source: "/test") }
        // Keys a, b, c, a, d, b: the repeats are duplicates of the first publishes.
        let keys = ["a", "b", "c", "a", "d", "b"]
        let results = await publisher.publish(deduplicated: zip(envelopes, keys).map { ($0, .calls, .event, $1) })
        let outcomes = try results.map { try $0.get() }
        #expect(outcomes.map(\.isDuplicate) == [false, false, false, true, false, true])
        #expect(outcomes[3] == .duplicate(outcomes[0].entry) && outcomes[5] == .duplicate(outcomes[1].entry))
        let stream = naming.stream(.calls, kind: .event, partition: 0)
        let stored = try await redis.execute(.xrange(stream)).map { entry in
            (entry.fields ?? []).first { $0.name == "id" }.map { String(decoding: $0.value, as: UTF8.self) }
        }
        #expect(stored == [0, 1, 2, 4].map { envelopes[$0].id.description }, "in order, each key once")
        _ = try await redis.execute(.del(try await redis.scanAll(match: "\(naming.prefix):*")))
    }

    @Test func aFailedDeduplicatedXADDLeavesNoKeyBehindSoTheRetryPublishes() async throws {
        let redis = try await TestRedis.connect()
        let naming = StreamNaming(partitions: 1, prefix: TestRedis.prefix())
        let publisher = Publisher(connection: redis, configuration: PublisherConfiguration(source: "/test", naming: naming))
        let stream = naming.stream(.calls, kind: .event, partition: 0)
        try await redis.send("SET", .string(stream), "not a stream")
        let envelope = EventEnvelope(chunk(.v7(), 0), tenant: tenant, source: "/test")
        await #expect(throws: RedisError.self) {
            _ = try await publisher.publish(envelope, category: .calls, kind: .event, deduplicationKey: "retry-me")
        }
        // The provider retries once Redis is healthy again: it must be published, not a "duplicate".
        _ = try await redis.execute(.del([stream]))
        let retried = try await publisher.publish(envelope, category: .calls, kind: .event, deduplicationKey: "retry-me")
        #expect(!retried.isDuplicate)
        #expect(try await redis.execute(.xrange(stream)).count == 1)
        _ = try await redis.execute(.del(try await redis.scanAll(match: "\(naming.prefix):*")))
    }
}
