import Foundation
import Testing
import VoiceCoreBus
import VoiceCoreEvents
import VoiceCorePostgres
import VoiceCoreRedis
@testable import VoiceCoreProjections
import VoiceCoreSimulation

/// The projector reads with NOACK, so only its checkpoints say what it applied: the retention
/// trimmer must keep everything after them.
@Suite("Retention and the projector's checkpoints")
struct RetentionCheckpointTests {
    @Test func theProjectorsCheckpointsHoldBackTrimming() async throws {
        let fixture = try await ProjectorFixture(partitions: 1)
        let redis = RedisClient(fixture.redis)
        var workload = CallWorkload(seed: 11, tenants: 2)
        try await fixture.publish(workload.provisioning() + workload.calls(10))
        let applied = fixture.published.count

        let projector = try fixture.runner()
        try await fixture.waitUntilCaughtUp()
        try await projector.stop()

        // More traffic while the projector is down; a projector instance read it (NOACK) and died
        // before committing, so the group's position is past it while the checkpoints are not.
        try await fixture.publish(workload.calls(5))
        let group = ProjectorConfiguration.group(of: StandardProjections.all.map(\.name))
        let streams = StreamCategory.allCases.map { fixture.naming.stream($0, kind: .event, partition: 0) }
        for stream in streams {
            _ = try await redis.readGroup(group: group, consumer: "rd:crashed-1", streams: [(stream, .newEntries)], count: 100_000, block: nil, noAck: true)
        }
        let unapplied = Array(fixture.published.dropFirst(applied))
        #expect(!unapplied.isEmpty)

        // Everything is older than this retention: only the readers' progress keeps anything.
        try await Task.sleep(for: .milliseconds(1100))
        var configuration = RetentionConfiguration(naming: fixture.naming)
        for category in StreamCategory.allCases { configuration.eventRetention[category] = .maxAge(.seconds(1), exact: true) }
        let checkpoints = ProjectionCheckpointProgress(projections: StandardProjections.all, naming: fixture.naming,
                                                       postgres: try PostgresConfiguration(url: fixture.databaseURL))
        let trimmer = RetentionTrimmer(redis: try RedisConfiguration(url: TestRedis.url), configuration: configuration, readers: [checkpoints])
        let statuses = try await trimmer.pass(redis)

        func remaining() async throws -> Set<String> {
            var ids = Set<String>()
            for stream in streams { for entry in try await redis.execute(.xrange(stream)) { ids.insert("\(stream) \(entry.id)") } }
            return ids
        }
        #expect(try await remaining() == Set(unapplied.map { "\($0.stream) \($0.entryID)" }))
        let calls = try #require(statuses.first { $0.stream == fixture.naming.stream(.calls, kind: .event, partition: 0) })
        let reader = try #require(calls.readers.first { $0.group == group })
        #expect(reader.source == .checkpoints)
        #expect(reader.heldBackSeconds > 0)
        #expect(calls.heldBackEntries == unapplied.filter { $0.stream == calls.stream }.count)

        // Applied (and checkpointed) after a restart, they go too.
        let again = try fixture.runner()
        try await fixture.waitUntilCaughtUp()
        try await again.stop()
        try await Task.sleep(for: .milliseconds(1100))
        try await trimmer.pass(redis)
        #expect(try await remaining().isEmpty)
        _ = try await redis.execute(.del(streams))
        try await fixture.drop()
    }

    @Test func aProjectionWithoutACheckpointOnAStreamItReadsHoldsAllOfIt() {
        let naming = StreamNaming(partitions: 1, prefix: "x")
        let calls = naming.stream(.calls, kind: .event, partition: 0)
        let billing = naming.stream(.billing, kind: .event, partition: 0)
        let streamsRead = ["calls": Set([calls]), "billing": Set([billing])]
        let checkpoints = ["calls": [calls: StreamEntryID(milliseconds: 5)], "billing": [:] as [String: StreamEntryID]]
        // billing does not read the calls stream: calls' checkpoint decides there.
        #expect(ProjectionCheckpointProgress.processed(group: "projector:billing+calls", stream: calls, checkpoints: checkpoints, streamsRead: streamsRead)
                == StreamEntryID(milliseconds: 5))
        // billing reads its stream and has committed nothing there yet.
        #expect(ProjectionCheckpointProgress.processed(group: "projector:billing+calls", stream: billing, checkpoints: checkpoints, streamsRead: streamsRead) == nil)
    }
}
