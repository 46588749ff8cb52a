import Foundation
import Testing
import VoiceCoreEvents
import VoiceCoreExecutors
import VoiceCoreRedis
import VoiceCoreTime
@testable import VoiceCoreBus

/// schemas/examples/team_receptionist.py answers caller turns the way schemas/README.md says a team
/// in another language can: the replies it publishes are what the Swift side (and so the edge,
/// which correlates by causationid) reads as the replies to those turns.
@Suite("The documented team receptionist answers turns over the streams")
struct TeamReceptionistTests {
    @Test func thePythonReceptionistRepliesOncePerTurnWithTheContractsIDs() async throws {
        let python = ProcessInfo.processInfo.environment["VOICECORE_PYTHON"] ?? "python3"
        let prefix = TestRedis.prefix()
        let naming = StreamNaming(partitions: 16, prefix: prefix)
        let redis = try await TestRedis.connect()
        let publisher = Publisher(connection: redis, configuration: PublisherConfiguration(source: "/edge/twilio", naming: naming))
        let tenant = Identifier.v7()
        let call = CallID.derive(tenant: tenant, provider: .twilio, providerCallID: "CA00000000000000000000000000000001")
        let correlation = Identifier.v7()
        func turn(_ number: Int, _ text: String) -> EventEnvelope {
            let command = ReportCallerTurn(callID: call, provider: .twilio, providerCallID: "CA00000000000000000000000000000001", turn: number,
                                           text: text, confidence: 0.9, channel: .gather, from: "+14155550100", to: "+14155550199", occurredAt: .now)
            return EventEnvelope(command, tenant: tenant, source: "/edge/twilio", correlationID: correlation,
                                 id: ReportCallerTurn.commandID(callID: call, turn: number))
        }
        let first = turn(1, "Could I leave a message for Dr. Lee?")
        let second = turn(2, "No, that's all. Bye.")
        // The first turn is on the stream twice (a publish retried without deduplication): the
        // receptionist must still answer it once.
        for envelope in [first, first, second] {
            _ = try await publisher.publish(envelope, category: .conversations, kind: .command)
        }
        let script = TeamConsumerTests.root.appendingPathComponent("schemas/examples/team_receptionist.py").path
        let url = TestRedis.url
        let (status, output, stderr) = try await TeamConsumerTests.runExample(python, script, ["--redis-url", url, "--prefix", prefix, "--group", "frontdesk", "--stop-after", "3"])
        #expect(status == 0, "team_receptionist.py failed: \(stderr)")
        let lines = output.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        #expect(lines.map { $0["published"] as? Bool } == [true, false, true], "\(output)")

        // The replies are on the call's own conversations event stream, one per turn, and decode
        // (schema-valid, validate() passes) as the replies to those turns.
        let events = naming.stream(for: .conversations, kind: .event, tenant: tenant, subject: call.description)
        let entries = try await redis.execute(.xrange(events))
        #expect(entries.count == 2)
        var replies: [Int: (EventEnvelope, ReceptionistReplied)] = [:]
        for entry in entries {
            let fields = (entry.fields ?? []).map { EnvelopeField(name: $0.name, value: $0.value) }
            let decoded = try MessageRegistry.standard.decode(fields: fields)
            guard case .known(let envelope, _) = decoded, let reply = decoded.message(as: ReceptionistReplied.self) else {
                Issue.record("not a ReceptionistReplied: \(entry)")
                continue
            }
            replies[reply.turn] = (envelope, reply)
        }
        for (number, command) in [(1, first), (2, second)] {
            let (envelope, reply) = try #require(replies[number], "no reply to turn \(number)")
            #expect(envelope.id == ReceptionistReplied.replyID(commandID: command.id))
            #expect(envelope.causationID == command.id)
            #expect(envelope.correlationID == correlation)
            #expect(envelope.tenantID == tenant)
            #expect(envelope.subject == call.description)
            #expect(reply.callID == call)
            #expect(reply.channel == .gather)
        }
        #expect(replies[1]?.1.action == .voicemail)
        #expect(replies[2]?.1.action == .hangup)
        #expect(replies[2]?.1.heard == "No, that's all. Bye.")
        let keys = try await redis.scanAll(match: "\(prefix):*")
        if !keys.isEmpty { _ = try await redis.execute(.del(keys)) }
    }
}
