import Foundation
import Testing
@testable import VoiceCoreRedis

@Suite("Stream commands against a real stream")
struct StreamCommandTests {
    @Test func addRangeLengthDeleteAndTrim() async throws {
        let redis = try await TestRedis.connect()
        let key = TestRedis.key()
        var ids: [StreamEntryID] = []
        for i in 0..<10 {
            ids.append(try await redis.execute(.xadd(key, fields: [("n", String(i)), ("data", "{\"i\":\(i)}")])))
        }
        #expect(ids == ids.sorted())
        #expect(try await redis.execute(.xlen(key)) == 10)

        let all = try await redis.execute(.xrange(key))
        #expect(all.map(\.id) == ids)
        #expect(all[3]["n"] == "3")
        #expect(all[3].fields?.map(\.name) == ["n", "data"])

        let newestTwo = try await redis.execute(.xrevrange(key, count: 2))
        #expect(newestTwo.map(\.id) == [ids[9], ids[8]])
        let middle = try await redis.execute(.xrange(key, from: ids[2], to: ids[4]))
        #expect(middle.map(\.id) == Array(ids[2...4]))

        #expect(try await redis.execute(.xdel(key, ids: [ids[0], ids[1]])) == 2)
        #expect(try await redis.execute(.xtrim(key, .maxLength(5, approximate: false))) == 3)
        #expect(try await redis.execute(.xrange(key)).map(\.id) == Array(ids[5...]))
        #expect(try await redis.execute(.xtrim(key, .minID(ids[8], approximate: false))) == 3)
        #expect(try await redis.execute(.xlen(key)) == 2)

        // XADD with an exact MAXLEN keeps the stream bounded as it grows.
        for _ in 0..<5 { _ = try await redis.execute(.xadd(key, trim: .maxLength(3, approximate: false), fields: [("x", "y")])) }
        #expect(try await redis.execute(.xlen(key)) == 3)
        // An explicit id must be greater than the last one.
        let explicit = try await redis.execute(.xadd(key, id: StreamEntryID(milliseconds: UInt64.max / 2, sequence: 1), fields: [("x", "y")]))
        #expect(explicit == StreamEntryID(milliseconds: UInt64.max / 2, sequence: 1))
        _ = try await redis.execute(.del([key]))
    }

    @Test func groupsReadAckAndPending() async throws {
        let redis = try await TestRedis.connect()
        let key = TestRedis.key()
        try await redis.execute(.xgroupCreate(key, group: "g", start: .beginning, makeStream: true))

        // A second CREATE is BUSYGROUP; reading a group that does not exist is NOGROUP.
        await #expect {
            try await redis.execute(.xgroupCreate(key, group: "g", start: .beginning))
        } throws: { ($0 as? RedisError)?.serverCode == "BUSYGROUP" }
        await #expect {
            try await redis.execute(.xreadgroup(group: "missing", consumer: "c", streams: [(key, .newEntries)]))
        } throws: { ($0 as? RedisError)?.serverCode == "NOGROUP" }

        var ids: [StreamEntryID] = []
        for i in 0..<5 { ids.append(try await redis.execute(.xadd(key, fields: [("i", String(i))]))) }

        let read = try await redis.execute(.xreadgroup(group: "g", consumer: "alice", streams: [(key, .newEntries)], count: 3))
        #expect(read.count == 1)
        #expect(read[0].stream == key)
        #expect(read[0].entries.map(\.id) == Array(ids[0..<3]))

        let summary = try await redis.execute(.xpending(key, group: "g"))
        #expect(summary.count == 3)
        #expect(summary.smallestID == ids[0])
        #expect(summary.greatestID == ids[2])
        #expect(summary.consumers == ["alice": 3])

        let rows = try await redis.execute(.xpending(key, group: "g", count: 10))
        #expect(rows.map(\.id) == Array(ids[0..<3]))
        #expect(rows.allSatisfy { $0.consumer == "alice" && $0.deliveryCount == 1 })

        #expect(try await redis.execute(.xack(key, group: "g", ids: [ids[0], ids[1]])) == 2)
        #expect(try await redis.execute(.xack(key, group: "g", ids: [ids[0]])) == 0)
        #expect(try await redis.execute(.xpending(key, group: "g")).count == 1)

        let groups = try await redis.execute(.xinfoGroups(key))
        #expect(groups.count == 1)
        #expect(groups[0].name == "g")
        #expect(groups[0].pending == 1)
        #expect(groups[0].lastDeliveredID == ids[2])
        #expect(groups[0].lag == 2)
        #expect(groups[0].consumers == 1)

        let consumers = try await redis.execute(.xinfoConsumers(key, group: "g"))
        #expect(consumers.map(\.name) == ["alice"])
        #expect(consumers[0].pending == 1)

        let info = try await redis.execute(.xinfoStream(key))
        #expect(info.length == 5)
        #expect(info.groups == 1)
        #expect(info.firstEntry?.id == ids[0])
        #expect(info.lastEntry?.id == ids[4])
        #expect(info.lastGeneratedID == ids[4])
        #expect(info.entriesAdded == 5)

        // SETID rewinds the group; DELCONSUMER reports the pending entries it dropped.
        try await redis.execute(.xgroupSetID(key, group: "g", start: .beginning))
        #expect(try await redis.execute(.xgroupDelConsumer(key, group: "g", consumer: "alice")) == 1)
        let again = try await redis.execute(.xreadgroup(group: "g", consumer: "bob", streams: [(key, .newEntries)]))
        #expect(again.first?.entries.count == 5)
        #expect(try await redis.execute(.xgroupDestroy(key, group: "g")) == 1)
        _ = try await redis.execute(.del([key]))
    }

    @Test func readGroupAcrossSeveralStreamsAndXREAD() async throws {
        let redis = try await TestRedis.connect()
        let a = TestRedis.key() + ":{a}", b = TestRedis.key() + ":{b}"
        try await redis.execute(.xgroupCreate(a, group: "g", start: .end))
        try await redis.execute(.xgroupCreate(b, group: "g", start: .end))
        let idA = try await redis.execute(.xadd(a, fields: [("s", "a")]))
        let idB = try await redis.execute(.xadd(b, fields: [("s", "b")]))
        let read = try await redis.execute(.xreadgroup(group: "g", consumer: "c", streams: [(a, .newEntries), (b, .newEntries)], count: 10, noAck: true))
        #expect(Dictionary(uniqueKeysWithValues: read.map { ($0.stream, $0.entries.map(\.id)) }) == [a: [idA], b: [idB]])
        // NOACK: nothing pending.
        #expect(try await redis.execute(.xpending(a, group: "g")).count == 0)

        let plain = try await redis.execute(.xread(streams: [(a, .zero), (b, idB)]))
        #expect(plain.count == 1)
        #expect(plain[0].entries.map(\.id) == [idA])
        _ = try await redis.execute(.del([a, b]))
    }

    /// The consumer runner sends the last batch's XACKs in the round trip of its next read: they
    /// must be applied before the read, or a read of pending entries would hand them out again.
    @Test func acknowledgementsSentWithAReadAreAppliedBeforeIt() async throws {
        let client = try await RedisClient.connect(try TestRedis.configuration())
        let a = TestRedis.key() + ":{a}", b = TestRedis.key() + ":{b}"
        try await client.execute(.xgroupCreate(a, group: "g", start: .end))
        try await client.execute(.xgroupCreate(b, group: "g", start: .end))
        var ids: [StreamEntryID] = []
        for i in 0..<3 { ids.append(try await client.execute(.xadd(a, fields: [("n", "\(i)")]))) }
        let idB = try await client.execute(.xadd(b, fields: [("n", "b")]))
        let first = try await client.readGroup(group: "g", consumer: "c", streams: [(a, .newEntries), (b, .newEntries)], count: 10, block: nil)
        #expect(first.flatMap(\.entries).count == 4)

        // Pending again, with two of a's entries and b's acknowledged in the same round trip (and
        // an acknowledgement for a group that does not exist, which needs none).
        let pending = try await client.readGroup(
            group: "g", consumer: "c", streams: [(a, .pending(after: .zero)), (b, .pending(after: .zero))], count: 10, block: nil,
            acknowledging: [(a, Array(ids.prefix(2))), (b, [idB]), (TestRedis.key() + ":gone", [idB])])
        #expect(pending.first { $0.stream == a }?.entries.map(\.id) == [ids[2]])
        #expect(pending.first { $0.stream == b }?.entries.isEmpty ?? true)
        #expect(try await client.execute(.xpending(a, group: "g")).count == 1)
        _ = try await client.execute(.del([a, b]))
    }

    @Test func claimsAndDeletedPendingEntries() async throws {
        let redis = try await TestRedis.connect()
        let key = TestRedis.key()
        try await redis.execute(.xgroupCreate(key, group: "g", start: .beginning))
        var ids: [StreamEntryID] = []
        for i in 0..<4 { ids.append(try await redis.execute(.xadd(key, fields: [("i", String(i))]))) }
        _ = try await redis.execute(.xreadgroup(group: "g", consumer: "dead", streams: [(key, .newEntries)]))

        // An entry deleted while pending is reported with nil fields when the owner re-reads its history.
        _ = try await redis.execute(.xdel(key, ids: [ids[1]]))
        let history = try await redis.execute(.xreadgroup(group: "g", consumer: "dead", streams: [(key, .pending(after: .zero))]))
        let entries = try #require(history.first?.entries)
        #expect(entries.map(\.id) == ids)
        #expect(entries[1].isDeleted)
        #expect(entries[1].fields == nil)
        #expect(entries[0]["i"] == "0")

        try await Task.sleep(for: .milliseconds(30))
        // XCLAIM moves chosen entries to a live consumer and counts a delivery (the first read and
        // the history read counted one each).
        let claimed = try await redis.execute(.xclaim(key, group: "g", consumer: "live", minIdle: .milliseconds(10), ids: [ids[0]]))
        #expect(claimed.map(\.id) == [ids[0]])
        let row = try await redis.execute(.xpending(key, group: "g", from: ids[0], to: ids[0], count: 1))
        #expect(row.first?.consumer == "live")
        #expect(row.first?.deliveryCount == 3)

        // XAUTOCLAIM takes every entry idle long enough and reports the deleted one, which leaves the PEL.
        try await Task.sleep(for: .milliseconds(30))
        let auto = try await redis.execute(.xautoclaim(key, group: "g", consumer: "live", minIdle: .milliseconds(20), count: 10))
        #expect(auto.entries.map(\.id) == [ids[0], ids[2], ids[3]])
        #expect(auto.deletedIDs == [ids[1]])
        #expect(auto.nextStart == .zero)
        let pending = try await redis.execute(.xpending(key, group: "g"))
        #expect(pending.count == 3)
        #expect(pending.consumers == ["live": 3])
        _ = try await redis.execute(.del([key]))
    }

    @Test func blockWithNoDataReturnsEmptyAfterTheBlockTime() async throws {
        // The command timeout (300 ms) is shorter than BLOCK (800 ms): a quiet stream must not
        // look like a dead server.
        let redis = try await TestRedis.connect(commandTimeout: .milliseconds(300))
        let key = TestRedis.key()
        try await redis.execute(.xgroupCreate(key, group: "g", start: .end))
        let clock = ContinuousClock()
        let start = clock.now
        let read = try await redis.execute(.xreadgroup(group: "g", consumer: "c", streams: [(key, .newEntries)], block: .milliseconds(800)))
        let elapsed = clock.now - start
        #expect(read.isEmpty)
        #expect(elapsed >= .milliseconds(790))
        #expect(try await redis.execute(.ping()) == "PONG")
        _ = try await redis.execute(.del([key]))
    }

    @Test func blockingReadsDoNotDelayOtherTasks() async throws {
        let key = TestRedis.key()
        let setup = try await TestRedis.connect()
        try await setup.execute(.xgroupCreate(key, group: "g", start: .end))
        let readers = [try await TestRedis.connect(), try await TestRedis.connect()]
        let clock = ContinuousClock()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (i, reader) in readers.enumerated() {
                group.addTask {
                    _ = try await reader.execute(.xreadgroup(group: "g", consumer: "c\(i)", streams: [(key, .newEntries)], block: .milliseconds(1500)))
                }
            }
            try await Task.sleep(for: .milliseconds(100))
            // With both readers blocked in Redis, ordinary work still runs at once.
            let start = clock.now
            var ticks = 0
            for _ in 0..<10 {
                try await Task.sleep(for: .milliseconds(5))
                ticks += 1
            }
            let elapsed = clock.now - start
            #expect(ticks == 10)
            #expect(elapsed < .milliseconds(700), "ten 5 ms sleeps took \(elapsed) while two readers blocked")
            try await group.waitForAll()
        }
        _ = try await setup.execute(.del([key]))
    }
}
