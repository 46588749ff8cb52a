import Foundation
import Testing
import VoiceCoreBus
import VoiceCoreEvents
import VoiceCoreRedis
import VoiceCoreTime
@testable import VoiceCoreEdge

/// Issue 33 at the edge: the replies an edge keeps in memory hold what a caller said; a
/// `CallerErased` makes it drop those of the erased calls, on the real Redis.
@Suite struct TurnRepliesErasureTests {
    @Test("CallerErased on the tenants stream drops the erased calls' cached replies; another call's stay")
    func erasedCallsRepliesLeaveTheCache() async throws {
        let naming = StreamNaming(partitions: 4, prefix: "te\(UUID().uuidString.prefix(8).lowercased())")
        let tenant = Identifier.v7()
        let redis = try await RedisClient.connect(try RedisConfiguration(url: TestServers.redisURL))
        let publisher = Publisher(connection: redis, configuration: PublisherConfiguration(source: "/test", naming: naming))
        // The tail as `voicecore edge` configures it: conversations and tenants event streams.
        let tail = try await StreamTail.connect(try RedisConfiguration(url: TestServers.redisURL), clientName: "test-turns-erasure",
                                                configuration: StreamTail.Configuration(
                                                    streams: naming.streams(.conversations, kind: .event) + naming.streams(.tenants, kind: .event),
                                                    block: .milliseconds(200)))
        let turns = TurnReplies(tail: tail)
        let running = Task { try await turns.run() }
        defer { running.cancel() }
        let deadline = ContinuousClock.now + .seconds(10)
        while !turns.isFollowing {
            guard ContinuousClock.now < deadline else { throw TestError("TurnReplies did not start following") }
            try await Task.sleep(for: .milliseconds(5))
        }

        let erasedCall = Identifier.v7(), otherCall = Identifier.v7()
        for call in [erasedCall, otherCall] {
            let command = ReportCallerTurn.commandID(callID: call, turn: 1)
            let reply = ReceptionistReplied(callID: call, provider: .twilio, providerCallID: "CA-\(call)", turn: 1, channel: .gather,
                                            heard: "this is Zebulon Quartermaine", text: "Thanks, Zebulon.", action: .continue,
                                            decidedBy: .builtIn, repliedAt: .now)
            _ = try await publisher.publish(EventEnvelope(reply, tenant: tenant, source: "/services/receptionist", causationID: command,
                                                          id: ReceptionistReplied.replyID(commandID: command)),
                                            category: .conversations, kind: .event)
            let stream = naming.stream(for: .conversations, kind: .event, tenant: tenant, subject: call.description)
            let answered = try await turns.reply(to: command, stream: stream, deadline: .seconds(10), alreadyPublished: false)
            #expect(answered?.callID == call)
        }
        #expect(turns.remembers(call: erasedCall) && turns.remembers(call: otherCall))

        let erased = CallerErased(erasureID: .v7(), tenantID: tenant, identifierKind: .phone, identifierHash: String(repeating: "b", count: 64),
                                  callIDs: [erasedCall], contactIDs: [], leadIDs: [], counts: [:], erasedAt: .now)
        _ = try await publisher.publish(EventEnvelope(erased, tenant: tenant, source: "/test"), category: .tenants, kind: .event)
        let forgetBy = ContinuousClock.now + .seconds(10)
        while turns.remembers(call: erasedCall) {
            guard ContinuousClock.now < forgetBy else { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(!turns.remembers(call: erasedCall), "the erased call's reply (what the caller said) is still in the edge's memory")
        #expect(turns.remembers(call: otherCall), "another call's reply stays")

        running.cancel()
        _ = try? await running.value
        let keys = try await redis.scanAll(match: "\(naming.prefix):*")
        if !keys.isEmpty { _ = try await redis.execute(.del(keys)) }
        await redis.close()
    }
}
