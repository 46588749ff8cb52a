import Foundation
import Testing
import VoiceCoreEvents
import VoiceCoreRedis
import VoiceCoreTestSupport
@testable import VoiceCoreBus

/// The hard cap on Redis memory: `maxmemory` with `noeviction` makes a full Redis refuse publishes
/// (loudly, retryable) instead of dropping history.
@Suite("A full Redis refuses publishes and keeps what it has")
struct RedisFullTests {
    @Test func aFullRedisFailsPublishesAsFullAndLosesNothing() async throws {
        let server = RestartableRedis()
        try await server.start()
        defer { server.kill() }
        let redis = RedisClient(try await RedisConnection.connect(try server.configuration))
        _ = try await redis.send("CONFIG", "SET", "maxmemory-policy", "noeviction")
        _ = try await redis.send("CONFIG", "SET", "maxmemory", "3mb")
        let naming = StreamNaming(partitions: 1, prefix: "full")
        let publisher = Publisher(connection: redis, configuration: PublisherConfiguration(source: "/test", naming: naming))
        let tenant = Identifier.v7(), call = Identifier.v7()
        let text = String(repeating: "x", count: 9_000)
        func chunk(_ sequence: Int) -> TranscriptChunk {
            TranscriptChunk(callID: call, sequence: sequence, track: .inbound, text: text, isFinal: true, confidence: 0.9, startOffsetMs: 0, endOffsetMs: 1)
        }

        var published: [PublishedEntry] = []
        var refusal: (any Error)?
        for sequence in 0..<2_000 {
            do {
                published.append(try await publisher.publish(chunk(sequence), tenant: tenant))
            } catch {
                refusal = error
                break
            }
        }
        let error = try #require(refusal, "Redis never refused a publish at 3 MB")
        #expect(Publisher.isRedisFull(error), "\(error)")
        #expect(!Publisher.isRedisFull(RedisError(kind: .connectionClosed, message: "closed")))
        // Refused, not dropped: every acknowledged entry is still there, the oldest first.
        let stream = naming.stream(.calls, kind: .event, partition: 0)
        let ids = try await redis.execute(.xrange(stream)).map(\.id)
        #expect(ids == published.map(\.entryID))
        #expect(!published.isEmpty)
        // The deduplicated publish (the edge's) is refused the same way, and stores no key.
        await #expect {
            _ = try await publisher.publish(EventEnvelope(chunk(9_999), tenant: tenant, source: "/test"), category: .calls, kind: .event,
                                            deduplicationKey: "k1", window: .seconds(60))
        } throws: { Publisher.isRedisFull($0) }
        #expect(try await redis.send("KEYS", "*:dedup:*").array?.isEmpty ?? false)

        // Memory freed (an operator raised the cap): publishing works again.
        _ = try await redis.send("CONFIG", "SET", "maxmemory", "0")
        try await publisher.publish(chunk(10_000), tenant: tenant)
        #expect(try await redis.execute(.xlen(stream)) == published.count + 1)
    }
}
