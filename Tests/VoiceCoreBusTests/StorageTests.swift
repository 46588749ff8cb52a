import Foundation
import Testing
import VoiceCoreBus
import VoiceCoreEvents
import VoiceCoreExecutors
import VoiceCoreRedis
import VoiceCoreTestSupport
import VoiceCoreTime

/// The bus's storage primitives against the real local Redis. Each test writes under a prefix of
/// its own; keys and layouts are checked against what the services' earlier builds wrote, so data
/// already in Redis keeps its meaning.
@Suite("The bus's storage primitives against a real Redis")
struct StorageTests {
    private func connected() async throws -> (bus: BusConnection, raw: RedisClient) {
        let raw = RedisClient(try await TestRedis.connect())
        return (BusConnection(raw), raw)
    }

    private func hash(_ key: String, _ raw: RedisClient) async throws -> [String: String] {
        let items = try await raw.send("HGETALL", .string(key)).array ?? []
        return Dictionary(stride(from: 0, to: items.count - 1, by: 2).compactMap { index in
            items[index].string.map { ($0, items[index + 1].string ?? "") }
        }, uniquingKeysWith: { _, last in last })
    }

    // MARK: Outages

    @Test func aServerThatIsGoneFailsEveryPrimitiveAsAnOutageAndTheyRecover() async throws {
        let server = RestartableRedis()
        try await server.start()
        let connection = try await BusConnection.connect(try server.configuration, name: "vc-test:storage")
        let state = EntityStateStore(connection: connection)
        let queue = ScheduledJobQueue(connection: connection, prefix: "outage", name: "jobs", failures: "failures")
        let index = ClaimIndex(connection: connection)
        try await state.write([("outage:{p00}:calls:state:calls:c", ["status": "ringing"])])

        server.kill()
        let failures: [any Error] = await [
            capture { _ = try await state.fields(of: "outage:{p00}:calls:state:calls:c") },
            capture { try await queue.enqueue(id: "j", payload: [1]) },
            capture { _ = try await index.resolve(in: "outage:{crm-contacts:t}", values: self.values("+1", nil), proposed: "A", fallback: "B") },
            capture { _ = try await StreamInspector(connection: connection).head(of: "outage:{p00}:calls:events") },
        ].compactMap { $0 }
        // An outage, never the entry's fault nor a refused input: consumers wait it out.
        #expect(failures.count == 4)
        #expect(failures.allSatisfy { $0.isDependencyOutage && !$0.isRefusedInput })

        // Back with its AOF: the same connection reconnects by itself.
        try await server.start()
        try await eventually("the connection is back") {
            (try? await state.fields(of: "outage:{p00}:calls:state:calls:c")) == ["status": "ringing"]
        }
        #expect(try await queue.enqueue(id: "j", payload: [1]))
        await connection.close()
        server.kill()
    }

    private func capture(_ body: () async throws -> Void) async -> (any Error)? {
        do {
            try await body()
            return nil
        } catch {
            return error
        }
    }

    // MARK: EntityStateStore

    @Test func stateIsWrittenMergedAndExpires() async throws {
        let (bus, raw) = try await connected()
        let stream = "\(TestRedis.prefix()):{p03}:calls"
        let store = EntityStateStore(connection: bus, ttl: .seconds(600))
        let key = EntityStateStore.key(stream: stream, owner: "calls", entity: "c1")
        // The services' earlier builds wrote `<stream>:state:<service>:<entity>`.
        #expect(key == "\(stream):state:calls:c1")
        #expect(key.hasPrefix(EntityStateStore.keyPrefix(stream: stream)))
        #expect(try await store.fields(of: key).isEmpty)

        try await store.write([(key, ["status": "ringing", "sequence": "1"])])
        try await store.write([(key, ["status": "answered"]), (key, ["answered_at": "2026-01-01T00:00:00Z"])])
        #expect(try await store.fields(of: key) == ["status": "answered", "sequence": "1", "answered_at": "2026-01-01T00:00:00Z"])
        #expect(try await hash(key, raw) == ["status": "answered", "sequence": "1", "answered_at": "2026-01-01T00:00:00Z"])
        let ttl = try #require(try await raw.send("TTL", .string(key)).int)
        #expect(ttl > 590 && ttl <= 600)
        _ = try await raw.execute(.del([key]))
    }

    @Test func stateWrittenByAnEarlierBuildIsRead() async throws {
        let (bus, raw) = try await connected()
        let key = EntityStateStore.key(stream: "\(TestRedis.prefix()):{p00}:calls", owner: "ai", entity: "c9")
        _ = try await raw.send("HSET", .string(key), "heard", "hello", "strongest", "booking")
        #expect(try await EntityStateStore(connection: bus).fields(of: key) == ["heard": "hello", "strongest": "booking"])
        _ = try await raw.execute(.del([key]))
    }

    @Test func aStateWriteRedisRefusesThrowsAndIsNoOutage() async throws {
        let (bus, raw) = try await connected()
        let key = "\(TestRedis.prefix()):{p00}:calls:state:calls:x"
        _ = try await raw.send("SET", .string(key), "not a hash")
        let error = await #expect(throws: RedisError.self) {
            try await EntityStateStore(connection: bus).write([(key, ["status": "ended"])])
        }
        #expect(error?.serverCode == "WRONGTYPE")
        #expect(error?.isDependencyOutage == false)
        _ = try await raw.execute(.del([key]))
    }

    // MARK: ScheduledJobQueue

    @Test func jobsAreEnqueuedOnceClaimedWhenDueAndLeased() async throws {
        let (bus, raw) = try await connected()
        let prefix = TestRedis.prefix()
        let queue = ScheduledJobQueue(connection: bus, prefix: prefix, name: "integrations", failures: "webhook-failures")
        #expect(queue.namespace == "\(prefix):{integrations}")
        #expect(queue.failuresStream == "\(prefix):{integrations}:webhook-failures")
        let now = Timestamp.now
        #expect(try await queue.enqueue(id: "a", payload: Array("A".utf8), at: now))
        #expect(try await queue.enqueue(id: "a", payload: Array("other".utf8), at: now) == false)  // queued already
        #expect(try await queue.enqueue(id: "b", payload: Array("B".utf8), at: now.adding(microseconds: 60_000_000)))
        #expect(try await queue.pending() == 2)
        // The earlier build's layout: due times in a sorted set, payloads in a hash.
        #expect(try await raw.send("ZSCORE", .string("\(prefix):{integrations}:due"), "a").string == String(now.millisecondsSinceEpoch))
        #expect(try await raw.send("HGET", .string("\(prefix):{integrations}:jobs"), "a").string == "A")

        // Only what is due, and a claimed job is not handed out again before its lease ends.
        #expect(try await queue.claim(limit: 10, lease: .seconds(30), now: now) == [ScheduledJobQueue.Job(id: "a", payload: Array("A".utf8))])
        #expect(try await queue.claim(limit: 10, lease: .seconds(30), now: now.adding(microseconds: 29_000_000)).isEmpty)
        #expect(try await queue.claim(limit: 10, lease: .seconds(30), now: now.adding(microseconds: 30_000_000)).map(\.id) == ["a"])
        #expect(try await queue.claim(limit: 1, lease: .seconds(30), now: now.adding(microseconds: 90_000_000)).count == 1)

        try await queue.complete(id: "a")
        #expect(try await queue.enqueue(id: "a", payload: Array("A".utf8), at: now) == false)  // completed within a day
        let marker = try #require(try await raw.send("TTL", .string("\(prefix):{integrations}:done:a")).int)
        #expect(marker > 86_000 && marker <= 86_400)
        #expect(try await queue.pending() == 1)
        _ = try await raw.execute(.del(["\(prefix):{integrations}:due", "\(prefix):{integrations}:jobs", "\(prefix):{integrations}:done:a"]))
    }

    @Test func aFailedJobIsRescheduledWithItsNewPayloadOrRecordedAsAFailure() async throws {
        let (bus, raw) = try await connected()
        let prefix = TestRedis.prefix()
        let queue = ScheduledJobQueue(connection: bus, prefix: prefix, name: "integrations", failures: "webhook-failures")
        let now = Timestamp.now
        try await queue.enqueue(id: "j", payload: Array("attempt 0".utf8), at: now)
        _ = try await queue.claim(limit: 10, lease: .seconds(60), now: now)
        try await queue.reschedule(id: "j", payload: Array("attempt 1".utf8), at: now.adding(microseconds: 5_000_000))
        #expect(try await queue.claim(limit: 10, lease: .seconds(60), now: now.adding(microseconds: 4_000_000)).isEmpty)
        #expect(try await queue.claim(limit: 10, lease: .seconds(60), now: now.adding(microseconds: 5_000_000)) == [ScheduledJobQueue.Job(id: "j", payload: Array("attempt 1".utf8))])

        try await queue.abandon(id: "j", record: [("delivery", Array("j".utf8)), ("last_error", Array("HTTP 500".utf8))])
        #expect(try await queue.pending() == 0)
        #expect(try await queue.claim(limit: 10, lease: .seconds(60), now: now.adding(microseconds: 3600_000_000)).isEmpty)
        let entries = try await raw.execute(.xrange(queue.failuresStream))
        #expect(entries.count == 1)
        #expect(entries.first?.fields?.map { [$0.name, $0.string] } == [["delivery", "j"], ["last_error", "HTTP 500"]])
        #expect(try await queue.enqueue(id: "j", payload: Array("again".utf8), at: now))  // not remembered as done
        _ = try await raw.execute(.del(["\(prefix):{integrations}:due", "\(prefix):{integrations}:jobs", queue.failuresStream]))
    }

    // MARK: ClaimIndex

    private static let phone = ClaimIndex.Kind("p")
    private static let email = ClaimIndex.Kind("e")

    private func values(_ phone: String?, _ email: String?) -> [ClaimIndex.Value] {
        [ClaimIndex.Value(Self.phone, phone), ClaimIndex.Value(Self.email, email)]
    }

    @Test func theFirstWriterOfAValueClaimsItForItsOwner() async throws {
        let (bus, raw) = try await connected()
        let index = ClaimIndex(connection: bus)
        let key = "\(TestRedis.prefix()):{crm-contacts:t1}"
        let first = try await index.resolve(in: key, values: values("+4930100", nil), proposed: "A", fallback: "A2")
        #expect(first.owner == "A" && first.values == ["+4930100", nil] && first.refused.isEmpty)
        // Same phone, another proposal: the first claim wins; the e-mail is claimed for A, which had none.
        let second = try await index.resolve(in: key, values: values("+4930100", "a@example.com"), proposed: "B", fallback: "B2")
        #expect(second.owner == "A" && second.values == ["+4930100", "a@example.com"])
        #expect(second.revision > first.revision)
        // Found by e-mail alone; A's phone is not replaced by a touch.
        let third = try await index.resolve(in: key, values: values("+4930999", "a@example.com"), proposed: "C", fallback: "C2")
        #expect(third.owner == "A" && third.values == ["+4930100", "a@example.com"])
        // The layout the CRM's earlier build wrote.
        let fields = try await hash(key, raw)
        #expect(fields["p:+4930100"] == "A" && fields["e:a@example.com"] == "A" && fields["cp:A"] == "+4930100" && fields["ce:A"] == "a@example.com")
        #expect(fields["c:A"] == String(third.revision.microsecondsSinceEpoch))
        #expect(fields["p:+4930999"] == nil)
        // A proposal that names an existing owner with unknown values takes the fallback.
        let fourth = try await index.resolve(in: key, values: values("+4930200", nil), proposed: "A", fallback: "D")
        #expect(fourth.owner == "D")
        _ = try await raw.execute(.del([key]))
    }

    @Test func anUpdateClaimsFreeValuesAndIsRefusedOthersAndRemembersItsID() async throws {
        let (bus, raw) = try await connected()
        let index = ClaimIndex(connection: bus)
        let key = "\(TestRedis.prefix()):{crm-contacts:t2}"
        _ = try await index.resolve(in: key, values: values("+111", nil), proposed: "A", fallback: "A")
        _ = try await index.resolve(in: key, values: values("+222", "b@example.com"), proposed: "B", fallback: "B")
        // A changes its phone to a free one, and asks for B's e-mail: refused for that kind only.
        let changed = try await index.update(in: key, owner: "A", values: values("+333", "b@example.com"))
        #expect(changed.owner == "A" && changed.values == ["+333", nil] && changed.refused == [Self.email])
        // A's old number stays A's.
        #expect(try await index.resolve(in: key, values: values("+111", nil), proposed: "X", fallback: "X").owner == "A")
        // An update through a new id naming B's phone reaches B, and that id keeps reaching B.
        let aliased = try await index.update(in: key, owner: "N", values: values("+222", nil))
        #expect(aliased.owner == "B")
        #expect(try await index.update(in: key, owner: "N", values: values(nil, "new@example.com")).owner == "B")
        let fields = try await hash(key, raw)
        #expect(fields["a:N"] == "B" && fields["ce:B"] == "new@example.com" && fields["c:N"] == nil)
        _ = try await raw.execute(.del([key]))
    }

    @Test func anIndexWrittenByAnEarlierBuildResolvesTheSame() async throws {
        let (bus, raw) = try await connected()
        let key = "\(TestRedis.prefix()):{crm-contacts:t3}"
        let future = Timestamp.now.microsecondsSinceEpoch + 60_000_000
        _ = try await raw.send("HSET", .string(key), "p:+555", "OLD", "c:OLD", .string(String(future)), "cp:OLD", "+555")
        let resolution = try await ClaimIndex(connection: bus).resolve(in: key, values: values("+555", "old@example.com"), proposed: "NEW", fallback: "NEW")
        #expect(resolution.owner == "OLD" && resolution.values == ["+555", "old@example.com"])
        // Strictly after the stored revision even when Redis' clock is behind it.
        #expect(resolution.revision.microsecondsSinceEpoch == future + 1)
        _ = try await raw.execute(.del([key]))
    }

    @Test func concurrentWritersOfOneValueAgreeOnItsOwner() async throws {
        let key = "\(TestRedis.prefix()):{crm-contacts:t4}"
        let owners = try await withThrowingTaskGroup(of: String.self) { group in
            for writer in 0..<8 {
                group.addTask {
                    let (bus, _) = try await self.connected()
                    return try await ClaimIndex(connection: bus).resolve(in: key, values: self.values("+777", nil), proposed: "W\(writer)", fallback: "F\(writer)").owner
                }
            }
            return try await group.reduce(into: Set<String>()) { $0.insert($1) }
        }
        #expect(owners.count == 1)
        _ = try await RedisClient(try await TestRedis.connect()).execute(.del([key]))
    }

    // MARK: StreamInspector

    @Test func theInspectorReadsHeadsGroupsAndCountsBetweenPositions() async throws {
        let (bus, raw) = try await connected()
        let stream = "\(TestRedis.prefix()):{p01}:calls:events"
        let inspector = StreamInspector(connection: bus)
        #expect(try await inspector.head(of: stream) == nil)
        var ids: [StreamEntryID] = []
        for i in 0..<25 { ids.append(try await raw.execute(.xadd(stream, fields: [("n", String(i))]))) }
        let head = try #require(try await inspector.head(of: stream))
        #expect(head.length == 25 && head.lastGeneratedID == ids.last)
        #expect(try await inspector.firstEntryID(of: stream, after: nil) == ids[0])
        #expect(try await inspector.firstEntryID(of: stream, after: ids[9]) == ids[10])
        #expect(try await inspector.firstEntryID(of: stream, after: ids[24]) == nil)
        let afterFifth = try await inspector.count(stream, after: ids[4], through: nil, cap: 100)
        #expect(afterFifth.count == 20 && !afterFifth.capped)
        let throughTenth = try await inspector.count(stream, after: nil, through: ids[9], cap: 100)
        #expect(throughTenth.count == 10 && !throughTenth.capped)
        let capped = try await inspector.count(stream, after: nil, through: nil, cap: 7)
        #expect(capped.count == 7 && capped.capped)
        _ = try await raw.execute(.xgroupCreate(stream, group: "g", start: .after(ids[19]), entriesRead: 20))
        let groups = try await inspector.groups(of: stream)
        #expect(groups.map(\.name) == ["g"] && groups.first?.lag == 5 && groups.first?.lastDeliveredID == ids[19])
        _ = try await raw.execute(.del([stream]))
    }
}
