import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import Testing
import VoiceCoreBus
import VoiceCoreEvents
import VoiceCoreRedis
import VoiceCoreServices
import VoiceCoreTenants
import VoiceCoreTime
@testable import VoiceCoreEdge

/// A Gather conversation with the real receptionist (group `receptionist`, built-in policy): the
/// edge's contract with it, end to end on the real Redis and Postgres.
@Suite struct GatherReceptionistTests {
    @Test func theReceptionistAnswersEachGatherTurnAndAGoodbyeHangsUp() async throws {
        let edge = try await GatherConversationTests.ConversingEdge()
        let fixture = edge.fixture
        let dependencies = ServiceDependencies(redis: try RedisConfiguration(url: TestServers.redisURL), naming: fixture.naming,
                                               tenants: TenantProfiles(source: fixture.directory), instance: "gather-test")
        let receptionist = try await ReceptionistService.runner(dependencies, model: nil)
        let running = Task { try await receptionist.run() }
        let urls = edge.urls
        try await edge.test { client in
            let first = try await client.post(edge.gather(turn: 1, speech: "Hello, are you there?"))
            #expect(first.status == .ok)
            #expect(first.text.contains(#"<Gather input="speech dtmf" action="\#(urls.gather(turn: 2))""#), "the conversation goes on")
            let second = try await client.post(edge.gather(turn: 2, speech: "No thanks, that's all. Bye!"))
            #expect(second.text.hasSuffix("<Say>Thank you for calling. Goodbye!</Say><Hangup/></Response>"))
            let retried = try await client.post(edge.gather(turn: 2, speech: "No thanks, that's all. Bye!"))
            #expect(retried.text == second.text, "a retried callback hears the same goodbye")
        }
        // The replies on the call's stream: one per turn, each naming its command.
        let stream = fixture.naming.stream(for: .conversations, kind: .event, tenant: fixture.tenant, subject: edge.callID.description)
        let replies = try await fixture.redis.execute(.xrange(stream)).map { entry in
            try EventEnvelope(fields: (entry.fields ?? []).map { EnvelopeField(name: $0.name, value: $0.value) })
        }.filter { $0.type == ReceptionistReplied.type }
        #expect(replies.count == 2)
        for (turn, envelope) in zip(1..., replies) {
            let command = ReportCallerTurn.commandID(callID: edge.callID, turn: turn)
            #expect(envelope.causationID == command && envelope.id == ReceptionistReplied.replyID(commandID: command))
            let reply = try MessageCodec.decode(ReceptionistReplied.self, from: envelope.data)
            #expect(reply.turn == turn && reply.decidedBy == .builtIn)
        }
        #expect(try await edge.callerTurns().count == 2)
        running.cancel()
        _ = try? await running.value
        try await edge.drop()
    }
    /// The receptionist stops mid-call (its process dies): the caller hears the holding line,
    /// then a message is taken; nothing is lost — the turn waits on its stream, and a receptionist
    /// started again answers it once.
    @Test func theReceptionistStoppedMidCallGivesTheHoldingLineThenAMessageAndLosesNoTurn() async throws {
        // Long enough for a loaded machine to answer turn 1 in time; turn 2 then waits it out twice.
        let edge = try await GatherConversationTests.ConversingEdge(deadline: .seconds(4))
        let fixture = edge.fixture
        let dependencies = ServiceDependencies(redis: try RedisConfiguration(url: TestServers.redisURL), naming: fixture.naming,
                                               tenants: TenantProfiles(source: fixture.directory), instance: "gather-stop-test")
        let first = try await ReceptionistService.runner(dependencies, model: nil)
        let running = Task { try await first.run() }
        let urls = edge.urls
        try await edge.test { client in
            let answered = try await client.post(edge.gather(turn: 1, speech: "Hello, are you open on Saturdays?"))
            #expect(answered.text.contains(#"action="\#(urls.gather(turn: 2))""#), "turn 1 is answered by the running receptionist")
            running.cancel()
            _ = try? await running.value

            let held = try await client.post(edge.gather(turn: 2, speech: "I'd like to book a cleaning."))
            #expect(held.text.hasSuffix(#"<Response><Say>One moment, please.</Say><Redirect method="POST">\#(urls.gather(turn: 2).replacingOccurrences(of: "&", with: "&amp;"))&amp;attempt=2</Redirect></Response>"#))
            let fallback = try await client.post(edge.gather(turn: 2, attempt: 2, speech: nil))
            #expect(fallback.status == .ok)
            #expect(fallback.text.contains(#"<Record action="\#(urls.recorded)""#), "after two missed deadlines a message is taken")
        }
        // The turn is on its stream once, and a receptionist started again answers it once.
        #expect(try await edge.callerTurns().map(\.turn.turn) == [1, 2])
        let again = try await ReceptionistService.runner(dependencies, model: nil)
        let restarted = Task { try await again.run() }
        let stream = fixture.naming.stream(for: .conversations, kind: .event, tenant: fixture.tenant, subject: edge.callID.description)
        func replies() async throws -> [EventEnvelope] {
            try await fixture.redis.execute(.xrange(stream)).map { entry in
                try EventEnvelope(fields: (entry.fields ?? []).map { EnvelopeField(name: $0.name, value: $0.value) })
            }.filter { $0.type == ReceptionistReplied.type }
        }
        try await AuditTrailTests.eventually("the restarted receptionist answered turn 2") { try await replies().count == 2 }
        let second = ReportCallerTurn.commandID(callID: edge.callID, turn: 2)
        #expect(try await replies().filter { $0.causationID == second }.count == 1)
        restarted.cancel()
        _ = try? await restarted.value
        try await edge.drop()
    }
}
