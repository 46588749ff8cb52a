import Foundation
import Logging
import MetricsTestKit
import ServiceLifecycle
import Testing
import VoiceCoreEvents
import VoiceCoreRedis
import VoiceCoreTime
@testable import VoiceCoreBus

/// The retention trimmer against the real Redis: it trims by age, but never what a consumer group
/// has not processed, unless the group is abandoned.
@Suite("Retention never trims what a reader has not processed")
struct RetentionTests {
    /// A command stream of its own with `old` entries two hours old and `new` entries a minute old,
    /// retention one hour (exact, so a test sees single entries go).
    struct Fixture {
        let redis: RedisClient
        let naming: StreamNaming
        let stream: String
        let old: [StreamEntryID]
        let new: [StreamEntryID]
        var configuration: RetentionConfiguration

        init(old oldCount: Int = 10, new newCount: Int = 5) async throws {
            redis = RedisClient(try await TestRedis.connect())
            naming = StreamNaming(partitions: 1, prefix: TestRedis.prefix())
            stream = naming.stream(.calls, kind: .command, partition: 0)
            let now = UInt64(Timestamp.now.millisecondsSinceEpoch)
            var old: [StreamEntryID] = [], new: [StreamEntryID] = []
            for index in 0..<oldCount { old.append(StreamEntryID(milliseconds: now - 7_200_000 + UInt64(index))) }
            for index in 0..<newCount { new.append(StreamEntryID(milliseconds: now - 60_000 + UInt64(index))) }
            for id in old + new { _ = try await redis.execute(.xadd(stream, id: id, fields: [("n", id.description)])) }
            self.old = old
            self.new = new
            configuration = RetentionConfiguration(naming: naming)
            for category in StreamCategory.allCases {
                configuration.commandRetention[category] = .maxAge(.seconds(3600), exact: true)
                configuration.eventRetention[category] = .maxAge(.seconds(3600), exact: true)
            }
        }

        func ids() async throws -> [StreamEntryID] { try await redis.execute(.xrange(stream)).map(\.id) }

        /// Reads `count` entries as `consumer` of `group` and acknowledges the first `acknowledge` of them.
        func read(_ group: String, consumer: String = "c1", count: Int, acknowledge: Int) async throws -> [StreamEntryID] {
            let read = try await redis.readGroup(group: group, consumer: consumer, streams: [(stream, .newEntries)], count: count, block: nil)
            let ids = read.flatMap(\.entries).map(\.id)
            if acknowledge > 0 { try await redis.acknowledge(group: group, [(stream, Array(ids.prefix(acknowledge)))]) }
            return ids
        }

        func trimmer(_ metrics: TestMetrics = TestMetrics(), readers: [any ReaderProgressSource] = []) throws -> RetentionTrimmer {
            // `pass` uses the connection it is given; the configuration is for `run`.
            RetentionTrimmer(redis: try RedisConfiguration(url: TestRedis.url), configuration: configuration, readers: readers, factory: metrics)
        }

        func drop() async throws { _ = try await redis.execute(.del([stream])) }
    }

    @Test func trimsByAgeWhenEveryGroupHasProcessed() async throws {
        let fixture = try await Fixture()
        _ = try await fixture.redis.execute(.xgroupCreate(fixture.stream, group: "svc", start: .beginning))
        _ = try await fixture.read("svc", count: 100, acknowledge: 15)
        let statuses = try await fixture.trimmer().pass(fixture.redis)
        #expect(try await fixture.ids() == fixture.new)
        let status = try #require(statuses.first { $0.stream == fixture.stream })
        #expect(status.trimmed == 10)
        #expect(status.heldBackEntries == 0)
        try await fixture.drop()
    }

    @Test func aStoppedGroupHoldsBackTrimmingUntilItHasProcessed() async throws {
        let fixture = try await Fixture()
        _ = try await fixture.redis.execute(.xgroupCreate(fixture.stream, group: "svc", start: .beginning))
        _ = try await fixture.redis.execute(.xgroupCreate(fixture.stream, group: "fast", start: .beginning))
        _ = try await fixture.read("fast", count: 100, acknowledge: 15)
        // svc handled three entries, had two more in hand (pending) and stopped.
        let delivered = try await fixture.read("svc", count: 5, acknowledge: 3)
        #expect(delivered == Array(fixture.old.prefix(5)))

        let metrics = TestMetrics()
        let trimmer = try fixture.trimmer(metrics)
        var status = try #require(try await trimmer.pass(fixture.redis).first { $0.stream == fixture.stream })
        // Only what svc processed went; its pending entries and everything after them stayed, old as they are.
        #expect(try await fixture.ids() == Array(fixture.old.dropFirst(3)) + fixture.new)
        #expect(status.trimmed == 3)
        #expect(status.keepFrom == fixture.old[3].description)
        #expect(status.heldBackEntries == 7)
        #expect(status.heldBackSeconds > 3000)
        let svc = try #require(status.readers.first { $0.group == "svc" })
        #expect(svc.keepsFrom == fixture.old[3].description)
        #expect(svc.heldBackSeconds > 3000)
        #expect(!svc.abandoned)
        #expect(status.readers.first { $0.group == "fast" }?.heldBackSeconds == 0)
        #expect(try metrics.expectGauge(BusMetricNames.retentionHeldBackEntries, [("stream", fixture.stream)]).lastValue == 7)
        #expect(try metrics.expectGauge(BusMetricNames.retentionHeldBackSeconds, [("stream", fixture.stream), ("group", "svc")]).lastValue ?? 0 > 3000)

        // A second pass while svc is still stopped trims nothing more.
        status = try #require(try await trimmer.pass(fixture.redis).first { $0.stream == fixture.stream })
        #expect(status.trimmed == 0)
        #expect(try await fixture.ids().count == 12)

        // svc comes back: acknowledges its pending entries, then reads and handles the rest.
        try await fixture.redis.acknowledge(group: "svc", [(fixture.stream, [fixture.old[3], fixture.old[4]])])
        _ = try await fixture.read("svc", count: 100, acknowledge: 100)
        status = try #require(try await trimmer.pass(fixture.redis).first { $0.stream == fixture.stream })
        #expect(try await fixture.ids() == fixture.new)
        #expect(status.heldBackEntries == 0)
        #expect(try metrics.expectGauge(BusMetricNames.retentionHeldBackSeconds, [("stream", fixture.stream), ("group", "svc")]).lastValue == 0)
        try await fixture.drop()
    }

    @Test func aGroupThatNeverReadHoldsTheWholeStream() async throws {
        // Created (at the start of the stream) by a consumer that is down before it read anything.
        var fixture = try await Fixture()
        fixture.configuration.abandonAfter = .milliseconds(300)
        _ = try await fixture.redis.execute(.xgroupCreate(fixture.stream, group: "late", start: .beginning))
        let trimmer = try fixture.trimmer()
        try await trimmer.pass(fixture.redis)
        #expect(try await fixture.ids() == fixture.old + fixture.new)
        // Without a consumer ever seen, the abandonment time counts from when a trimmer first saw it so.
        try await Task.sleep(for: .milliseconds(500))
        let status = try #require(try await trimmer.pass(fixture.redis).first { $0.stream == fixture.stream })
        #expect(status.readers.first?.abandoned == true)
        #expect(try await fixture.ids() == fixture.new)
        _ = try await fixture.redis.execute(.del([trimmer.consumerlessRecordKey]))
        try await fixture.drop()
    }

    @Test func aLengthBoundKeepsWhatAGroupHasNotProcessed() async throws {
        var fixture = try await Fixture(old: 10, new: 10)
        for category in StreamCategory.allCases { fixture.configuration.commandRetention[category] = .maxLength(5, exact: true) }
        _ = try await fixture.redis.execute(.xgroupCreate(fixture.stream, group: "svc", start: .beginning))
        _ = try await fixture.read("svc", count: 8, acknowledge: 8)
        try await fixture.trimmer().pass(fixture.redis)
        #expect(try await fixture.ids() == Array(fixture.old.dropFirst(8)) + fixture.new)
        _ = try await fixture.read("svc", count: 100, acknowledge: 100)
        try await fixture.trimmer().pass(fixture.redis)
        #expect(try await fixture.ids() == Array(fixture.new.suffix(5)))
        try await fixture.drop()
    }

    @Test func anAbandonedGroupNoLongerHoldsBackAndIsReported() async throws {
        var fixture = try await Fixture()
        fixture.configuration.abandonAfter = .milliseconds(300)
        _ = try await fixture.redis.execute(.xgroupCreate(fixture.stream, group: "gone", start: .beginning))
        _ = try await fixture.redis.execute(.xgroupCreate(fixture.stream, group: "alive", start: .beginning))
        _ = try await fixture.read("gone", count: 2, acknowledge: 1)
        _ = try await fixture.read("alive", count: 100, acknowledge: 15)
        // gone's consumer is not seen again. alive's is not seen either (Redis 7.0 does not refresh
        // idle on a read that finds nothing), but alive has nothing left to process: not abandoned.
        try await Task.sleep(for: .milliseconds(500))

        let metrics = TestMetrics()
        let status = try #require(try await fixture.trimmer(metrics).pass(fixture.redis).first { $0.stream == fixture.stream })
        #expect(try await fixture.ids() == fixture.new)
        let gone = try #require(status.readers.first { $0.group == "gone" })
        #expect(gone.abandoned)
        #expect(gone.lastSeenSeconds ?? 0 >= 0.3)
        #expect(status.readers.first { $0.group == "alive" }?.abandoned == false)
        #expect(try metrics.expectGauge(BusMetricNames.retentionAbandonedGroup, [("stream", fixture.stream), ("group", "gone")]).lastValue == 1)
        #expect(try metrics.expectGauge(BusMetricNames.retentionAbandonedGroup, [("stream", fixture.stream), ("group", "alive")]).lastValue == 0)
        try await fixture.drop()
    }

    @Test func aCheckpointedGroupWithoutItsProgressSourceHoldsTheWholeStream() async throws {
        // A projector group (NOACK: its position runs ahead of what it committed) seen by a trimmer
        // that was not given the checkpoints must not be judged by its position.
        let fixture = try await Fixture()
        _ = try await fixture.redis.execute(.xgroupCreate(fixture.stream, group: "projector:calls", start: .end))
        _ = try await fixture.redis.readGroup(group: "projector:calls", consumer: "rd:x-1", streams: [(fixture.stream, .newEntries)], count: 1, block: nil, noAck: true)
        let status = try #require(try await fixture.trimmer().pass(fixture.redis).first { $0.stream == fixture.stream })
        #expect(try await fixture.ids() == fixture.old + fixture.new)
        #expect(status.readers.first?.source == .unknown)
        try await fixture.drop()
    }

    @Test func theStreamsReportShowsWhatIsHeldBack() async throws {
        let fixture = try await Fixture()
        _ = try await fixture.redis.execute(.xgroupCreate(fixture.stream, group: "svc", start: .beginning))
        _ = try await fixture.read("svc", count: 4, acknowledge: 4)
        let admin = StreamAdmin(connection: fixture.redis)
        let reports = try await admin.reports(prefix: fixture.naming.prefix, retention: fixture.configuration)
        let retention = try #require(reports.first { $0.stream == fixture.stream }?.retention)
        #expect(retention.heldBackEntries == 6)
        // svc processed old[0...3]: it needs everything after old[3].
        #expect(retention.keepFrom == fixture.old[3].successor.description)
        #expect(retention.trim == "MINID = \(fixture.old[3].successor)")
        #expect(retention.readers.map(\.group) == ["svc"])
        // Reading the report trims nothing.
        #expect(try await fixture.ids().count == 15)
        // The JSON `voicecore streams --json` prints carries it.
        let json = String(decoding: try JSONEncoder().encode(reports), as: UTF8.self)
        #expect(json.contains("\"heldBackEntries\":6"))
        try await fixture.drop()
    }

    @Test func theServiceTrimsEveryIntervalAndStopsAtShutdown() async throws {
        var fixture = try await Fixture()
        fixture.configuration.interval = .milliseconds(100)
        _ = try await fixture.redis.execute(.xgroupCreate(fixture.stream, group: "svc", start: .beginning))
        _ = try await fixture.read("svc", count: 3, acknowledge: 3)
        let trimmer = try fixture.trimmer()
        let group = ServiceGroup(services: [trimmer], logger: Logger(label: "test"))
        let running = Task { try await group.run() }
        var trimmed = false
        for _ in 0..<100 where !trimmed {
            try await Task.sleep(for: .milliseconds(100))
            trimmed = try await fixture.ids() == Array(fixture.old.dropFirst(3)) + fixture.new
        }
        #expect(trimmed)
        await group.triggerGracefulShutdown()
        try await running.value
        _ = try await fixture.redis.execute(.del([trimmer.leaseKey]))
        try await fixture.drop()
    }

    @Test func onlyOneTrimmerHoldsTheLease() async throws {
        let fixture = try await Fixture(old: 0, new: 1)
        let first = try fixture.trimmer(), second = try fixture.trimmer()
        #expect(try await first.holdLease(fixture.redis))
        #expect(try await !second.holdLease(fixture.redis))
        #expect(try await first.holdLease(fixture.redis))
        _ = try await fixture.redis.execute(.del([first.leaseKey]))
        #expect(try await second.holdLease(fixture.redis))
        _ = try await fixture.redis.execute(.del([first.leaseKey]))
        try await fixture.drop()
    }
}
