import Foundation
import Testing
import VoiceCoreEvents
import VoiceCoreRedis
import VoiceCoreTestSupport
import VoiceCoreTime
@testable import VoiceCoreBus

/// The Redis side of erasing a caller, on a private `redis-server` with AOF on: the caller's
/// entries, dead letters, contact claims and call state go, everyone else's stay, readers are
/// waited for, and after the rewrite no file in the AOF directory holds a deleted entry.
@Suite("Erasing a caller's entries from Redis and from its disk", .serialized, .timeLimit(.minutes(3)))
struct StreamErasureTests {
    let tenant = Identifier.v7()
    let otherTenant = Identifier.v7()
    let erasedCall = Identifier.v7()
    let keptCall = Identifier.v7()
    /// Written only in the erased call's entries.
    let marker = "ERASEME-\(UUID().uuidString.prefix(8))"

    /// A reader whose progress lives elsewhere (as the projector's checkpoints do).
    struct CheckpointProgress: ReaderProgressSource {
        let checkpoint: StreamEntryID?
        func answers(forGroup group: String) -> Bool { group.hasPrefix("projector:") }
        func progress() async throws -> ReaderProgress { let checkpoint = checkpoint; return ReaderProgress { _, _ in checkpoint } }
    }

    /// A server of the test's own (one partition: every call shares the stream) and a publisher on it.
    private func start(appendOnly: Bool = true) async throws -> (RestartableRedis, BusConnection, StreamNaming, Publisher) {
        let server = RestartableRedis(ports: 28_000..<29_000, appendOnly: appendOnly)
        try await server.start()
        let connection = try await BusConnection.connect(try server.configuration, name: "vc-test:erasure")
        let naming = StreamNaming(partitions: 1, prefix: "vc")
        let publisher = Publisher(connection: connection.client, configuration: PublisherConfiguration(source: "/test", naming: naming, replicaAcknowledgement: nil))
        return (server, connection, naming, publisher)
    }

    private func chunk(_ call: Identifier, _ sequence: Int, _ text: String) -> TranscriptChunk {
        TranscriptChunk(callID: call, sequence: sequence, track: .inbound, text: text, isFinal: true, confidence: 0.9, startOffsetMs: 0, endOffsetMs: 1)
    }

    /// The transcript texts left on `stream`.
    private func texts(_ redis: RedisClient, _ stream: String) async throws -> [String] {
        try await redis.execute(.xrange(stream)).compactMap { entry in
            guard let data = entry.bytes("data"), let object = try JSONSerialization.jsonObject(with: Data(data)) as? [String: Any] else { return nil }
            return object["text"] as? String
        }
    }

    /// Files of the AOF directory that contain `text`.
    private func aofFiles(of server: RestartableRedis, containing text: String) throws -> [String] {
        let directory = server.directory.appendingPathComponent("appendonlydir")
        let needle = Data(text.utf8)
        return try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { name in
            (try Data(contentsOf: directory.appendingPathComponent(name))).range(of: needle) != nil
        }
    }

    @Test func theCallersEntriesOfOneTenantGoAndEveryoneElsesStayWithTheirGroups() async throws {
        let (server, connection, naming, publisher) = try await start()
        let redis = connection.client
        for sequence in 0..<3 { try await publisher.publish(chunk(erasedCall, sequence, "\(marker) said \(sequence)"), tenant: tenant) }
        try await publisher.publish(chunk(keptCall, 0, "kept caller"), tenant: tenant)
        try await publisher.publish(chunk(erasedCall, 9, "same call id, other tenant"), tenant: otherTenant)
        let stream = naming.stream(.calls, kind: .event, partition: 0)
        // A group that has read everything, with the kept caller's entry still pending.
        _ = try await redis.execute(.xgroupCreate(stream, group: "svc", start: .beginning))
        let delivered = try await redis.readGroup(group: "svc", consumer: "c1", streams: [(stream, .newEntries)], count: 100, block: nil).flatMap(\.entries)
        let keptEntry = try #require(delivered.first { $0["subject"] == keptCall.description && $0["tenantid"] == tenant.description }).id
        try await redis.acknowledge(group: "svc", [(stream, delivered.map(\.id).filter { $0 != keptEntry })])
        let before = try #require(try await redis.execute(.xinfoGroups(stream)).first)

        let erasure = StreamErasure(connection: connection, naming: naming)
        let streams = erasure.streams(tenant: tenant, subject: erasedCall.description, categories: [.calls])
        #expect(streams == [naming.stream(.calls, kind: .command, partition: 0), stream])
        let deleted = try await erasure.deleteEntries(tenant: tenant, subjects: [erasedCall.description], streams: streams)

        #expect(deleted == 3)
        #expect(try await texts(redis, stream).sorted() == ["kept caller", "same call id, other tenant"])
        // Deleted again: nothing more (idempotent).
        #expect(try await erasure.deleteEntries(tenant: tenant, subjects: [erasedCall.description], streams: streams) == 0)
        // The compacted stream keeps its group's position, its pending entry and its counters.
        let after = try #require(try await redis.execute(.xinfoGroups(stream)).first)
        #expect(after.name == "svc" && after.lastDeliveredID == before.lastDeliveredID && after.pending == 1)
        #expect(try await redis.execute(.xpending(stream, group: "svc")).smallestID == keptEntry)
        let info = try await redis.execute(.xinfoStream(stream))
        #expect(info.length == 2 && info.entriesAdded == 5)
        // Publishing goes on after it.
        try await publisher.publish(chunk(keptCall, 1, "after"), tenant: tenant)
        #expect(try await texts(redis, stream).last == "after")
        await connection.close()
        try await server.stop()
    }

    @Test func entriesAReaderHasNotProcessedAreReportedUntilItHas() async throws {
        let (server, connection, naming, publisher) = try await start()
        let redis = connection.client
        let stream = naming.stream(.calls, kind: .event, partition: 0)
        _ = try await redis.execute(.xgroupCreate(stream, group: "svc", start: .beginning))
        _ = try await redis.execute(.xgroupCreate(stream, group: "projector:calls", start: .end))
        var published: [StreamEntryID] = []
        for sequence in 0..<4 { published.append(try await publisher.publish(chunk(erasedCall, sequence, "turn \(sequence)"), tenant: tenant).entryID) }
        let marks = try await StreamErasure(connection: connection, naming: naming).heads(of: [stream, stream + ":missing"])
        #expect(marks == [StreamMark(stream: stream, entry: published[3].description)])

        func behind(checkpoint: StreamEntryID?) async throws -> String? {
            try await StreamErasure(connection: connection, naming: naming, readers: [CheckpointProgress(checkpoint: checkpoint)]).firstReaderBehind(marks)
        }
        // Not delivered yet.
        #expect(try await behind(checkpoint: published[3]) == "group svc on \(stream)")
        // Delivered, the last one still pending.
        let read = try await redis.readGroup(group: "svc", consumer: "c1", streams: [(stream, .newEntries)], count: 10, block: nil).flatMap(\.entries).map(\.id)
        try await redis.acknowledge(group: "svc", [(stream, Array(read.prefix(3)))])
        #expect(try await behind(checkpoint: published[3]) == "group svc on \(stream)")
        try await redis.acknowledge(group: "svc", [(stream, [read[3]])])
        // The projector's checkpoint is short of the mark, then at it; without its source nothing is known.
        #expect(try await behind(checkpoint: published[2]) == "group projector:calls on \(stream)")
        #expect(try await StreamErasure(connection: connection, naming: naming).firstReaderBehind(marks) == "group projector:calls on \(stream)")
        #expect(try await behind(checkpoint: published[3]) == nil)
        await #expect(throws: StreamErasureError.self) {
            _ = try await StreamErasure(connection: connection, naming: naming).firstReaderBehind([StreamMark(stream: stream, entry: "not an id")])
        }
        await connection.close()
        try await server.stop()
    }

    @Test func deadLettersOfTheSubjectGo() async throws {
        let (server, connection, naming, _) = try await start()
        let redis = connection.client
        let deadLetters = naming.stream(.calls, kind: .event, partition: 0) + ":dlq:crm"
        let requeued = naming.stream(.calls, kind: .event, partition: 0) + ":retry:crm"
        for (stream, tenantID, subject, text) in [(deadLetters, tenant, erasedCall, marker), (deadLetters, tenant, keptCall, "kept"),
                                                   (deadLetters, otherTenant, erasedCall, "other tenant"), (requeued, tenant, erasedCall, marker)] {
            _ = try await redis.execute(.xadd(stream, fields: [("dlq.reason", "handler failed"), ("dlq.group", "crm"), ("type", TranscriptChunk.type),
                                                               ("subject", subject.description), ("tenantid", tenantID.description), ("data", text)]))
        }
        let deleted = try await StreamErasure(connection: connection, naming: naming).deleteDeadLetters(tenant: tenant, subjects: [erasedCall.description])
        #expect(deleted == 2)
        #expect(try await redis.execute(.xrange(deadLetters)).compactMap { $0["data"] }.sorted() == ["kept", "other tenant"])
        #expect(try await redis.execute(.xlen(requeued)) == 0)
        await connection.close()
        try await server.stop()
    }

    @Test func theErasedContactsClaimsGoAndAnotherContactsStay() async throws {
        let (server, connection, naming, _) = try await start()
        let index = ClaimIndex(connection: connection)
        let key = ClaimIndex.contactIndexKey(prefix: naming.prefix, tenant: tenant)
        let erased = Identifier.v7(), kept = Identifier.v7(), alias = Identifier.v7()
        func values(_ phone: String?, _ email: String?) -> [ClaimIndex.Value] { [.init(.init("p"), phone), .init(.init("e"), email)] }
        _ = try await index.resolve(in: key, values: values("+15550001111", "erased@example.com"), proposed: erased.description, fallback: Identifier.v7().description)
        _ = try await index.update(in: key, owner: erased.description, values: values("+15550001112", nil))  // the old number stays claimed
        _ = try await index.update(in: key, owner: alias.description, values: values("+15550001111", nil))  // an alias onto the erased contact
        _ = try await index.resolve(in: key, values: values("+15550002222", "kept@example.com"), proposed: kept.description, fallback: Identifier.v7().description)

        let removed = try await StreamErasure(connection: connection, naming: naming).forgetContacts(tenant: tenant, contacts: [erased])
        #expect(removed == 7)  // p: ×2, e:, c:, cp:, ce:, a:
        let fields = try await connection.client.send("HGETALL", .string(key)).array?.compactMap(\.string) ?? []
        #expect(!fields.contains { $0.contains(erased.description) || $0.contains("+1555000111") || $0.contains("erased@") })
        let stranger = Identifier.v7()
        for phone in ["+15550001111", "+15550001112"] {
            #expect(try await index.resolve(in: key, values: values(phone, nil), proposed: stranger.description, fallback: stranger.description).owner == stranger.description)
        }
        #expect(try await index.resolve(in: key, values: values("+15550002222", nil), proposed: stranger.description, fallback: stranger.description).owner == kept.description)
        await connection.close()
        try await server.stop()
    }

    @Test func theCallsStateGoesAndOtherCallsStateStays() async throws {
        let server = RestartableRedis(ports: 28_000..<29_000)
        try await server.start()
        let connection = try await BusConnection.connect(try server.configuration)
        let naming = StreamNaming(partitions: 4, prefix: "vc")
        let state = EntityStateStore(connection: connection)
        func key(_ call: Identifier, _ category: StreamCategory, _ kind: MessageKind, _ owner: String) -> String {
            EntityStateStore.key(stream: naming.stream(for: category, kind: kind, tenant: tenant, subject: call.description), owner: owner, entity: call.description)
        }
        let erasedKeys = [key(erasedCall, .calls, .event, "calls"), key(erasedCall, .calls, .command, "ai"), key(erasedCall, .conversations, .event, "receptionist")]
        let keptKeys = [key(keptCall, .calls, .event, "calls"), key(keptCall, .conversations, .event, "receptionist")]
        try await state.write((erasedKeys + keptKeys).map { ($0, ["from": "+15550001111"]) })

        let deleted = try await StreamErasure(connection: connection, naming: naming).deleteEntityState(tenant: tenant, calls: [erasedCall])
        #expect(deleted == 3)
        for key in erasedKeys { #expect(try await state.fields(of: key).isEmpty) }
        for key in keptKeys { #expect(try await state.fields(of: key) == ["from": "+15550001111"]) }
        // Another tenant's call of that id lives on another partition's keys, or is another call: the tag must match.
        if naming.partition(tenant: otherTenant, subject: keptCall.description) != naming.partition(tenant: tenant, subject: keptCall.description) {
            #expect(try await StreamErasure(connection: connection, naming: naming).deleteEntityState(tenant: otherTenant, calls: [keptCall]) == 0)
        }
        await connection.close()
        try await server.stop()
    }

    @Test func afterTheRewriteNoFileOfTheAOFDirectoryHoldsADeletedEntry() async throws {
        let (server, connection, naming, publisher) = try await start()
        let redis = connection.client
        for sequence in 0..<3 { try await publisher.publish(chunk(erasedCall, sequence, "\(marker) number \(sequence)"), tenant: tenant) }
        // Neighbours in the same stream node, so XDEL alone leaves the deleted bytes in memory.
        for sequence in 0..<20 { try await publisher.publish(chunk(keptCall, sequence, "kept \(sequence)"), tenant: tenant) }
        let erasure = StreamErasure(connection: connection, naming: naming)
        // AOF written once a second (appendfsync everysec): wait until the marker is on disk.
        for _ in 0..<50 where try aofFiles(of: server, containing: marker).isEmpty { try await Task.sleep(for: .milliseconds(100)) }
        #expect(try !aofFiles(of: server, containing: marker).isEmpty)

        #expect(try await erasure.deleteEntries(tenant: tenant, subjects: [erasedCall.description], streams: erasure.streams(tenant: tenant, subject: erasedCall.description, categories: [.calls])) == 3)
        // A rewrite already running when the erasure asks for one: it waits and asks again.
        _ = try await redis.send("BGREWRITEAOF")
        let report = try await erasure.rewritePersistence()

        #expect(report.contains("AOF rewritten"))
        #expect(try aofFiles(of: server, containing: marker) == [])
        #expect(try await texts(redis, naming.stream(.calls, kind: .event, partition: 0)).count == 20)
        await connection.close()
        try await server.stop()
    }

    @Test func aServerWithoutAOFIsReported() async throws {
        let (server, connection, naming, _) = try await start(appendOnly: false)
        let report = try await StreamErasure(connection: connection, naming: naming).rewritePersistence()
        #expect(report.contains("AOF is off"))
        #expect(report.contains("no RDB snapshots configured"))
        await connection.close()
        try await server.stop()
    }

    @Test func aTimeWindowAndTypesLimitWhatIsDeleted() async throws {
        let (server, connection, naming, _) = try await start()
        let redis = connection.client
        let stream = naming.stream(.calls, kind: .event, partition: 0)
        let now = UInt64(Timestamp.now.millisecondsSinceEpoch)
        let old = now - 86_400_000 * 30
        for (offset, type) in [(old, "a"), (old + 1, "b"), (now, "a")] {
            _ = try await redis.execute(.xadd(stream, id: StreamEntryID(milliseconds: offset), fields: [("type", type), ("subject", erasedCall.description), ("tenantid", tenant.description)]))
        }
        let erasure = StreamErasure(connection: connection, naming: naming)
        let before = Timestamp(microsecondsSinceEpoch: Int64(now - 86_400_000) * 1000)
        #expect(try await erasure.deleteEntries(tenant: tenant, subjects: [erasedCall.description], streams: [stream], types: ["a"], to: before) == 1)
        #expect(try await redis.execute(.xrange(stream)).map(\.id.milliseconds) == [old + 1, now])
        await #expect(throws: StreamErasureError.self) {
            _ = try await erasure.deleteEntries(tenant: tenant, subjects: [erasedCall.description], streams: [stream], from: before, to: Timestamp(microsecondsSinceEpoch: 0))
        }
        await connection.close()
        try await server.stop()
    }

    @Test func onACluster() async throws {
        try await TestCluster.with(port: 17141) { cluster in
            let connection = try await BusConnection.connect(try cluster.configuration(), name: "vc-test:erasure")
            let redis = connection.client
            let naming = StreamNaming(partitions: 16, prefix: "vc")
            let publisher = Publisher(connection: redis, configuration: PublisherConfiguration(source: "/test", naming: naming, replicaAcknowledgement: nil))
            // Calls on several partitions (so on several masters), one of them erased.
            let calls = [erasedCall] + (0..<6).map { _ in Identifier.v7() }
            for call in calls {
                for sequence in 0..<3 {
                    try await publisher.publish(chunk(call, sequence, call == erasedCall ? "\(marker) \(sequence)" : "kept \(sequence)"), tenant: tenant)
                }
            }
            let streams = naming.streams(.calls, kind: .event)
            for stream in streams { _ = try await redis.execute(.xgroupCreate(stream, group: "svc", start: .beginning)) }
            let erasure = StreamErasure(connection: connection, naming: naming)
            let own = erasure.streams(tenant: tenant, subject: erasedCall.description, categories: [.calls])
            let marks = try await erasure.heads(of: own)
            #expect(marks.count == 1)  // no command was published
            #expect(try await erasure.firstReaderBehind(marks) == "group svc on \(marks[0].stream)")
            let read = try await redis.readGroup(group: "svc", consumer: "c1", streams: streams.map { ($0, .newEntries) }, count: 100, block: nil)
            try await redis.acknowledge(group: "svc", read.map { ($0.stream, $0.entries.map(\.id)) })
            #expect(try await erasure.firstReaderBehind(marks) == nil)

            #expect(try await erasure.deleteEntries(tenant: tenant, subjects: [erasedCall.description], streams: own) == 3)
            var left = 0
            for stream in streams { left += try await redis.execute(.xlen(stream)) }
            #expect(left == 18)
            let report = try await erasure.rewritePersistence()
            #expect(report.split(separator: "\n").count == 6)
            #expect(report.split(separator: "\n").allSatisfy { $0.contains("AOF rewritten") })
            for port in cluster.ports {
                let directory = cluster.directory.appendingPathComponent("cluster/\(port)/appendonlydir")
                for name in try FileManager.default.contentsOfDirectory(atPath: directory.path) {
                    let bytes = try Data(contentsOf: directory.appendingPathComponent(name))
                    #expect(bytes.range(of: Data(marker.utf8)) == nil, "\(port)/\(name) still holds an erased entry")
                }
            }
            await connection.close()
        }
    }
}
