import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import Synchronization
import Testing
import VoiceCoreBus
import VoiceCoreEvents
import VoiceCorePostgres
import VoiceCoreRedis
import VoiceCoreTenants
import VoiceCoreTime
@testable import VoiceCoreEdge

/// A Twilio call conversing over classic TwiML, end to end on the real Redis and Postgres: signed
/// `<Gather>` callbacks become `ReportCallerTurn` commands, the receptionist's replies come back
/// through the edge's shared wait (``TurnReplies``) as the next TwiML.
@Suite(.serialized) struct GatherConversationTests {
    static let callSid = "CA00000000000000000000000000000042"

    /// The fixture's tenant behind an edge that waits for replies, with a deadline of its own.
    final class ConversingEdge: Sendable {
        let fixture: EdgeFixture
        let turns: TurnReplies
        let edge: Edge
        private let running: Task<Void, any Error>
        /// Whether this edge made the fixture (and drops it).
        private let ownsFixture: Bool

        /// - Parameter fixture: another edge's tenant and streams (a second edge process, or one
        ///   started again); nil: a fixture of its own.
        init(deadline: Duration = .seconds(20), sharing fixture: EdgeFixture? = nil) async throws {
            ownsFixture = fixture == nil
            if let fixture { self.fixture = fixture } else { self.fixture = try await EdgeFixture(requestsPerSecond: 1000) }
            let fixture = self.fixture
            let tail = try await StreamTail.connect(try RedisConfiguration(url: TestServers.redisURL), clientName: "test-gather-turns",
                                                    configuration: StreamTail.Configuration(streams: fixture.naming.streams(.conversations, kind: .event),
                                                                                            block: .milliseconds(200)))
            turns = TurnReplies(tail: tail)
            var edge = Edge(configuration: EdgeConfiguration(publicBaseURL: EdgeFixture.publicBase, tenantCacheTTL: .zero, adminKey: EdgeFixture.adminKey,
                                                             turnDeadline: deadline),
                            publisher: fixture.publisher, lookup: fixture.directory, directory: fixture.directory)
            edge.turnReplies = turns
            self.edge = edge
            let turns = self.turns
            running = Task { try await turns.run() }
            let started = ContinuousClock.now
            while !turns.isFollowing {
                guard ContinuousClock.now - started < .seconds(10) else { throw TestError("TurnReplies did not start following") }
                try await Task.sleep(for: .milliseconds(5))
            }
        }

        func test(_ body: @Sendable (any TestClientProtocol) async throws -> Void) async throws {
            try await Application(router: edge.router()).test(.router) { client in try await body(client) }
        }

        /// Stores the tenant's receptionist settings, as `PUT /v1/settings` ends up doing.
        func settings(greeting: String, conversation: AISettings.ConversationMode?) async throws {
            let settings = AISettings(greeting: greeting, intents: [], businessHours: AISettings.BusinessHours(timeZone: "America/New_York", openings: []),
                                      conversation: conversation)
            let json = PostgresJSON(rawJSON: JSONObjectWriter.object { settings.writeJSON(to: &$0) })
            try await fixture.db.query("UPDATE tenant_directory SET ai_settings = \(json)::jsonb WHERE tenant_id = \(fixture.tenant.uuid)")
        }

        /// A signed `<Gather>` callback of turn `turn` (the query is part of the signed URL).
        func gather(turn: Int, attempt: Int? = nil, speech: String?, digits: String? = nil, confidence: String? = "0.92",
                    token: String? = nil) -> (String, HTTPFields, ByteBuffer) {
            var parameters: [(String, String)] = [("AccountSid", "AC00000000000000000000000000000001"), ("CallSid", GatherConversationTests.callSid),
                                                  ("From", "+14155550100"), ("To", "+14155550199"), ("CallStatus", "in-progress")]
            if let speech { parameters.append(("SpeechResult", speech)) }
            if let confidence, speech != nil { parameters.append(("Confidence", confidence)) }
            if let digits { parameters.append(("Digits", digits)) }
            return fixture.twilio("gather?turn=\(turn)" + (attempt.map { "&attempt=\($0)" } ?? ""), parameters, token: token)
        }

        func voice() -> (String, HTTPFields, ByteBuffer) {
            fixture.twilio("voice", fixture.statusCallback(callSid: GatherConversationTests.callSid, status: "ringing", sequence: 0))
        }

        /// The turns published, in order.
        func callerTurns() async throws -> [(envelope: EventEnvelope, turn: ReportCallerTurn)] {
            try await fixture.commands().filter { $0.type == ReportCallerTurn.type }
                .map { ($0, try MessageCodec.decode(ReportCallerTurn.self, from: $0.data)) }
                .sorted { $0.turn.turn < $1.turn.turn }
        }

        var callID: Identifier { CallID.derive(tenant: fixture.tenant, provider: .twilio, providerCallID: GatherConversationTests.callSid) }

        var urls: ConversationURLs { ConversationURLs(base: EdgeFixture.publicBase, tenant: fixture.tenant) }

        /// Stops its ``TurnReplies`` (as a stopped edge process would).
        func stop() async {
            running.cancel()
            _ = try? await running.value
        }

        func drop() async throws {
            await stop()
            if ownsFixture { try await fixture.drop() }
        }
    }

    /// Plays the receptionist: reads the conversations command streams and answers every turn
    /// with `ReceptionistReplied` (id `replyID(commandID:)`, causation the command), as the
    /// contract asks of any receptionist.
    final class StandInReceptionist: Sendable {
        struct Answer: Sendable {
            var text: String
            var action: ReceptionistAction = .continue
            var transferTo: String? = nil
        }

        /// The turns answered so far (a class: the reading task and the test share it).
        final class Log: Sendable {
            let turns = Mutex<[ReportCallerTurn]>([])
        }

        private let task: Task<Void, Never>
        private let seen = Log()

        /// Turns it answered (each command once).
        var turns: [ReportCallerTurn] { seen.turns.withLock { $0 } }

        init(_ edge: ConversingEdge, answer: @escaping @Sendable (ReportCallerTurn) -> Answer) async throws {
            let reader = try await RedisClient.connect(try RedisConfiguration(url: TestServers.redisURL))
            let streams = edge.fixture.naming.streams(.conversations, kind: .command)
            let publisher = edge.fixture.publisher
            let tenant = edge.fixture.tenant
            let seen = self.seen
            task = Task {
                var after = Dictionary(uniqueKeysWithValues: streams.map { ($0, StreamEntryID.zero) })
                while !Task.isCancelled {
                    guard let read = try? await reader.execute(.xread(streams: streams.map { ($0, after[$0] ?? .zero) }, count: 100, block: .milliseconds(100)))
                    else { continue }
                    for batch in read {
                        for entry in batch.entries {
                            after[batch.stream] = entry.id
                            guard let fields = entry.fields,
                                  let command = try? EventEnvelope(fields: fields.map { EnvelopeField(name: $0.name, value: $0.value) }),
                                  command.type == ReportCallerTurn.type, let turn = try? MessageCodec.decode(ReportCallerTurn.self, from: command.data)
                            else { continue }
                            seen.turns.withLock { $0.append(turn) }
                            let said = answer(turn)
                            let reply = ReceptionistReplied(callID: turn.callID, provider: turn.provider, providerCallID: turn.providerCallID, turn: turn.turn,
                                                            channel: turn.channel, heard: turn.text, text: said.text, action: said.action,
                                                            transferTo: said.transferTo, decidedBy: .builtIn, repliedAt: .now)
                            _ = try? await publisher.publish(EventEnvelope(reply, tenant: tenant, source: "/test/receptionist", correlationID: command.correlationID,
                                                                           causationID: command.id, id: ReceptionistReplied.replyID(commandID: command.id)),
                                                             category: .conversations, kind: .event)
                        }
                    }
                }
                await reader.close()
            }
        }

        func stop() async {
            task.cancel()
            await task.value
        }
    }

    // MARK: Conversing

    @Test func aCallConversesTurnByTurnOverSignedGatherCallbacks() async throws {
        let edge = try await ConversingEdge()
        try await edge.settings(greeting: "Hello, Acme Dental & Sons here.", conversation: .gather)
        let receptionist = try await StandInReceptionist(edge) { turn in
            switch turn.turn {
            case 1: .init(text: "Happy to book that. What name should I put it under?")
            case 2: .init(text: "Thanks, \(turn.text). When would suit you?")
            default: .init(text: "Booked for \(turn.text). Goodbye!", action: .hangup)
            }
        }
        let urls = edge.urls
        try await edge.test { client in
            let answered = try await client.post(edge.voice())
            #expect(answered.status == .ok)
            #expect(answered.headers[.contentType] == "text/xml; charset=utf-8")
            #expect(answered.text.contains(#"<Start><Transcription statusCallbackUrl="\#(urls.transcription)""#))
            #expect(answered.text.contains(#"<Gather input="speech dtmf" action="\#(urls.gather(turn: 1))" method="POST" speechTimeout="auto" actionOnEmptyResult="true"><Say>Hello, Acme Dental &amp; Sons here.</Say></Gather>"#),
                    "the tenant's greeting (escaped) while listening for turn 1")

            let first = try await client.post(edge.gather(turn: 1, speech: "I'd like to book a cleaning"))
            #expect(first.status == .ok)
            #expect(first.text.hasSuffix(#"<Response><Gather input="speech dtmf" action="\#(urls.gather(turn: 2))" method="POST" speechTimeout="auto" actionOnEmptyResult="true"><Say>Happy to book that. What name should I put it under?</Say></Gather></Response>"#))
            let second = try await client.post(edge.gather(turn: 2, speech: "Dana Scully"))
            #expect(second.text.contains(#"action="\#(urls.gather(turn: 3))""#))
            #expect(second.text.contains("<Say>Thanks, Dana Scully. When would suit you?</Say>"))
            let third = try await client.post(edge.gather(turn: 3, speech: "Tuesday at ten"))
            #expect(third.text.hasSuffix("<Response><Say>Booked for Tuesday at ten. Goodbye!</Say><Hangup/></Response>"))
        }
        let published = try await edge.callerTurns()
        #expect(published.map(\.turn.turn) == [1, 2, 3])
        #expect(published.map(\.turn.text) == ["I'd like to book a cleaning", "Dana Scully", "Tuesday at ten"])
        for (envelope, turn) in published {
            #expect(envelope.id == ReportCallerTurn.commandID(callID: edge.callID, turn: turn.turn), "the command id is the call's turn")
            #expect(turn.callID == edge.callID && turn.channel == .gather && turn.providerCallID == Self.callSid)
            #expect(turn.confidence == 0.92 && turn.from == "+14155550100" && turn.to == "+14155550199")
        }
        #expect(receptionist.turns.count == 3)
        #expect(edge.turns.openWaits == 0)
        await receptionist.stop()
        try await edge.drop()
    }

    @Test func aRetriedGatherCallbackIsAnsweredWithTheSameReplyAndPublishedOnce() async throws {
        let edge = try await ConversingEdge()
        let replies = Mutex(0)
        let receptionist = try await StandInReceptionist(edge) { _ in
            let count = replies.withLock { $0 += 1; return $0 }
            return .init(text: "Reply number \(count).")
        }
        try await edge.test { client in
            let first = try await client.post(edge.gather(turn: 1, speech: "Are you open on Saturday?"))
            let retried = try await client.post(edge.gather(turn: 1, speech: "Are you open on Saturday?"))
            #expect(first.status == .ok && retried.status == .ok)
            #expect(first.text.contains("<Say>Reply number 1.</Say>"))
            #expect(retried.text == first.text, "the provider's retry hears the same reply")
        }
        #expect(try await edge.callerTurns().count == 1, "published once")
        #expect(receptionist.turns.count == 1)
        let replyEntries = try await edge.fixture.redis.execute(.xrange(edge.fixture.naming.stream(for: .conversations, kind: .event, tenant: edge.fixture.tenant,
                                                                                                     subject: edge.callID.description)))
        #expect(replyEntries.count == 1, "answered once")
        await receptionist.stop()
        try await edge.drop()
    }

    @Test func aRetryReachingAnEdgeStartedAfterTheReplyHearsTheSameReplyFromTheStream() async throws {
        let first = try await ConversingEdge()
        let receptionist = try await StandInReceptionist(first) { _ in .init(text: "We are open until six.") }
        let heard = Mutex("")
        try await first.test { client in
            let text = try await client.post(first.gather(turn: 1, speech: "How late are you open?")).text
            heard.withLock { $0 = text }
        }
        let answered = heard.withLock { $0 }
        #expect(answered.contains("<Say>We are open until six.</Say>"))
        await receptionist.stop()
        await first.stop()
        // Another edge process (or this one restarted) gets Twilio's retry: its tail started after
        // the reply, so only the call's stream has it.
        let second = try await ConversingEdge(deadline: .seconds(20), sharing: first.fixture)
        try await second.test { client in
            let retried = try await client.post(second.gather(turn: 1, speech: "How late are you open?"))
            #expect(retried.text == answered)
        }
        #expect(try await second.callerTurns().count == 1)
        try await second.drop()
        try await first.drop()
    }

    @Test func digitsAndSilenceAreTurnsToo() async throws {
        let edge = try await ConversingEdge()
        let receptionist = try await StandInReceptionist(edge) { turn in
            .init(text: turn.digits.map { "You pressed \($0)." } ?? (turn.text.isEmpty ? "Are you still there?" : "Go on."))
        }
        try await edge.test { client in
            let pressed = try await client.post(edge.gather(turn: 1, speech: nil, digits: "1#"))
            #expect(pressed.text.contains("<Say>You pressed 1#.</Say>"))
            let silent = try await client.post(edge.gather(turn: 2, speech: nil))
            #expect(silent.text.contains("<Say>Are you still there?</Say>"))
        }
        let published = try await edge.callerTurns()
        #expect(published.map(\.turn.digits) == ["1#", nil])
        #expect(published.map(\.turn.text) == ["", ""])
        await receptionist.stop()
        try await edge.drop()
    }

    // MARK: What a reply does to the call

    @Test func repliesBecomeTwiMLForTransferVoicemailAndHangup() async throws {
        let edge = try await ConversingEdge()
        let receptionist = try await StandInReceptionist(edge) { turn in
            switch turn.text {
            case "a person please": .init(text: "Connecting you now.", action: .transfer, transferTo: "+14155550123")
            case "leave a message": .init(text: "Please leave your message after the tone.", action: .voicemail)
            default: .init(text: "Goodbye <and> thanks & \"take care\".", action: .hangup)
            }
        }
        let urls = edge.urls
        try await edge.test { client in
            let transfer = try await client.post(edge.gather(turn: 1, speech: "a person please"))
            #expect(transfer.text.hasSuffix("<Response><Say>Connecting you now.</Say><Dial>+14155550123</Dial></Response>"))
            let voicemail = try await client.post(edge.gather(turn: 2, speech: "leave a message"))
            #expect(voicemail.text.hasSuffix(#"<Response><Say>Please leave your message after the tone.</Say><Record action="\#(urls.recorded)" method="POST" recordingStatusCallback="\#(urls.recording)" recordingStatusCallbackMethod="POST" recordingStatusCallbackEvent="completed absent" maxLength="120" playBeep="true"/></Response>"#))
            let hangup = try await client.post(edge.gather(turn: 3, speech: "bye"))
            #expect(hangup.text.hasSuffix("<Response><Say>Goodbye &lt;and&gt; thanks &amp; &quot;take care&quot;.</Say><Hangup/></Response>"),
                    "a reply's text never changes the document's shape")
            let recorded = try await client.post(edge.fixture.twilio("recorded", [("CallSid", Self.callSid), ("RecordingSid", "RE1"), ("RecordingDuration", "9")]))
            #expect(recorded.text.hasSuffix("<Response><Say>Thank you. Goodbye.</Say><Hangup/></Response>"))
        }
        await receptionist.stop()
        try await edge.drop()
    }

    // MARK: The receptionist late or away

    @Test func aMissedDeadlineIsAHoldingLineThenAMessageIsTaken() async throws {
        // No receptionist runs: every wait misses its deadline.
        let edge = try await ConversingEdge(deadline: .milliseconds(200))
        let urls = edge.urls
        try await edge.test { client in
            let first = try await client.post(edge.gather(turn: 1, speech: "Can I book for Friday?"))
            #expect(first.status == .ok)
            #expect(first.text.hasSuffix(#"<Response><Say>One moment, please.</Say><Redirect method="POST">\#(urls.gather(turn: 1).replacingOccurrences(of: "&", with: "&amp;"))&amp;attempt=2</Redirect></Response>"#))
            // Twilio follows the redirect with the call's parameters (no speech this time).
            let second = try await client.post(edge.gather(turn: 1, attempt: 2, speech: nil))
            #expect(second.status == .ok)
            #expect(second.text.contains("<Say>\(TwiML.unavailableLine.replacingOccurrences(of: "'", with: "&apos;"))</Say>"))
            #expect(second.text.contains(#"<Record action="\#(urls.recorded)" method="POST" recordingStatusCallback="\#(urls.recording)""#))
        }
        let published = try await edge.callerTurns()
        #expect(published.count == 1, "the redirect waits for the same turn; it publishes nothing new")
        #expect(published.first?.turn.text == "Can I book for Friday?")
        #expect(edge.turns.openWaits == 0)
        try await edge.drop()
    }

    @Test func aReceptionistThatAnswersLateIsHeardOnTheRetry() async throws {
        let edge = try await ConversingEdge(deadline: .milliseconds(200))
        try await edge.test { client in
            let first = try await client.post(edge.gather(turn: 1, speech: "What are your hours?"))
            #expect(first.text.contains("<Say>One moment, please.</Say>"))
        }
        // The receptionist comes back and answers the turn that is already on the stream.
        let receptionist = try await StandInReceptionist(edge) { _ in .init(text: "We open at nine.") }
        while receptionist.turns.isEmpty { try await Task.sleep(for: .milliseconds(5)) }
        try await edge.test { client in
            let second = try await client.post(edge.gather(turn: 1, attempt: 2, speech: nil))
            #expect(second.text.contains("<Say>We open at nine.</Say>"))
            #expect(second.text.contains(#"action="\#(edge.urls.gather(turn: 2))""#))
        }
        #expect(try await edge.callerTurns().count == 1)
        await receptionist.stop()
        try await edge.drop()
    }

    // MARK: Refusals

    @Test func aForgedOrUnsignedCallbackIs403AndPublishesNothing() async throws {
        let edge = try await ConversingEdge(deadline: .milliseconds(100))
        try await edge.test { client in
            let forged = try await client.post(edge.gather(turn: 1, speech: "hello", token: "not-the-token"))
            #expect(forged.status == .forbidden)
            var unsigned = edge.gather(turn: 1, speech: "hello")
            unsigned.1[.twilioSignature] = nil
            #expect(try await client.post(unsigned).status == .forbidden)
            // Signed for turn 1, sent as turn 2: the query is part of what Twilio signs.
            var moved = edge.gather(turn: 1, speech: "hello")
            moved.0 = moved.0.replacingOccurrences(of: "turn=1", with: "turn=2")
            #expect(try await client.post(moved).status == .forbidden)
            let recording = edge.fixture.twilio("recording", [("CallSid", Self.callSid), ("RecordingSid", "RE1"), ("RecordingStatus", "completed")], token: "forged")
            #expect(try await client.post(recording).status == .forbidden)
            #expect(try await client.post(edge.fixture.twilio("relay/ended", [("CallSid", Self.callSid)], token: "forged")).status == .forbidden)
            #expect(try await client.post(edge.fixture.twilio("recorded", [("CallSid", Self.callSid)], token: "forged")).status == .forbidden)
        }
        #expect(try await edge.fixture.commands().isEmpty)
        try await edge.drop()
    }

    @Test func aCallbackWithABadTurnOrFieldIsRefusedPrecisely() async throws {
        let edge = try await ConversingEdge(deadline: .milliseconds(100))
        try await edge.test { client in
            for path in ["gather", "gather?turn=0", "gather?turn=abc", "gather?turn=1&attempt=3"] {
                let response = try await client.post(edge.fixture.twilio(path, [("CallSid", Self.callSid), ("SpeechResult", "hi")]))
                #expect(response.status == .badRequest, "\(path)")
                #expect(response.headers[.contentType] == "application/problem+json")
            }
            let noCall = try await client.post(edge.fixture.twilio("gather?turn=1", [("SpeechResult", "hi")]))
            #expect(noCall.status == .unprocessableContent)
            #expect(noCall.json["field"] as? String == "CallSid")
            let badDigits = try await client.post(edge.gather(turn: 1, speech: nil, digits: "12x"))
            #expect(badDigits.status == .unprocessableContent)
            #expect(badDigits.json["field"] as? String == "Digits")
            let badConfidence = try await client.post(edge.gather(turn: 1, speech: "hi", confidence: "lots"))
            #expect(badConfidence.status == .badRequest)
            let tooLong = try await client.post(edge.gather(turn: 1, speech: String(repeating: "a", count: ConversationLimits.utteranceLength + 1)))
            #expect(tooLong.status == .unprocessableContent)
            #expect(tooLong.json["field"] as? String == "SpeechResult")
        }
        #expect(try await edge.fixture.commands().isEmpty)
        try await edge.drop()
    }

    // MARK: Recordings

    @Test func theRecordingCallbackReportsTheRecordingOnce() async throws {
        let edge = try await ConversingEdge()
        let parameters: [(String, String)] = [
            ("AccountSid", "AC00000000000000000000000000000001"), ("CallSid", Self.callSid), ("RecordingSid", "RE00000000000000000000000000000007"),
            ("RecordingUrl", "https://api.twilio.com/2010-04-01/Accounts/AC1/Recordings/RE00000000000000000000000000000007"),
            ("RecordingStatus", "completed"), ("RecordingDuration", "17"), ("RecordingChannels", "1"), ("RecordingSource", "RecordVerb"),
        ]
        try await edge.test { client in
            #expect(try await client.post(edge.fixture.twilio("recording", parameters)).status == .ok)
            #expect(try await client.post(edge.fixture.twilio("recording", parameters)).status == .ok, "a retry")
            let inProgress = parameters.map { $0.0 == "RecordingStatus" ? ($0.0, "in-progress") : $0 }
            #expect(try await client.post(edge.fixture.twilio("recording", inProgress)).status == .ok)
            let unknown = parameters.map { $0.0 == "RecordingStatus" ? ($0.0, "exploded") : $0 }
            let refused = try await client.post(edge.fixture.twilio("recording", unknown))
            #expect(refused.status == .unprocessableContent)
            #expect(refused.json["field"] as? String == "RecordingStatus")
        }
        let reports = try await edge.fixture.commands().filter { $0.type == ReportRecording.type }
        #expect(reports.count == 1, "one command per recording and status")
        let report = try MessageCodec.decode(ReportRecording.self, from: try #require(reports.first).data)
        #expect(report.callID == edge.callID && report.provider == .twilio && report.providerCallID == Self.callSid)
        #expect(report.recordingID == "RE00000000000000000000000000000007" && report.status == .completed && report.durationSeconds == 17)
        #expect(report.recordingURL == "https://api.twilio.com/2010-04-01/Accounts/AC1/Recordings/RE00000000000000000000000000000007")
        try await edge.drop()
    }

    // MARK: ConversationRelay mode

    @Test func aRelayTenantIsAnsweredWithConversationRelayAndItsEndHandsOff() async throws {
        let edge = try await ConversingEdge()
        try await edge.settings(greeting: "Hi, it's Acme.", conversation: .relay)
        let urls = edge.urls
        try await edge.test { client in
            let answered = try await client.post(edge.voice())
            #expect(answered.text.hasSuffix(#"<Response><Connect action="\#(urls.relayEnded)"><ConversationRelay url="wss://edge.example.com/webhooks/twilio/\#(edge.fixture.tenant)/relay" welcomeGreeting="Hi, it&apos;s Acme."/></Connect></Response>"#))
            func ended(_ handoff: String?) async throws -> String {
                var parameters: [(String, String)] = [("CallSid", Self.callSid), ("SessionStatus", "ended")]
                if let handoff { parameters.append(("HandoffData", handoff)) }
                return try await client.post(edge.fixture.twilio("relay/ended", parameters)).text
            }
            #expect(try await ended(#"{"action":"transfer","transfer_to":"+14155550123"}"#).hasSuffix("<Response><Dial>+14155550123</Dial></Response>"))
            #expect(try await ended(#"{"action":"voicemail"}"#).hasSuffix(#"<Response><Record action="\#(urls.recorded)" method="POST" recordingStatusCallback="\#(urls.recording)" recordingStatusCallbackMethod="POST" recordingStatusCallbackEvent="completed absent" maxLength="120" playBeep="true"/></Response>"#))
            let apology = try await ended(#"{"action":"voicemail","reason":"receptionist unavailable"}"#)
            #expect(apology.contains("<Say>I&apos;m sorry") && apology.contains("<Record "))
            #expect(try await ended(nil).hasSuffix("<Response><Hangup/></Response>"))
            #expect(try await ended(#"{"action":"transfer","transfer_to":"call me maybe"}"#).hasSuffix("<Response><Hangup/></Response>"))
            #expect(try await ended("not json").hasSuffix("<Response><Hangup/></Response>"))
        }
        #expect(ConversationURLs(base: "http://127.0.0.1:8080", tenant: edge.fixture.tenant).relaySocket
                == "ws://127.0.0.1:8080/webhooks/twilio/\(edge.fixture.tenant)/relay")
        try await edge.drop()
    }

    @Test func aTenantWithoutSettingsIsGreetedWithTheEdgesGreetingOverGather() async throws {
        let edge = try await ConversingEdge()
        try await edge.test { client in
            let answered = try await client.post(edge.voice())
            #expect(answered.text.contains(#"<Gather input="speech dtmf" action="\#(edge.urls.gather(turn: 1))""#))
            #expect(answered.text.contains("<Say>\(EdgeConfiguration().greeting)</Say></Gather>"))
        }
        try await edge.drop()
    }
}
