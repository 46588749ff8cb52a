import Foundation
import Logging
import ServiceLifecycle
import Testing
import VoiceCoreBus
import VoiceCoreEvents
import VoiceCoreRedis
import VoiceCoreServices
import VoiceCoreTenants
import VoiceCoreTestSupport
import VoiceCoreTime

/// The receptionist on the real local Redis (and the tenant's settings in Postgres): caller turns
/// published as the edge publishes them, replies and call events read back from the streams.
@Suite("Receptionist service", .serialized)
struct ReceptionistServiceTests {
    static let monday = ReceptionistPolicyTests.mondayMorning
    static let caller = ReceptionistPolicyTests.caller

    /// A fixture whose tenant has the policy tests' settings (hours in New York, FAQ, forwarding number).
    static func fixture() async throws -> PlatformFixture {
        let fixture = try await PlatformFixture()
        let settings = ReceptionistPolicyTests.settings
        let announcement = OutboxMessage(EventEnvelope(TenantSettingsChanged(tenantID: fixture.tenant, settings: settings, changedAt: .now),
                                                       tenant: fixture.tenant, source: "/test"),
                                         category: .tenants, kind: .event, deduplicationKey: "settings:\(UUID())")
        try await fixture.directory.setAISettings(settings, of: fixture.tenant, announcing: announcement, publisher: nil)
        return fixture
    }

    /// Runs the receptionist (with `model`, or the built-in policy only) while `body` runs.
    static func running(_ fixture: PlatformFixture, model: ReceptionistModel? = nil, _ body: () async throws -> Void) async throws {
        let runner = try await ReceptionistService.runner(fixture.dependencies, model: model)
        let group = ServiceGroup(services: [runner], logger: Logger(label: "test.receptionist"))
        let running = Task { try await group.run() }
        do {
            try await body()
        } catch {
            await group.triggerGracefulShutdown()
            _ = await running.result
            throw error
        }
        await group.triggerGracefulShutdown()
        try await running.value
    }

    /// The caller's turn as the edge publishes it: its id derived from call and turn, deduplicated on it.
    static func turn(_ fixture: PlatformFixture, call: String, _ number: Int, _ text: String, at time: Timestamp = monday) -> EventEnvelope {
        let callID = CallID.derive(tenant: fixture.tenant, provider: .twilio, providerCallID: call)
        let command = ReportCallerTurn(callID: callID, provider: .twilio, providerCallID: call, turn: number, text: text, confidence: 0.9,
                                       channel: .gather, from: caller, to: "+14155550111", language: "en-US", occurredAt: time)
        return EventEnvelope(command, tenant: fixture.tenant, source: "/edge", id: ReportCallerTurn.commandID(callID: callID, turn: number))
    }

    static func publish(_ fixture: PlatformFixture, _ envelope: EventEnvelope) async throws {
        _ = try await fixture.publisher.publish(envelope, category: .conversations, kind: .command, deduplicationKey: "turn:\(envelope.id)")
    }

    /// Every envelope of `type` on the category's streams of `kind`.
    static func envelopes(_ fixture: PlatformFixture, _ category: StreamCategory, _ kind: MessageKind, type: String) async throws -> [EventEnvelope] {
        var found: [EventEnvelope] = []
        for stream in fixture.naming.streams(category, kind: kind) {
            for entry in try await fixture.redis.execute(.xrange(stream)) {
                let envelope = try EventEnvelope(fields: (entry.fields ?? []).map { EnvelopeField(name: $0.name, value: $0.value) })
                if envelope.type == type { found.append(envelope) }
            }
        }
        return found
    }

    /// Waits for the reply caused by `command` on its call's conversations event stream, as the edge does.
    static func reply(to command: EventEnvelope, _ fixture: PlatformFixture) async throws -> (EventEnvelope, ReceptionistReplied) {
        let stream = fixture.naming.stream(for: .conversations, kind: .event, tenant: fixture.tenant, subject: command.subject)
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline {
            for entry in try await fixture.redis.execute(.xrange(stream)) {
                let envelope = try EventEnvelope(fields: (entry.fields ?? []).map { EnvelopeField(name: $0.name, value: $0.value) })
                if envelope.causationID == command.id, case .receptionistReplied(let reply)? = try? decode(envelope) { return (envelope, reply) }
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw TestFailure("no reply to turn \(command.id)")
    }

    enum Decoded { case receptionistReplied(ReceptionistReplied) }

    static func decode(_ envelope: EventEnvelope) throws -> Decoded? {
        guard envelope.type == ReceptionistReplied.type else { return nil }
        return .receptionistReplied(try ReceptionistReplied(json: JSONObject.parse(envelope.data)))
    }

    @Test("an appointment over four turns: one reply per turn (id from the command, caused by it), the request and the lead once; a redelivered turn publishes nothing new")
    func appointmentConversation() async throws {
        let fixture = try await Self.fixture()
        defer { Task { try? await fixture.drop() } }
        let lines = ["I'd like to book a cleaning", "next Tuesday at 3 pm please", "it's jane doe", "yes that's fine"]
        let commands = lines.enumerated().map { Self.turn(fixture, call: "CAappointment", $0.offset + 1, $0.element) }
        var replies: [ReceptionistReplied] = []
        try await Self.running(fixture) {
            for command in commands {
                try await Self.publish(fixture, command)
                let (envelope, reply) = try await Self.reply(to: command, fixture)
                #expect(envelope.id == ReceptionistReplied.replyID(commandID: command.id))
                #expect(envelope.causationID == command.id && envelope.source == "/services/receptionist")
                replies.append(reply)
            }
            // The edge retries a callback (deduplicated: never reaches the service) and Redis
            // redelivers two (the same commands again on the stream, as after a crash).
            try await Self.publish(fixture, commands[3])
            _ = try await fixture.publisher.publish(commands[3], category: .conversations, kind: .command)
            _ = try await fixture.publisher.publish(commands[0], category: .conversations, kind: .command)
            // A call's turns are handled in order: once the next turn is answered, so are the
            // redeliveries. They changed nothing: "no" still answers "anything else?" (had the
            // first turn been decided again, the receptionist would be asking for a time).
            let no = Self.turn(fixture, call: "CAappointment", 5, "no")
            try await Self.publish(fixture, no)
            let (_, last) = try await Self.reply(to: no, fixture)
            #expect(last.action == .hangup && last.text == "Thank you for calling. Goodbye!")
        }
        #expect(replies.map(\.turn) == [1, 2, 3, 4])
        #expect(replies.allSatisfy { $0.decidedBy == .builtIn && $0.channel == .gather && $0.providerCallID == "CAappointment" })
        #expect(replies.map(\.heard) == lines)
        #expect(replies[0].text.contains("What day and time") && replies[1].text.contains("name") && replies[2].text.contains("number you're calling from"))
        #expect(replies[3].action == .continue && replies[3].text.contains("Thank you, Jane Doe."))
        #expect(replies[3].slots["name"] == "Jane Doe" && replies[3].slots["phone"] == Self.caller && replies[3].slots["preferred_time"] == "next Tuesday at 3 pm")
        #expect(replies[3].intent == .appointment)

        let allReplies = try await Self.envelopes(fixture, .conversations, .event, type: ReceptionistReplied.type)
        #expect(allReplies.count == 5, "one reply per turn, the redelivered turns answered by the replies already published")
        let appointments = try await Self.envelopes(fixture, .calls, .event, type: AppointmentRequested.type)
        #expect(appointments.count == 1)
        let appointment = try AppointmentRequested(json: JSONObject.parse(try #require(appointments.first).data))
        #expect(appointment.name == "Jane Doe" && appointment.phone == Self.caller && appointment.preferredTime == "next Tuesday at 3 pm")
        #expect(appointment.reason == "I'd like to book a cleaning" && appointment.turn == 4)
        #expect(appointments.first?.causationID == commands[3].id)
        let leads = try await Self.envelopes(fixture, .crm, .command, type: CreateLead.type)
        #expect(leads.count == 1)
        let lead = try CreateLead(json: JSONObject.parse(try #require(leads.first).data))
        #expect(lead.leadID == AIService.leadID(of: appointment.callID) && lead.intent == .appointment && lead.name == "Jane Doe" && lead.phone == Self.caller)
    }

    @Test("a caller asking for a person is transferred in business hours (CallTransferred), offered voicemail after hours; a message is taken")
    func transferVoicemailMessage() async throws {
        let fixture = try await Self.fixture()
        defer { Task { try? await fixture.drop() } }
        try await Self.running(fixture) {
            let open = Self.turn(fixture, call: "CAtransfer", 1, "Can I speak to someone please?")
            try await Self.publish(fixture, open)
            let (_, transfer) = try await Self.reply(to: open, fixture)
            #expect(transfer.action == .transfer && transfer.transferTo == "+14155550100")

            let closed = Self.turn(fixture, call: "CAclosed", 1, "Can I speak to someone please?", at: ReceptionistPolicyTests.sundayMorning)
            try await Self.publish(fixture, closed)
            let (_, voicemail) = try await Self.reply(to: closed, fixture)
            #expect(voicemail.action == .voicemail && voicemail.transferTo == nil)

            let message = ["Can you take a message for Dr. Patel?", "Please tell her my test results came in", "Maria Lopez", "yes"]
                .enumerated().map { Self.turn(fixture, call: "CAmessage", $0.offset + 1, $0.element) }
            for command in message {
                try await Self.publish(fixture, command)
                _ = try await Self.reply(to: command, fixture)
            }
        }
        let transfers = try await Self.envelopes(fixture, .calls, .event, type: CallTransferred.type)
        #expect(transfers.count == 1, "the voicemail after hours is no transfer")
        let transferred = try CallTransferred(json: JSONObject.parse(try #require(transfers.first).data))
        #expect(transferred.to == "+14155550100" && transferred.turn == 1 && transferred.reason == "caller asked for a person")
        let messages = try await Self.envelopes(fixture, .calls, .event, type: MessageTaken.type)
        #expect(messages.count == 1)
        let taken = try MessageTaken(json: JSONObject.parse(try #require(messages.first).data))
        #expect(taken.name == "Maria Lopez" && taken.phone == Self.caller && taken.message == "Please tell her my test results came in")
        let leads = try await Self.envelopes(fixture, .crm, .command, type: CreateLead.type)
        #expect(leads.count == 1, "the message with a name and number is a lead; the transfer and the voicemail are not")
    }

    @Test("with a model: its tool call decides; a garbage answer and a slow one fall back to the built-in policy")
    func modelAndFallback() async throws {
        let fixture = try await Self.fixture()
        defer { Task { try? await fixture.drop() } }
        let server = ModelServer()
        try await server.serve { base in
            let model = ReceptionistModel(baseURL: base + "/v1", apiKey: "sk-service-test", timeout: .milliseconds(500))
            try await Self.running(fixture, model: model) {
                var replies: [ReceptionistReplied] = []
                for (number, text) in ["garbage", "slow", "Tell Dr. Patel my results came in"].enumerated() {
                    let command = Self.turn(fixture, call: "CAmodel", number + 1, text)
                    try await Self.publish(fixture, command)
                    replies.append(try await Self.reply(to: command, fixture).1)
                }
                #expect(replies.map(\.decidedBy) == [.fallback, .fallback, .model])
                #expect(replies[0].text.hasPrefix("Sorry, I'm not sure I understood."), "the policy's clarification: \(replies[0].text)")
                #expect(replies[2].text == "I'll pass that on to Dr. Patel." && replies[2].slots["message"] == "Results came in")
            }
        }
        let messages = try await Self.envelopes(fixture, .calls, .event, type: MessageTaken.type)
        #expect(messages.count == 1)
        let taken = try MessageTaken(json: JSONObject.parse(try #require(messages.first).data))
        #expect(taken.message == "Results came in" && taken.phone == Self.caller && taken.turn == 3)
        for envelope in try await Self.envelopes(fixture, .conversations, .event, type: ReceptionistReplied.type) {
            #expect(!String(decoding: envelope.data, as: UTF8.self).contains("sk-service-test"), "the API key is in no event")
        }
    }
}
