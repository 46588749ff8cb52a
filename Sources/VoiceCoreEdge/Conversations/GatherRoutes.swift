import Hummingbird
import Logging
import NIOCore
import VoiceCoreBus
import VoiceCoreEvents
import VoiceCoreTenants
import VoiceCoreTime

/// A Twilio call's conversation over classic TwiML: each caller turn a signed `<Gather>`
/// callback, published as a `ReportCallerTurn` command and answered with the receptionist's reply
/// (``TurnReplies``) as the next TwiML.
///
/// - `POST /webhooks/twilio/{tenant}/gather?turn=N[&attempt=2]` — the caller's turn N
///   (`SpeechResult`, `Confidence`, `Digits`): published once per call and turn (a retried
///   callback is the same command), then answered by the reply's action — the next `<Gather>`,
///   `<Dial>`, `<Record>` or `<Hangup>`. Past ``EdgeConfiguration/turnDeadline`` the caller hears a
///   holding line and Twilio is redirected to wait again for the same turn (`attempt=2`); a
///   second miss takes a message (`<Record>`), which needs no AI. Once the turn is published the
///   answer is always TwiML, never an error.
/// - `POST /webhooks/twilio/{tenant}/recording` — `recordingStatusCallback`: a `ReportRecording`
///   command, once per recording and status.
/// - `POST /webhooks/twilio/{tenant}/recorded` — `<Record action>`: thanks and hangs up.
/// - `POST /webhooks/twilio/{tenant}/relay/ended` — ConversationRelay's `<Connect action>`: the
///   session's `HandoffData` decides: `<Dial>`, `<Record>` or `<Hangup>`.
///
/// Every route verifies Twilio's signature first: a forged or unsigned callback is 403 and
/// publishes nothing.
extension Edge {
    func addConversationRoutes(to router: Router<BasicRequestContext>) {
        router.post("/webhooks/twilio/{tenant}/gather") { request, context in
            let (tenant, form) = try await verifiedTwilio(request, context)
            let (turn, attempt) = try ConversationMapping.turn(request.uri.queryParameters.map { (String($0.key), String($0.value)) })
            let command = try ConversationMapping.callerTurn(form, tenant: tenant, turn: turn, receivedAt: .now)
            let commandID = ReportCallerTurn.commandID(callID: command.callID, turn: turn)
            let published = try await publish(command, tenant: tenant, source: "/edge/twilio", id: commandID,
                                              deduplicationKey: ConversationMapping.turnKey(commandID), metricSource: "twilio")
            let urls = ConversationURLs(base: publicBase(of: request), tenant: tenant)
            return Self.twiml(try await answer(turn: turn, attempt: attempt, of: command, commandID: commandID, alreadyPublished: published.isDuplicate,
                                               tenant: tenant, urls: urls))
        }
        router.post("/webhooks/twilio/{tenant}/recording") { request, context in
            let (tenant, form) = try await verifiedTwilio(request, context)
            guard let report = try ConversationMapping.recording(form, tenant: tenant, receivedAt: .now) else {
                metrics.ignored("twilio")
                return Self.empty()
            }
            _ = try await publish(report, tenant: tenant, source: "/edge/twilio", deduplicationKey: ConversationMapping.recordingKey(report),
                                  metricSource: "twilio")
            return Self.empty()
        }
        router.post("/webhooks/twilio/{tenant}/recorded") { request, context in
            _ = try await verifiedTwilio(request, context)
            return Self.twiml(TwiML.goodbye())
        }
        router.post("/webhooks/twilio/{tenant}/relay/ended") { request, context in
            let (tenant, form) = try await verifiedTwilio(request, context)
            let handoff = ConversationMapping.handoff(form["HandoffData"])
            if handoff == .hangup, let data = form["HandoffData"], !data.isEmpty, !data.contains("\"hangup\"") {
                // Our own relay wrote it: a shape it does not produce is a bug worth seeing (its content stays out of the log).
                logger.warning("relay handoff not understood; hanging up", metadata: ["tenant": "\(tenant)", "bytes": "\(data.utf8.count)"])
            }
            return Self.twiml(TwiML.afterRelay(handoff, urls: ConversationURLs(base: publicBase(of: request), tenant: tenant)))
        }
    }

    /// The answer to an incoming call, by the tenant's conversation mode: `<Gather>` (the
    /// default) or ConversationRelay; the tenant's greeting, else the configured one.
    func voiceAnswer(_ credentials: TenantCredentials, urls: ConversationURLs) -> Response {
        let greeting = credentials.aiSettings?.greeting ?? configuration.greeting
        switch credentials.aiSettings?.conversation ?? .gather {
        case .gather: return Self.twiml(TwiML.gatherAnswer(greeting: greeting, urls: urls))
        case .relay: return Self.twiml(TwiML.relayAnswer(greeting: greeting, urls: urls))
        }
    }

    /// Waits for the turn's reply and says what the call does next. Never throws but for the
    /// request's own cancellation (the provider hung up on the request).
    private func answer(turn: Int, attempt: Int, of command: ReportCallerTurn, commandID: Identifier, alreadyPublished: Bool, tenant: Identifier,
                        urls: ConversationURLs) async throws -> String {
        guard let turnReplies else {
            // No one to wait with (an edge run without TurnReplies): a message, at once.
            return TwiML.takeMessage(urls: urls)
        }
        let stream = publisher.configuration.naming.stream(for: .conversations, kind: .event, tenant: tenant, subject: command.callID.description)
        if let reply = try await turnReplies.reply(to: commandID, stream: stream, deadline: configuration.turnDeadline, alreadyPublished: alreadyPublished) {
            if reply.callID == command.callID, reply.turn == turn {
                return TwiML.reply(reply, turn: turn, urls: urls)
            }
            // Its causation names this turn but it speaks of another: not an answer to trust.
            logger.warning("a reply's call or turn does not match the command it answers", metadata: ["tenant": "\(tenant)", "call": "\(command.callID)", "turn": "\(turn)"])
        }
        if attempt == 1 {
            return TwiML.holding(turn: turn, urls: urls)
        }
        logger.info("no reply to a caller's turn twice: taking a message", metadata: ["tenant": "\(tenant)", "call": "\(command.callID)", "turn": "\(turn)"])
        return TwiML.takeMessage(urls: urls)
    }

    static func twiml(_ document: String) -> Response {
        Response(status: .ok, headers: [.contentType: TwiML.contentType], body: .init(byteBuffer: ByteBuffer(string: document)))
    }
}
