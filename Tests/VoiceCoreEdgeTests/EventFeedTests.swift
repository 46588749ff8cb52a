import Foundation
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import Synchronization
import Testing
import VoiceCoreBus
import VoiceCoreEvents
import VoiceCoreRedis
import VoiceCoreSimulation
import VoiceCoreTenants
import VoiceCoreTestSupport
import VoiceCoreTime
@testable import VoiceCoreEdge

/// An edge listening on a port of its own with the live event feed, over the fixture's tenant,
/// streams and Redis.
final class FeedEdge: @unchecked Sendable {
    let fixture: EdgeFixture
    let feed: EventFeed
    let port: Int
    let services: ServiceGroup
    let running: Task<Void, any Error>
    let clients = MultiThreadedEventLoopGroup(numberOfThreads: 1)

    init(fixture: EdgeFixture, configuration: EventFeedConfiguration, redis: RedisConfiguration) async throws {
        self.fixture = fixture
        let streams = StreamCategory.allCases.flatMap { fixture.naming.streams($0, kind: .event) }
        let tail = try await StreamTail.connect(redis, clientName: "test-feed", configuration: StreamTail.Configuration(streams: streams, block: .milliseconds(500)))
        feed = EventFeed(tail: tail, naming: fixture.naming, configuration: configuration)
        var edge = Edge(configuration: EdgeConfiguration(host: "127.0.0.1", port: 0, publicBaseURL: EdgeFixture.publicBase, tenantCacheTTL: .zero,
                                                         adminKey: EdgeFixture.adminKey),
                        publisher: fixture.publisher, lookup: fixture.directory, directory: fixture.directory)
        edge.eventFeed = feed
        let listening = Mutex<Int?>(nil)
        services = ServiceGroup(services: [edge.application(onServerRunning: { channel in listening.withLock { $0 = channel.localAddress?.port } }), feed],
                                logger: Logger(label: "test.feed"))
        let services = self.services
        running = Task { try await services.run() }
        let deadline = ContinuousClock.now + .seconds(10)
        while listening.withLock({ $0 }) == nil || !feed.isFollowing {
            guard ContinuousClock.now < deadline else { throw TestError("the edge or its feed did not start") }
            try await Task.sleep(for: .milliseconds(10))
        }
        port = try #require(listening.withLock { $0 })
    }

    static func start(_ configuration: EventFeedConfiguration = EventFeedConfiguration(), redisURL: String = TestServers.redisURL) async throws -> FeedEdge {
        let fixture = try await EdgeFixture(requestsPerSecond: 1000, redisURL: redisURL)
        return try await FeedEdge(fixture: fixture, configuration: configuration, redis: try RedisConfiguration(url: redisURL))
    }

    /// Opens `GET path` with the tenant's key (or `key`).
    func connect(_ path: String = "/v1/events", key: String? = nil, lastEventID: String? = nil, reading: Bool = true,
                 onItem: (@Sendable (EventStreamClient.Item) -> Void)? = nil) async throws -> EventStreamClient {
        var headers = [("Authorization", "Bearer \(key ?? fixture.apiKey)")]
        if let lastEventID { headers.append(("Last-Event-ID", lastEventID)) }
        return try await EventStreamClient.connect(port: port, path: path, headers: headers, group: clients, reading: reading, onItem: onItem)
    }

    /// A second tenant and its API key.
    func otherTenant() async throws -> (Identifier, String) {
        let provisioned = try await fixture.directory.provision(NewTenant(name: "Other Co", twilioAuthToken: "tok-other", requestsPerSecond: 1000),
                                                               publisher: nil)
        return (provisioned.tenant.id, provisioned.apiKey.plaintext)
    }

    /// Waits until the tenant holds `count` feed connections.
    func waitForConnections(_ count: Int, of tenant: Identifier? = nil, within timeout: Duration = .seconds(10)) async throws {
        let deadline = ContinuousClock.now + timeout
        while feed.connections(of: tenant ?? fixture.tenant) != count {
            guard ContinuousClock.now < deadline else {
                throw TestError("the tenant holds \(feed.connections(of: tenant ?? fixture.tenant)) feed connections, not \(count)")
            }
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    func stop() async throws {
        await services.triggerGracefulShutdown()
        _ = await running.result
        try await clients.shutdownGracefully()
        try await fixture.drop()
    }
}

/// A call started for `tenant` (its subject, the call id, picks the partition).
func callStarted(_ call: Identifier = .v7()) -> CallStarted {
    CallStarted(callID: call, provider: .twilio, providerCallID: "CA\(call)", direction: .inbound, from: "+14155550100", to: "+14155550199",
                startedAt: .now)
}

func leadCreated(notes: String? = nil) -> LeadCreated {
    LeadCreated(leadID: .v7(), intent: .sales, source: .api, notes: notes, createdAt: .now)
}

/// The structured CloudEvent of a frame's data.
func cloudEvent(_ data: String) throws -> [String: Any] {
    try #require(try JSONSerialization.jsonObject(with: Data(data.utf8)) as? [String: Any])
}

@Suite("The live event feed (GET /v1/events)", .serialized)
struct EventFeedTests {
    @Test func publishedEventsReachTheirTenantOnlyAsCloudEvents() async throws {
        let edge = try await FeedEdge.start()
        let (other, otherKey) = try await edge.otherTenant()
        let mine = try await edge.connect()
        #expect(mine.status == 200)
        #expect(mine.headers.first { $0.name.lowercased() == "content-type" }?.value.hasPrefix("text/event-stream") == true)
        let theirs = try await edge.connect(key: otherKey)
        let mirror = try await edge.connect("/admin/tenants/\(edge.fixture.tenant)/events", key: EdgeFixture.adminKey)
        #expect(mirror.status == 200)
        try await edge.waitForConnections(2)

        let call = Identifier.v7()
        let published = try await edge.fixture.publisher.publish(callStarted(call), tenant: edge.fixture.tenant)
        let lead = try await edge.fixture.publisher.publish(leadCreated(), tenant: other)

        let received = await mine.events(1, within: .seconds(5))
        let event = try #require(received.first)
        #expect(event.type == CallStarted.type)
        #expect(event.id == "\(published.entryID)@\(published.stream)")
        let json = try cloudEvent(event.data)
        #expect(json["specversion"] as? String == "1.0")
        #expect(json["id"] as? String == published.eventID.description)
        #expect(json["type"] as? String == CallStarted.type)
        #expect(json["tenantid"] as? String == edge.fixture.tenant.description)
        #expect(json["subject"] as? String == call.description)
        #expect(Timestamp(rfc3339: try #require(json["time"] as? String)) != nil)
        #expect((json["data"] as? [String: Any])?["call_id"] as? String == call.description)
        #expect(await mine.events(1, within: .milliseconds(500)).isEmpty, "the other tenant's lead is not sent to this one")

        let theirEvents = await theirs.events(1, within: .seconds(5))
        #expect(theirEvents.map(\.type) == [LeadCreated.type])
        #expect(theirEvents.first?.id == "\(lead.entryID)@\(lead.stream)")
        #expect(await mirror.events(1, within: .seconds(5)).first?.id == event.id, "the admin mirror streams the tenant's events")

        let unauthorized = try await edge.connect(key: "vck_nope")
        #expect(unauthorized.status == 401)
        let unknownTenant = try await edge.connect("/admin/tenants/\(Identifier.v7())/events", key: EdgeFixture.adminKey)
        #expect(unknownTenant.status == 404)
        for client in [mine, theirs, mirror] { await client.close() }
        try await edge.stop()
    }

    @Test func typesFilterSendsOnlyTheTypesAskedAndRefusesUnknownOnes() async throws {
        let edge = try await FeedEdge.start()
        let leads = try await edge.connect("/v1/events?types=\(LeadCreated.type)")
        let both = try await edge.connect("/v1/events?types=\(LeadCreated.type),\(CallStarted.type)")
        try await edge.waitForConnections(2)
        try await edge.fixture.publisher.publish(callStarted(), tenant: edge.fixture.tenant)
        try await edge.fixture.publisher.publish(leadCreated(), tenant: edge.fixture.tenant)
        #expect(await leads.events(2, within: .seconds(2)).map(\.type) == [LeadCreated.type])
        #expect(Set(await both.events(2, within: .seconds(5)).compactMap(\.type)) == [LeadCreated.type, CallStarted.type])

        let unknown = try await edge.connect("/v1/events?types=\(LeadCreated.type),voicecore.nothing.happened")
        #expect(unknown.status == 400)
        _ = await unknown.next(within: .seconds(2))
        #expect(unknown.body.contains("voicecore.nothing.happened"))
        #expect(unknown.body.contains("\"types\""))
        #expect(try await edge.connect("/v1/events?types=").status == 400)
        #expect(try await edge.connect("/v1/events?type=\(LeadCreated.type)").status == 400, "an unknown parameter is refused")
        #expect(try await edge.connect(lastEventID: "yesterday").status == 400)
        await leads.close()
        await both.close()
        try await edge.stop()
    }

    @Test func resumingWithLastEventIDAcrossPartitionsMissesNothingAndRepeatsNothing() async throws {
        // A closed connection frees its slot at the next write: heartbeats come often here.
        let edge = try await FeedEdge.start(EventFeedConfiguration(heartbeat: .milliseconds(100), catchUpPage: 3))
        let (other, _) = try await edge.otherTenant()
        let first = try await edge.connect()
        try await edge.waitForConnections(1)
        var expected: [Identifier] = []
        for _ in 0..<3 { expected.append(try await edge.fixture.publisher.publish(callStarted(), tenant: edge.fixture.tenant).eventID) }
        let before = await first.events(3, within: .seconds(5))
        #expect(before.count == 3)
        let lastSeen = try #require(before.last?.id)
        await first.close()
        try await edge.waitForConnections(0)

        // While the client is away: events on every partition and category, the other tenant's between them.
        for index in 0..<24 {
            let entry = index % 2 == 0 ? try await edge.fixture.publisher.publish(callStarted(), tenant: edge.fixture.tenant)
                                       : try await edge.fixture.publisher.publish(leadCreated(), tenant: edge.fixture.tenant)
            expected.append(entry.eventID)
            try await edge.fixture.publisher.publish(callStarted(), tenant: other)
        }
        let resumed = try await edge.connect(lastEventID: lastSeen)
        try await edge.waitForConnections(1)
        for _ in 0..<4 { expected.append(try await edge.fixture.publisher.publish(leadCreated(), tenant: edge.fixture.tenant).eventID) }
        let after = await resumed.events(28, within: .seconds(5))
        #expect(await resumed.events(1, within: .milliseconds(500)).isEmpty, "nothing more, no duplicate")

        let all = before + after
        let ids = try all.map { try #require(($0.id).flatMap(TailPosition.init)) }
        #expect(ids == ids.sorted() && Set(ids).count == ids.count, "in the feed's order, each once")
        let eventIDs = try all.map { try #require(try cloudEvent($0.data)["id"] as? String) }
        #expect(eventIDs == expected.map(\.description) || Set(eventIDs) == Set(expected.map(\.description)))
        #expect(eventIDs.count == expected.count)
        #expect(Set(ids.map(\.stream)).count > 3, "the events spread over several streams")
        await resumed.close()
        try await edge.stop()
    }

    @Test func aResumeFromEntriesNoLongerRetainedIsToldItMissedSome() async throws {
        let edge = try await FeedEdge.start()
        let client = try await edge.connect()
        try await edge.waitForConnections(1)
        // One call: one stream.
        let call = Identifier.v7()
        var stream = ""
        for _ in 0..<4 { stream = try await edge.fixture.publisher.publish(callStarted(call), tenant: edge.fixture.tenant).stream }
        let seen = await client.events(4, within: .seconds(5))
        await client.close()
        let firstID = try #require(seen.first?.id)
        // Retention trims the stream to its last entry: the second and third are gone.
        _ = try await edge.fixture.redis.execute(.xtrim(stream, .maxLength(1, approximate: false)))
        let resumed = try await edge.connect(lastEventID: firstID)
        let items = await resumed.events(2, within: .seconds(2))
        #expect(items.first?.type == "missed")
        #expect(items.first?.data.contains(firstID) == true)
        #expect(items.count == 2 && items[1].id == seen.last?.id, "what is still retained follows")
        await resumed.close()
        try await edge.stop()
    }

    @Test func aQuietStreamGetsHeartbeatComments() async throws {
        let edge = try await FeedEdge.start(EventFeedConfiguration(heartbeat: .milliseconds(200)))
        let client = try await edge.connect()
        var heartbeats = 0
        let deadline = ContinuousClock.now + .seconds(3)
        while heartbeats < 3, ContinuousClock.now < deadline, let item = await client.next(within: .seconds(1)) {
            if item == .comment("") { heartbeats += 1 }
        }
        #expect(heartbeats == 3)
        await client.close()
        try await edge.stop()
    }

    @Test func beyondTheTenantsConnectionLimitTheAnswerIs429AndAClosedConnectionFreesItsSlot() async throws {
        let edge = try await FeedEdge.start(EventFeedConfiguration(connectionsPerTenant: 2, heartbeat: .milliseconds(100), retryAfterSeconds: 7))
        let (_, otherKey) = try await edge.otherTenant()
        let one = try await edge.connect()
        let two = try await edge.connect()
        #expect(one.status == 200 && two.status == 200)
        let three = try await edge.connect()
        #expect(three.status == 429)
        #expect(three.headers.first { $0.name.lowercased() == "retry-after" }?.value == "7")
        _ = await three.next(within: .seconds(2))
        #expect(three.body.contains("open event feed connections"))
        #expect(try await edge.connect(key: otherKey).status == 200, "the limit is per tenant")

        await one.close()
        try await edge.waitForConnections(1)
        let again = try await edge.connect()
        #expect(again.status == 200, "a closed connection frees its slot")
        await two.close()
        await again.close()
        try await edge.stop()
    }

    @Test func aClientThatStopsReadingIsDisconnectedWhileOthersKeepReceiving() async throws {
        // The bound is above one publish batch (100), so the reading client is never cut off by a
        // burst; the stalled one passes it once the kernel's buffers are full.
        let edge = try await FeedEdge.start(EventFeedConfiguration(queueFrames: 256))
        let arrived = Mutex(0)
        let reader = try await edge.connect { item in
            if case .event = item { arrived.withLock { $0 += 1 } }
        }
        let stalled = try await edge.connect(reading: false)
        try await edge.waitForConnections(2)
        // Far more than the kernel's socket buffers hold: the stalled client's queue must fill.
        let notes = String(repeating: "a note long enough to fill socket buffers quickly. ", count: 80)
        let total = 3000
        let received = Task { await reader.events(total, within: .seconds(10)) }
        var published = 0
        while published < total {
            let batch = (0..<100).map { _ in
                (envelope: EventEnvelope(leadCreated(notes: notes), tenant: edge.fixture.tenant, source: "/test"), category: StreamCategory.crm, kind: MessageKind.event)
            }
            for result in await edge.fixture.publisher.publish(batch: batch) { _ = try result.get() }
            published += batch.count
            // Paced by the reading client (a debug-built test client parses slower than Redis
            // takes events): it stays within its queue's bound, the stalled one falls ever further behind.
            let deadline = ContinuousClock.now + .seconds(10)
            while arrived.withLock({ $0 }) < published, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(5)) }
        }
        try await edge.waitForConnections(1, within: .seconds(20))
        let got = await received.value.count
        #expect(got == total, "the reading client got every event (\(got) of \(total); \(reader.isClosed ? "closed" : "open"))")
        #expect(stalled.status == 200)
        // Reading again, the stalled client finds the connection closed after what the kernel held.
        stalled.resumeReading()
        while await stalled.next(within: .seconds(5)) != nil {}
        #expect(stalled.isClosed, "the edge closed the stalled connection")
        await reader.close()
        try await edge.stop()
    }

    @Test func withNobodyConnectedTheFeedReadsOnlyWhatItObservesAndAFirstClientMissesNothing() async throws {
        // A closed connection frees its slot at the next write: heartbeats come often here.
        let edge = try await FeedEdge.start(EventFeedConfiguration(heartbeat: .milliseconds(100)))
        #expect(!edge.feed.followsEveryStream, "with nobody connected only the observed types' streams are read")
        // Events on many streams, one after another, while the first client connects.
        let published = Mutex<[(PublishedEntry, connected: Bool)]>([])
        let connected = Atomic<Bool>(false)
        let publishing = Task {
            for index in 0..<400 {
                let connectedBefore = connected.load(ordering: .acquiring)
                let entry = index % 2 == 0 ? try await edge.fixture.publisher.publish(callStarted(), tenant: edge.fixture.tenant)
                                           : try await edge.fixture.publisher.publish(leadCreated(), tenant: edge.fixture.tenant)
                published.withLock { $0.append((entry, connectedBefore)) }
                try await Task.sleep(for: .milliseconds(2))
                if connectedBefore, published.withLock({ $0.count { $0.connected } }) >= 100 { return }
            }
        }
        try await Task.sleep(for: .milliseconds(150))
        let client = try await edge.connect()
        #expect(client.status == 200)
        connected.store(true, ordering: .releasing)
        try await publishing.value
        let all = published.withLock { $0 }
        let afterConnecting = all.count { $0.connected }
        #expect(afterConnecting >= 100)
        #expect(edge.feed.followsEveryStream, "a connected client makes the feed read every stream")

        // Every event published after the connection was accepted arrives, in the feed's order,
        // once; the feed may start a little before (what it read when the connection was accepted).
        let expected = all.map { "\($0.0.entryID)@\($0.0.stream)" }.sorted { TailPosition($0)! < TailPosition($1)! }
        let firstAfter = try #require(all.first { $0.connected }).0
        let mustArrive = expected.drop { TailPosition($0)! < TailPosition(entry: firstAfter.entryID, stream: firstAfter.stream) }
        var received: [String] = []
        let deadline = ContinuousClock.now + .seconds(10)
        while received.last != expected.last, ContinuousClock.now < deadline {
            received += await client.events(1, within: .seconds(1)).compactMap(\.id)
        }
        #expect(Set(received).count == received.count, "no event twice")
        let missing = Set(mustArrive).subtracting(received).count
        #expect(missing == 0, "\(missing) of \(mustArrive.count) events published after the connection was accepted are missing")
        let first = try #require(received.first)
        let start = try #require(expected.firstIndex(of: first))
        let inOrderAndContiguous = received == Array(expected[start...])
        #expect(inOrderAndContiguous, "a contiguous run of what was published, in order")
        #expect(Set(received.compactMap { TailPosition($0)?.stream }).count > 3, "over several streams")

        await client.close()
        let closedBy = ContinuousClock.now + .seconds(10)
        while edge.feed.followsEveryStream, ContinuousClock.now < closedBy { try await Task.sleep(for: .milliseconds(20)) }
        #expect(!edge.feed.followsEveryStream, "the last client gone, the feed reads only what it observes again")
        try await edge.stop()
    }

    @Test func afterARedisRestartTheFeedGoesOnWithoutLoss() async throws {
        let server = RestartableRedis(ports: 26_000..<26_900, appendOnly: true)
        try await server.start()
        let edge = try await FeedEdge.start(redisURL: server.url)
        let client = try await edge.connect()
        try await edge.waitForConnections(1)
        let before = try await edge.fixture.publisher.publish(callStarted(), tenant: edge.fixture.tenant)
        #expect(await client.events(1, within: .seconds(5)).first?.id == "\(before.entryID)@\(before.stream)")

        try await server.stop()
        try await Task.sleep(for: .milliseconds(300))
        try await server.start()
        var after: [PublishedEntry] = []
        let deadline = ContinuousClock.now + .seconds(15)
        while after.count < 3, ContinuousClock.now < deadline {
            if let entry = try? await edge.fixture.publisher.publish(callStarted(), tenant: edge.fixture.tenant) {
                after.append(entry)
            } else {
                try await Task.sleep(for: .milliseconds(100))
            }
        }
        #expect(after.count == 3)
        let events = await client.events(3, within: .seconds(10))
        #expect(events.map(\.id) == after.map { "\($0.entryID)@\($0.stream)" }.sorted { (TailPosition($0) ?? TailPosition(entry: .zero, stream: "")) < (TailPosition($1) ?? TailPosition(entry: .zero, stream: "")) },
                "every event published after the restart reaches the open connection, in order")
        await client.close()
        try await edge.stop()
        try await server.stop()
    }
}
