import Foundation
import HTTPTypes
import HummingbirdWSClient
import Logging
import NIOCore
import NIOPosix
import NIOWebSocket
import Prometheus
import ServiceLifecycle
import Synchronization
import Testing
import VoiceCoreBus
import VoiceCoreEvents
import VoiceCoreRedis
import VoiceCoreTenants
import VoiceCoreTime
@testable import VoiceCoreEdge

// MARK: Frames and the session, as values

@Suite("ConversationRelay messages and session")
struct ConversationRelaySessionTests {
    static let tenant = Identifier.v7()

    static func parse(_ text: String) -> Result<ConversationRelayFrame.Inbound, ConversationRelayFrame.Rejection> {
        ConversationRelayFrame.parse(Array(text.utf8))
    }

    static func reply(_ turn: Int, _ text: String, _ action: ReceptionistAction, transferTo: String? = nil, call: Identifier) -> ReceptionistReplied {
        ReceptionistReplied(callID: call, provider: .twilio, providerCallID: "CA1", turn: turn, channel: .relay, heard: "", text: text, action: action,
                            transferTo: transferTo, decidedBy: .builtIn, repliedAt: .now)
    }

    /// A session past `setup` of call `CA1`.
    static func openSession() -> (ConversationRelaySession, ConversationRelaySession.Call) {
        var session = ConversationRelaySession(tenant: tenant)
        let actions = session.receive(parse(#"{"type":"setup","sessionId":"VX1","callSid":"CA1","from":"+14155550100","to":"+14155550199","customParameters":{"a":"b"}}"#))
        guard case .open(let call)? = actions.first else { fatalError("setup did not open the session") }
        return (session, call)
    }

    @Test func parsesEveryProviderMessage() {
        #expect(Self.parse(#"{"type":"setup","callSid":"CA1","from":"+14155550100","to":"client:bob","accountSid":"AC1"}"#)
            == .success(.setup(.init(callSid: "CA1", accountSid: "AC1", from: "+14155550100", to: "client:bob"))))
        #expect(Self.parse(#"{"type":"prompt","voicePrompt":"Hello","lang":"en-US","last":false}"#) == .success(.prompt(text: "Hello", language: "en-US", last: false)))
        #expect(Self.parse(#"{"type":"prompt","voicePrompt":"Hello"}"#) == .success(.prompt(text: "Hello", language: nil, last: true)))
        #expect(Self.parse(##"{"type":"dtmf","digit":"#"}"##) == .success(.dtmf(digit: "#")))
        #expect(Self.parse(#"{"type":"interrupt","utteranceUntilInterrupt":"Our hours","durationUntilInterruptMs":"460"}"#) == .success(.interrupt))
        #expect(Self.parse(#"{"type":"error","description":"Invalid message received"}"#) == .success(.error))
    }

    @Test func refusesWhatIsNotTheProtocol() {
        #expect(Self.parse("not json") == .failure(.malformed))
        #expect(Self.parse("[1,2]") == .failure(.malformed))
        #expect(Self.parse(#"{"voicePrompt":"hi"}"#) == .failure(.missingType))
        #expect(Self.parse(#"{"type":7}"#) == .failure(.missingType))
        #expect(Self.parse(#"{"type":"media","payload":"AAAA"}"#) == .failure(.unknownType))
        #expect(Self.parse(#"{"type":"prompt","last":true}"#) == .failure(.invalidField))
        #expect(Self.parse(#"{"type":"prompt","voicePrompt":"hi","last":"yes"}"#) == .failure(.invalidField))
        #expect(Self.parse(#"{"type":"dtmf","digit":"12"}"#) == .failure(.invalidField))
        #expect(Self.parse(#"{"type":"dtmf","digit":"x"}"#) == .failure(.invalidField))
        #expect(Self.parse(#"{"type":"setup","from":"+14155550100"}"#) == .failure(.invalidField))
        #expect(Self.parse(#"{"type":"setup","callSid":"CA 1"}"#) == .failure(.unstorable))
        #expect(Self.parse(#"{"type":"prompt","voicePrompt":"a\u0000b","last":true}"#) == .failure(.unstorable))
    }

    @Test func encodesTextAndEndAsTheProviderReadsThem() throws {
        let text = try #require(try JSONSerialization.jsonObject(with: Data(ConversationRelayFrame.Outbound.text("Say \"hi\"", last: true).json.utf8)) as? [String: Any])
        #expect(text["type"] as? String == "text")
        #expect(text["token"] as? String == "Say \"hi\"")
        #expect(text["last"] as? Bool == true)
        let end = try #require(try JSONSerialization.jsonObject(with: Data(ConversationRelayFrame.Outbound.end(
            handoffData: ConversationRelayFrame.handoff(action: .transfer, transferTo: "+14155550123")).json.utf8)) as? [String: Any])
        #expect(end["type"] as? String == "end")
        let handoff = try #require(end["handoffData"] as? String)
        #expect(ConversationMapping.handoff(handoff) == .transfer("+14155550123"))
        #expect(ConversationRelayFrame.Outbound.end(handoffData: nil).json == #"{"type":"end"}"#)
    }

    @Test func partialPromptsMakeOneTurnAndTurnsAreNumbered() {
        var (session, call) = Self.openSession()
        #expect(call.callID == CallID.derive(tenant: Self.tenant, provider: .twilio, providerCallID: "CA1"))
        #expect(call.from == "+14155550100")
        #expect(session.receive(Self.parse(#"{"type":"prompt","voicePrompt":"I'd like","lang":"en-US","last":false}"#)).isEmpty)
        #expect(session.receive(Self.parse(#"{"type":"prompt","voicePrompt":" to book a cleaning","last":true}"#))
            == [.ask(.init(number: 1, text: "I'd like to book a cleaning", language: "en-US"), attempt: 1)])
        #expect(session.replied(Self.reply(1, "When would suit you?", .continue, call: call.callID)) == [.send(.text("When would suit you?", last: true))])
        // Cumulative partials (each repeats what was heard so far) are not doubled.
        _ = session.receive(Self.parse(#"{"type":"prompt","voicePrompt":"Tuesday","last":false}"#))
        #expect(session.receive(Self.parse(#"{"type":"prompt","voicePrompt":"Tuesday morning","last":true}"#))
            == [.ask(.init(number: 2, text: "Tuesday morning"), attempt: 1)])
        #expect(session.replied(Self.reply(2, "Thank you, goodbye.", .hangup, call: call.callID))
            == [.send(.text("Thank you, goodbye.", last: true)), .send(.end(handoffData: nil)), .finish])
        #expect(session.isEnded)
        #expect(session.receive(Self.parse(#"{"type":"prompt","voicePrompt":"hello?","last":true}"#)) == [.reject(.afterEnd)])
    }

    @Test func whatTheCallerSaysWhileAReplyIsAwaitedWaitsItsTurn() {
        var (session, call) = Self.openSession()
        #expect(session.receive(Self.parse(#"{"type":"dtmf","digit":"1"}"#)) == [.ask(.init(number: 1, text: "", digits: "1"), attempt: 1)])
        #expect(session.receive(Self.parse(#"{"type":"prompt","voicePrompt":"and also","last":true}"#)).isEmpty)
        #expect(session.receive(Self.parse(#"{"type":"interrupt"}"#)).isEmpty)
        // A reply to another turn changes nothing.
        #expect(session.replied(Self.reply(2, "?", .continue, call: call.callID)).isEmpty)
        #expect(session.replied(Self.reply(1, "Sales, one moment.", .continue, call: call.callID))
            == [.send(.text("Sales, one moment.", last: true)), .ask(.init(number: 2, text: "and also"), attempt: 1)])
    }

    @Test func transferAndVoicemailEndWithHandoffData() {
        var (session, call) = Self.openSession()
        _ = session.receive(Self.parse(#"{"type":"prompt","voicePrompt":"A person please","last":true}"#))
        #expect(session.replied(Self.reply(1, "Connecting you now.", .transfer, transferTo: "+14155550123", call: call.callID))
            == [.send(.text("Connecting you now.", last: true)),
                .send(.end(handoffData: #"{"action":"transfer","transfer_to":"+14155550123"}"#)), .finish])
        var (other, otherCall) = Self.openSession()
        _ = other.receive(Self.parse(#"{"type":"prompt","voicePrompt":"Leave a message","last":true}"#))
        #expect(other.replied(Self.reply(1, "Please speak after the tone.", .voicemail, call: otherCall.callID))
            == [.send(.text("Please speak after the tone.", last: true)), .send(.end(handoffData: #"{"action":"voicemail"}"#)), .finish])
    }

    @Test func aLateReplyGetsTheHoldingLineThenAVoicemail() {
        var (session, _) = Self.openSession()
        _ = session.receive(Self.parse(#"{"type":"prompt","voicePrompt":"Are you open?","last":true}"#))
        #expect(session.missedDeadline(turn: 1) == [.send(.text(ConversationRelaySession.holdingLine, last: true)),
                                                     .ask(.init(number: 1, text: "Are you open?"), attempt: 2)])
        let ended = session.missedDeadline(turn: 1)
        #expect(ended == [.send(.end(handoffData: #"{"action":"voicemail","reason":"receptionist unavailable"}"#)), .finish])
        #expect(ConversationMapping.handoff(#"{"action":"voicemail","reason":"receptionist unavailable"}"#) == .voicemail(apologise: true))
        #expect(ConversationRelayMetrics.outcome(of: ended) == "fallback")
    }

    @Test func messagesOutOfPlaceAreRejectedAndTheSessionGoesOn() {
        var session = ConversationRelaySession(tenant: Self.tenant)
        #expect(session.receive(Self.parse(#"{"type":"prompt","voicePrompt":"hi","last":true}"#)) == [.reject(.beforeSetup)])
        #expect(session.receive(Self.parse(#"{"type":"dtmf","digit":"1"}"#)) == [.reject(.beforeSetup)])
        _ = session.receive(Self.parse(#"{"type":"setup","callSid":"CA9"}"#))
        #expect(session.call?.from == nil)
        #expect(session.receive(Self.parse(#"{"type":"setup","callSid":"CA10"}"#)) == [.reject(.duplicateSetup)])
        #expect(session.call?.callSid == "CA9")
        #expect(session.receive(.failure(.binary)) == [.reject(.binary)])
        #expect(session.receive(Self.parse(#"{"type":"prompt","voicePrompt":"hi","last":true}"#)) == [.ask(.init(number: 1, text: "hi"), attempt: 1)])
    }

    @Test func theUpgradeIsSignedOverItsWebSocketURL() {
        #expect(Edge.webSocketURL(base: "https://edge.example.com") == "wss://edge.example.com")
        #expect(Edge.webSocketURL(base: "http://127.0.0.1:8080") == "ws://127.0.0.1:8080")
        let key = Array("token".utf8)
        let signature = TwilioSignature.sign(url: "wss://edge.example.com/webhooks/twilio/t/relay", parameters: [], key: key)
        #expect(TwilioSignature.verify(signature: signature, url: "wss://edge.example.com:443/webhooks/twilio/t/relay", parameters: [], key: key))
        #expect(!TwilioSignature.verify(signature: signature, url: "https://edge.example.com/webhooks/twilio/t/relay", parameters: [], key: key))
    }

    @Test func theEdgeRemembersEndedCallsUpToItsCapacity() {
        let sessions = ConversationRelaySessions(capacity: 2)
        let calls = (0..<4).map { _ in Identifier.v7() }
        #expect(sessions.open(calls[0]) == nil)
        #expect(sessions.open(calls[0]) == "call already has a relay session")
        sessions.ended(calls[0])
        #expect(sessions.open(calls[0]) == "call already ended")
        for call in calls.dropFirst() { sessions.ended(call) }
        #expect(!sessions.hasEnded(calls[0]) && sessions.hasEnded(calls[2]) && sessions.hasEnded(calls[3]))
    }
}

// MARK: A real edge, a WebSocket playing Twilio

/// An edge listening on a port of its own with its turn replies, over the fixture's tenant,
/// streams, Redis and Postgres; metrics in a registry of its own.
final class RelayEdge: @unchecked Sendable {
    let fixture: EdgeFixture
    let registry = PrometheusCollectorRegistry()
    let replies: TurnReplies
    let port: Int
    let services: ServiceGroup
    let running: Task<Void, any Error>
    let clients = MultiThreadedEventLoopGroup(numberOfThreads: 1)

    init(turnDeadline: Duration) async throws {
        fixture = try await EdgeFixture(requestsPerSecond: 1000)
        let tail = try await StreamTail.connect(try RedisConfiguration(url: TestServers.redisURL), clientName: "test-relay",
                                                configuration: StreamTail.Configuration(streams: fixture.naming.streams(.conversations, kind: .event),
                                                                                        block: .milliseconds(200)))
        replies = TurnReplies(tail: tail)
        var edge = Edge(configuration: EdgeConfiguration(host: "127.0.0.1", port: 0, publicBaseURL: EdgeFixture.publicBase, tenantCacheTTL: .zero,
                                                         turnDeadline: turnDeadline),
                        publisher: fixture.publisher, lookup: fixture.directory, registry: registry,
                        metricsFactory: PrometheusMetricsFactory(registry: registry))
        edge.turnReplies = replies
        let listening = Mutex<Int?>(nil)
        services = ServiceGroup(services: [edge.application(onServerRunning: { channel in listening.withLock { $0 = channel.localAddress?.port } }), replies],
                                logger: Logger(label: "test.relay"))
        let services = self.services
        running = Task { try await services.run() }
        let deadline = ContinuousClock.now + .seconds(10)
        while listening.withLock({ $0 }) == nil || !replies.isFollowing {
            guard ContinuousClock.now < deadline else { throw TestError("the edge or its turn replies did not start") }
            try await Task.sleep(for: .milliseconds(10))
        }
        port = try #require(listening.withLock { $0 })
    }

    var relayPath: String { "/webhooks/twilio/\(fixture.tenant)/relay" }

    /// `X-Twilio-Signature` of the relay URL as Twilio signs it (the `wss://` URL it opened).
    func signature(path: String? = nil, token: String? = nil) -> String {
        TwilioSignature.sign(url: Edge.webSocketURL(base: EdgeFixture.publicBase) + (path ?? relayPath), parameters: [],
                             key: Array((token ?? fixture.twilioToken).utf8))
    }

    /// Opens the relay WebSocket as Twilio would (signed).
    func connect(signature: String? = nil) -> RelayPeer {
        RelayPeer(url: "ws://127.0.0.1:\(port)\(relayPath)", headers: [.twilioSignature: signature ?? self.signature()], group: clients)
    }

    /// The counter's value in the edge's metrics (0 when never incremented).
    func counter(_ name: String, _ labels: String = "") -> Int {
        var text: [UInt8] = []
        registry.emit(into: &text)
        let prefix = labels.isEmpty ? name + " " : "\(name){\(labels)} "
        for line in String(decoding: text, as: UTF8.self).split(separator: "\n") where line.hasPrefix(prefix) {
            return Int(Double(line.dropFirst(prefix.count).trimmingCharacters(in: .whitespaces)) ?? -1)
        }
        return 0
    }

    /// The caller turns published so far, in stream order per partition.
    func turns() async throws -> [(EventEnvelope, ReportCallerTurn)] {
        try await fixture.commands().filter { $0.type == ReportCallerTurn.type }.map { ($0, try MessageCodec.decode(ReportCallerTurn.self, from: $0.data)) }
    }

    /// A plain HTTP upgrade request on a socket of its own: the status and body the edge answered.
    func rawUpgrade(path: String, headers: [(String, String)], upgrade: Bool = true) async throws -> (status: Int, body: String) {
        let channel = try await ClientBootstrap(group: clients).connect(host: "127.0.0.1", port: port) { channel in
            channel.eventLoop.makeCompletedFuture { try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel) }
        }
        var request = "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\n"
        if upgrade {
            request += "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        }
        for (name, value) in headers { request += "\(name): \(value)\r\n" }
        request += "\r\n"
        // Read the head, then the body by its length (an accepted upgrade stays open: no body);
        // an edge that answers nothing is cut off after a while.
        let raw = channel.channel
        let timer = Task {
            try await Task.sleep(for: .seconds(10))
            try await raw.close()
        }
        defer { timer.cancel() }
        return try await channel.executeThenClose { inbound, outbound in
            try await outbound.write(ByteBuffer(string: request))
            var answer = ""
            for try await chunk in inbound {
                answer += String(buffer: chunk)
                guard let headEnd = answer.range(of: "\r\n\r\n") else { continue }
                let head = answer[..<headEnd.lowerBound]
                let statusLine = head.prefix { $0 != "\r" }.split(separator: " ")
                let status = statusLine.count > 1 ? Int(statusLine[1]) ?? 0 : 0
                let length = head.split(separator: "\r\n").first { $0.lowercased().hasPrefix("content-length:") }
                    .flatMap { Int($0.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces)) } ?? 0
                let body = String(answer[headEnd.upperBound...])
                if status == 101 || body.utf8.count >= length { return (status, body) }
            }
            throw TestError("the edge closed the connection without an answer: \(answer)")
        }
    }

    func stop() async throws {
        await services.triggerGracefulShutdown()
        _ = await running.result
        try await clients.shutdownGracefully()
        try await fixture.drop()
    }
}

/// Twilio's side of a ConversationRelay WebSocket: sends frames, collects what the edge says.
final class RelayPeer: Sendable {
    enum Outgoing: Sendable {
        case text(String)
        case binary([UInt8])
        case hangUp
    }

    /// What the edge sent, in order, and how much of it the test read.
    private final class Inbox: Sendable {
        let messages = Mutex<[String]>([])
        let consumed = Mutex(0)
    }

    private let outgoing: AsyncStream<Outgoing>.Continuation
    private let inbox = Inbox()
    /// The connection: the edge's close frame when it ends.
    let connection: Task<WebSocketCloseFrame?, any Error>

    init(url: String, headers: HTTPFields, group: any EventLoopGroup) {
        let (stream, outgoing) = AsyncStream<Outgoing>.makeStream()
        self.outgoing = outgoing
        let inbox = self.inbox
        connection = Task {
            try await WebSocketClient.connect(url: url, configuration: WebSocketClientConfiguration(maxFrameSize: 1 << 16, additionalHeaders: headers),
                                              eventLoopGroup: group, logger: Logger(label: "test.twilio")) { inbound, outbound, _ in
                let writer = Task {
                    for await frame in stream {
                        switch frame {
                        case .text(let text): try await outbound.write(.text(text))
                        case .binary(let bytes): try await outbound.write(.binary(ByteBuffer(bytes: bytes)))
                        case .hangUp: try await outbound.close(.normalClosure, reason: nil)
                        }
                    }
                }
                defer { writer.cancel() }
                for try await message in inbound.messages(maxSize: 1 << 16) {
                    if case .text(let text) = message { inbox.messages.withLock { $0.append(text) } }
                }
            }
        }
    }

    func send(_ json: String) { outgoing.yield(.text(json)) }
    func sendBinary(_ bytes: [UInt8]) { outgoing.yield(.binary(bytes)) }

    /// The next message the edge sent, parsed.
    func next(within timeout: Duration = .seconds(10)) async throws -> [String: Any] {
        let deadline = ContinuousClock.now + timeout
        while true {
            let index = inbox.consumed.withLock { $0 }
            if let text = inbox.messages.withLock({ $0.count > index ? $0[index] : nil }) {
                inbox.consumed.withLock { $0 += 1 }
                return try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
            }
            guard ContinuousClock.now < deadline else { throw TestError("the edge sent nothing within \(timeout)") }
            try await Task.sleep(for: .milliseconds(5))
        }
    }

    /// Everything the edge sent that was not read with ``next(within:)``.
    var unread: [String] { inbox.messages.withLock { all in Array(all.dropFirst(inbox.consumed.withLock { $0 })) } }

    /// Waits for the WebSocket to close: hanging up first, as Twilio does after `end`, or not
    /// (to see how the edge closes it).
    func closed(hangingUp: Bool = true, within timeout: Duration = .seconds(15)) async throws -> WebSocketCloseFrame? {
        if hangingUp { outgoing.yield(.hangUp) }
        outgoing.finish()
        // Awaiting a task's value does not end when the waiter is cancelled: past the timeout
        // the connection itself is cancelled (the client then closes it).
        let connection = self.connection
        let timer = Task {
            try await Task.sleep(for: timeout)
            connection.cancel()
            return true
        }
        let result = await connection.result
        timer.cancel()
        if (try? await timer.value) == true { throw TestError("the WebSocket stayed open for \(timeout)") }
        return try result.get()
    }
}

/// The receptionist, played by the test: answers each caller turn on the conversations command
/// streams with `ReceptionistReplied` (id `replyID(commandID:)`, causation the command), as decided
/// by `answer` (nil: no answer, as a receptionist that is down).
final class PlayedReceptionist: Sendable {
    let task: Task<Void, Never>

    init(_ fixture: EdgeFixture, answer: @escaping @Sendable (ReportCallerTurn) -> (String, ReceptionistAction, String?)?) {
        task = Task {
            var seen: Set<Identifier> = []
            while !Task.isCancelled {
                for partition in 0..<fixture.naming.partitions {
                    let stream = fixture.naming.stream(.conversations, kind: .command, partition: partition)
                    guard let entries = try? await fixture.redis.execute(.xrange(stream)) else { continue }
                    for entry in entries {
                        guard let command = try? EventEnvelope(fields: (entry.fields ?? []).map { EnvelopeField(name: $0.name, value: $0.value) }),
                              seen.insert(command.id).inserted,
                              let turn = try? MessageCodec.decode(ReportCallerTurn.self, from: command.data),
                              let decided = answer(turn) else { continue }
                        let (text, action, transferTo) = decided
                        let reply = ReceptionistReplied(callID: turn.callID, provider: turn.provider, providerCallID: turn.providerCallID, turn: turn.turn,
                                                        channel: turn.channel, heard: turn.text.isEmpty ? (turn.digits ?? "") : turn.text, text: text,
                                                        action: action, transferTo: transferTo, decidedBy: .builtIn, repliedAt: .now)
                        let envelope = EventEnvelope(reply, tenant: command.tenantID, source: "/test/receptionist", correlationID: command.correlationID,
                                                     causationID: command.id, id: ReceptionistReplied.replyID(commandID: command.id))
                        _ = try? await fixture.publisher.publish(envelope, category: .conversations, kind: .event)
                    }
                }
                try? await Task.sleep(for: .milliseconds(20))
            }
        }
    }

    func stop() {
        task.cancel()
    }
}

@Suite("ConversationRelay over a real edge (a WebSocket playing Twilio)", .serialized)
struct ConversationRelayTests {
    static let setup = #"{"type":"setup","sessionId":"VX00000000000000000000000000000001","accountSid":"AC00000000000000000000000000000001","callSid":"CA_CALL","from":"+14155550100","to":"+14155550199","direction":"inbound","callStatus":"RINGING","customParameters":{}}"#

    static func setup(_ callSid: String) -> String { setup.replacingOccurrences(of: "CA_CALL", with: callSid) }

    @Test func aMultiTurnCallIsAnsweredTurnByTurnAndEndsWithAHangup() async throws {
        let edge = try await RelayEdge(turnDeadline: .seconds(5))
        let receptionist = PlayedReceptionist(edge.fixture) { turn in
            switch turn.turn {
            case 1: ("Of course. What day suits you?", .continue, nil)
            case 2: ("Tuesday at nine is booked. Anything else?", .continue, nil)
            default: ("Thank you for calling. Goodbye.", .hangup, nil)
            }
        }
        let callSid = "CA\(UUID().uuidString.prefix(8))"
        let twilio = edge.connect()
        twilio.send(Self.setup(callSid))
        twilio.send(#"{"type":"prompt","voicePrompt":"I'd like to book","lang":"en-US","last":false}"#)
        twilio.send(#"{"type":"prompt","voicePrompt":" a cleaning","lang":"en-US","last":true}"#)
        var said = try await twilio.next()
        #expect(said["type"] as? String == "text")
        #expect(said["token"] as? String == "Of course. What day suits you?")
        #expect(said["last"] as? Bool == true)
        twilio.send(#"{"type":"prompt","voicePrompt":"Tuesday at nine","last":true}"#)
        said = try await twilio.next()
        #expect(said["token"] as? String == "Tuesday at nine is booked. Anything else?")
        twilio.send(##"{"type":"dtmf","digit":"#"}"##)
        said = try await twilio.next()
        #expect(said["token"] as? String == "Thank you for calling. Goodbye.")
        let end = try await twilio.next()
        #expect(end["type"] as? String == "end")
        #expect(end["handoffData"] == nil)
        _ = try await twilio.closed()

        let call = CallID.derive(tenant: edge.fixture.tenant, provider: .twilio, providerCallID: callSid)
        let turns = try await edge.turns()
        #expect(turns.map(\.1.turn) == [1, 2, 3])
        #expect(turns.map(\.1.text) == ["I'd like to book a cleaning", "Tuesday at nine", ""])
        #expect(turns[2].1.digits == "#")
        #expect(turns.allSatisfy { $0.1.callID == call && $0.1.channel == .relay && $0.1.from == "+14155550100" && $0.1.to == "+14155550199" })
        #expect(turns.map(\.0.id) == (1...3).map { ReportCallerTurn.commandID(callID: call, turn: $0) })
        #expect(turns.first?.1.language == "en-US")
        #expect(edge.counter(ConversationRelayMetricNames.sessionsEnded, #"outcome="hangup""#) == 1)
        #expect(edge.counter(ConversationRelayMetricNames.turns) == 3)

        // The call's conversation is over: a new WebSocket for it is closed with a reason.
        let again = edge.connect()
        again.send(Self.setup(callSid))
        let closing = try await again.closed(hangingUp: false)
        #expect(closing?.closeCode == .policyViolation)
        #expect(closing?.reason == "call already ended")
        #expect(try await edge.turns().count == 3)
        receptionist.stop()
        try await edge.stop()
    }

    @Test func aTransferEndsTheSessionWithHandoffDataForTheConnectAction() async throws {
        let edge = try await RelayEdge(turnDeadline: .seconds(5))
        let receptionist = PlayedReceptionist(edge.fixture) { _ in ("Let me connect you to the front desk.", .transfer, "+14155550123") }
        let twilio = edge.connect()
        twilio.send(Self.setup("CA\(UUID().uuidString.prefix(8))"))
        twilio.send(#"{"type":"prompt","voicePrompt":"Can I talk to a person?","last":true}"#)
        let said = try await twilio.next()
        #expect(said["token"] as? String == "Let me connect you to the front desk.")
        let end = try await twilio.next()
        #expect(end["type"] as? String == "end")
        let handoff = try #require(end["handoffData"] as? String)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(handoff.utf8)) as? [String: Any])
        #expect(object["action"] as? String == "transfer")
        #expect(object["transfer_to"] as? String == "+14155550123")
        // What the `<Connect action>` route makes of it.
        #expect(ConversationMapping.handoff(handoff) == .transfer("+14155550123"))
        _ = try await twilio.closed()
        #expect(edge.counter(ConversationRelayMetricNames.sessionsEnded, #"outcome="transfer""#) == 1)
        receptionist.stop()
        try await edge.stop()
    }

    @Test func malformedAndUnknownFramesAreCountedAndTheSessionGoesOn() async throws {
        let edge = try await RelayEdge(turnDeadline: .seconds(5))
        let receptionist = PlayedReceptionist(edge.fixture) { _ in ("We open at nine.", .continue, nil) }
        let twilio = edge.connect()
        twilio.send(#"{"type":"prompt","voicePrompt":"too early","last":true}"#)
        twilio.send(Self.setup("CA\(UUID().uuidString.prefix(8))"))
        twilio.send("this is not JSON")
        twilio.send(#"{"type":"media","media":{"payload":"AAAA"}}"#)
        twilio.send(#"{"voicePrompt":"no type"}"#)
        twilio.send(#"{"type":"dtmf","digit":"pressed"}"#)
        twilio.sendBinary([0, 1, 2, 3])
        twilio.send(Self.setup("CA_SECOND"))
        twilio.send(#"{"type":"interrupt","utteranceUntilInterrupt":"We","durationUntilInterruptMs":120}"#)
        twilio.send(#"{"type":"error","description":"Invalid message received"}"#)
        twilio.send(#"{"type":"prompt","voicePrompt":"When do you open?","last":true}"#)
        let said = try await twilio.next()
        #expect(said["token"] as? String == "We open at nine.")
        let rejected = ConversationRelayMetricNames.framesRejected
        #expect(edge.counter(rejected, #"reason="before_setup""#) == 1)
        #expect(edge.counter(rejected, #"reason="malformed""#) == 1)
        #expect(edge.counter(rejected, #"reason="unknown_type""#) == 1)
        #expect(edge.counter(rejected, #"reason="missing_type""#) == 1)
        #expect(edge.counter(rejected, #"reason="invalid_field""#) == 1)
        #expect(edge.counter(rejected, #"reason="binary""#) == 1)
        #expect(edge.counter(rejected, #"reason="duplicate_setup""#) == 1)
        // Only the one turn the caller spoke after setup was published.
        let turns = try await edge.turns()
        #expect(turns.map(\.1.text) == ["When do you open?"])
        #expect(twilio.unread.isEmpty)
        // The caller hangs up: the session ends without an `end` of ours.
        _ = try await twilio.closed()
        // The edge learns of the close on its own connection, a moment after the peer.
        try await AuditTrailTests.eventually("the session counted as closed") {
            edge.counter(ConversationRelayMetricNames.sessionsEnded, #"outcome="closed""#) == 1
        }
        receptionist.stop()
        try await edge.stop()
    }

    @Test func anUnsignedOrForgedUpgradeIsRefusedAndPublishesNothing() async throws {
        let edge = try await RelayEdge(turnDeadline: .seconds(5))
        let upgrade = edge.relayPath
        let unsigned = try await edge.rawUpgrade(path: upgrade, headers: [])
        #expect(unsigned.status == 403)
        #expect(unsigned.body.contains("\"status\":403"))
        let forged = try await edge.rawUpgrade(path: upgrade, headers: [("X-Twilio-Signature", edge.signature(token: "not-the-token"))])
        #expect(forged.status == 403)
        // Signed for another path (the signature covers the URL).
        let otherPath = try await edge.rawUpgrade(path: upgrade + "?x=1", headers: [("X-Twilio-Signature", edge.signature())])
        #expect(otherPath.status == 403)
        let unknown = "/webhooks/twilio/\(Identifier.v7())/relay"
        let stranger = try await edge.rawUpgrade(path: unknown, headers: [("X-Twilio-Signature", edge.signature(path: unknown))])
        #expect(stranger.status == 404)
        #expect(stranger.body.contains("Unknown tenant"))
        let signed = try await edge.rawUpgrade(path: upgrade + "?x=1", headers: [("X-Twilio-Signature", edge.signature(path: upgrade + "?x=1"))])
        #expect(signed.status == 101)
        // The same URL without an upgrade: told to upgrade, not a bare 404.
        let plain = try await edge.rawUpgrade(path: upgrade, headers: [("X-Twilio-Signature", edge.signature())], upgrade: false)
        #expect(plain.status == 426)
        #expect(plain.body.contains("\"status\":426"))

        // A client that plays the whole call with a forged signature gets no session.
        let forger = edge.connect(signature: edge.signature(token: "not-the-token"))
        forger.send(Self.setup("CA_FORGED"))
        forger.send(#"{"type":"prompt","voicePrompt":"hello","last":true}"#)
        await #expect(throws: (any Error).self) { try await forger.closed() }
        #expect(try await edge.fixture.commands().isEmpty)
        #expect(edge.counter(ConversationRelayMetricNames.upgradesRefused, #"status="403""#) == 4)
        #expect(edge.counter(ConversationRelayMetricNames.upgradesRefused, #"status="404""#) == 1)
        #expect(edge.counter(ConversationRelayMetricNames.sessionsOpened) == 0)
        try await edge.stop()
    }

    @Test func aReceptionistThatDoesNotAnswerGetsTheHoldingLineThenAVoicemailHandoff() async throws {
        let edge = try await RelayEdge(turnDeadline: .milliseconds(300))
        let receptionist = PlayedReceptionist(edge.fixture) { _ in nil }
        let twilio = edge.connect()
        twilio.send(Self.setup("CA\(UUID().uuidString.prefix(8))"))
        twilio.send(#"{"type":"prompt","voicePrompt":"Is anyone there?","last":true}"#)
        let holding = try await twilio.next()
        #expect(holding["type"] as? String == "text")
        #expect(holding["token"] as? String == ConversationRelaySession.holdingLine)
        let end = try await twilio.next()
        #expect(end["type"] as? String == "end")
        let handoff = try #require(end["handoffData"] as? String)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(handoff.utf8)) as? [String: Any])
        #expect(object["action"] as? String == "voicemail")
        #expect(object["reason"] as? String == "receptionist unavailable")
        #expect(ConversationMapping.handoff(handoff) == .voicemail(apologise: true))
        _ = try await twilio.closed()
        // The turn was asked twice and published once.
        let turns = try await edge.turns()
        #expect(turns.map(\.1.turn) == [1])
        #expect(edge.counter(ConversationRelayMetricNames.deadlineMisses) == 2)
        #expect(edge.counter(ConversationRelayMetricNames.sessionsEnded, #"outcome="fallback""#) == 1)
        receptionist.stop()
        try await edge.stop()
    }
}
