import Logging
import Metrics
import VoiceCoreBus
import VoiceCoreEvents
import VoiceCoreTenants
import VoiceCoreTime

/// The receptionist (group `receptionist`): answers each caller turn the edge reports.
///
/// - ``ReportCallerTurn`` (conversations commands) → exactly one ``ReceptionistReplied``
///   (conversations events) whose id is ``ReceptionistReplied/replyID(commandID:)`` and whose
///   `causationid` is the command's id: the edge waiting on the call correlates by it.
/// - What the conversation achieved becomes call events: ``AppointmentRequested``,
///   ``MessageTaken``, ``CallTransferred``; and an appointment or a message with a name or number
///   becomes the call's ``CreateLead`` (``AIService/leadID(of:)``: one lead per call, whichever
///   service asks first), so the CRM picks it up as it does intents.
///
/// The reply comes from the model (``ReceptionistModel``) when one is configured, from the
/// built-in ``ReceptionistPolicy`` otherwise, or when the model fails, is slow, or answers no
/// valid action (`decided_by: fallback`). The dialogue of each call is kept in Redis beside its
/// stream (``Dialogue``); a turn delivered again (a redelivery, a retried callback) is answered
/// with the reply stored for it, never decided twice. The group reads with a blocking read (no
/// background interval): a caller is waiting.
public struct ReceptionistService: Sendable {
    public static let group = "receptionist"

    let state: StateStore
    let emitter: Emitter
    let tenants: TenantProfiles
    let model: ReceptionistModel?
    let logger: Logger
    let metrics: ReceptionistMetrics

    /// - Parameter model: nil for the built-in policy only; by default the model the environment
    ///   configures (``ReceptionistModel/fromEnvironment(_:)``).
    public static func runner(_ dependencies: ServiceDependencies, model: ReceptionistModel? = ReceptionistModel.fromEnvironment()) async throws -> ConsumerGroupRunner {
        let service = ReceptionistService(
            state: dependencies.stateStore(try await dependencies.connect(group)),
            emitter: try await dependencies.emitter(group),
            tenants: dependencies.tenants, model: model, logger: dependencies.logger, metrics: ReceptionistMetrics())
        var handlers = MessageHandlers()
        handlers.aroundPartitionBatch(EffectBatch.scope(publisher: service.emitter.publisher))
        handlers.onPartitionAcquired { stream in service.state.invalidate(stream: stream) }
        handlers.on(ReportCallerTurn.self) { message, turn in try await service.handle(turn, message) }
        return ConsumerGroupRunner(redis: dependencies.redis,
                                   configuration: dependencies.consumer(group, streams: dependencies.naming.streams(.conversations, kind: .command), readInterval: nil),
                                   handlers: handlers, logger: dependencies.logger)
    }

    func handle(_ command: ReportCallerTurn, _ message: ConsumedMessage) async throws {
        let tenant = message.envelope.tenantID
        let commandID = message.envelope.id
        let key = StateStore.key(stream: message.stream, service: Self.group, entity: command.callID.description)
        var dialogue = Dialogue(fields: try await state.read(key))
        metrics.turns.increment()
        if let answered = dialogue.replies[command.turn] {
            // Answered before: the same reply again (its publish is deduplicated), no new decision.
            metrics.repeatedTurns.increment()
            try await emitter.emit(answered, tenant: tenant, key: "reply:\(commandID)", id: ReceptionistReplied.replyID(commandID: commandID))
            return
        }
        let before = dialogue
        let settings = try await tenants.profile(of: tenant)?.aiSettings ?? .builtIn
        let turn = CallerTurn(command)
        var (decision, author) = await decide(turn, dialogue: &dialogue, settings: settings, callID: command.callID)
        var events = outcomeEvents(decision, command: command, dialogue: &dialogue)
        var reply = self.reply(decision, command: command, dialogue: dialogue, author: author)
        if author == .model, (events.contains { !$0.isValid } || (try? reply.validate()) == nil) {
            // The model's details do not make valid events (a name on two lines, …): the policy answers.
            metrics.modelFailed("invalid")
            dialogue = before
            decision = ReceptionistPolicy.decide(turn, dialogue: &dialogue, settings: settings)
            author = .fallback
            events = outcomeEvents(decision, command: command, dialogue: &dialogue)
            reply = self.reply(decision, command: command, dialogue: dialogue, author: author)
        }
        metrics.decided(by: author)
        if events.contains(where: { !$0.isValid }) {
            // The policy's own details did not make a valid event: the caller still gets the
            // reply (a turn that fails would go unanswered), the event is left out and logged.
            logger.error("receptionist outcome is not a valid event; left out", metadata: ["call": "\(command.callID)", "turn": "\(command.turn)"])
            events.removeAll { !$0.isValid }
        }
        try await emitter.emit(reply, tenant: tenant, key: "reply:\(commandID)", id: ReceptionistReplied.replyID(commandID: commandID))
        for event in events { try await event.emit(emitter, tenant) }
        dialogue.replies[command.turn] = reply
        dialogue.lastTurn = max(dialogue.lastTurn, command.turn)
        try await state.write(key, dialogue.changes(from: before))
    }

    /// The model's decision when there is a model and it gives a valid one in time; the policy's otherwise.
    private func decide(_ turn: CallerTurn, dialogue: inout Dialogue, settings: AISettings, callID: Identifier) async -> (ReceptionistDecision, ReplyAuthor) {
        guard let model else { return (ReceptionistPolicy.decide(turn, dialogue: &dialogue, settings: settings), .builtIn) }
        var proposed = dialogue
        do {
            let decision = try await model.decide(turn, dialogue: &proposed, settings: settings)
            dialogue = proposed
            return (decision, .model)
        } catch {
            let reason = (error as? ReceptionistModel.Failure)?.reason ?? "other"
            metrics.modelFailed(reason)
            logger.warning("receptionist model failed; the built-in policy answers",
                           metadata: ["call": "\(callID)", "turn": "\(turn.turn)", "reason": "\(reason)", "error": "\(error)"])
            return (ReceptionistPolicy.decide(turn, dialogue: &dialogue, settings: settings), .fallback)
        }
    }

    private func reply(_ decision: ReceptionistDecision, command: ReportCallerTurn, dialogue: Dialogue, author: ReplyAuthor) -> ReceptionistReplied {
        ReceptionistReplied(callID: command.callID, provider: command.provider, providerCallID: command.providerCallID, turn: command.turn,
                            channel: command.channel, heard: command.text.isEmpty ? (command.digits ?? "") : command.text,
                            text: String(decision.text.prefix(ConversationLimits.replyLength)),
                            action: decision.action, transferTo: decision.transferTo, slots: Self.publishable(dialogue.slots),
                            intent: dialogue.intent, decidedBy: author, repliedAt: .now)
    }

    /// The slots as a reply carries them: valid names, values within the limit, at most the limit's count.
    static func publishable(_ slots: [String: String]) -> [String: String] {
        var kept: [String: String] = [:]
        for (name, value) in slots.sorted(by: { $0.key < $1.key }) where kept.count < ConversationLimits.slotCount {
            guard !value.isEmpty, name.utf8.count <= 64, name.utf8.allSatisfy({ ($0 >= 97 && $0 <= 122) || ($0 >= 48 && $0 <= 57) || $0 == 95 }) else { continue }
            kept[name] = String(value.prefix(ConversationLimits.slotValueLength))
        }
        return kept
    }

    /// A call event (or the lead command) the turn produces, ready to publish once.
    struct Outcome: Sendable {
        let message: any Message
        private let publish: @Sendable (Emitter, Identifier) async throws -> Void

        init<M: Message>(_ message: M, key: String) {
            self.message = message
            self.publish = { emitter, tenant in try await emitter.emit(message, tenant: tenant, key: key) }
        }

        var isValid: Bool { (try? message.validate()) != nil }

        func emit(_ emitter: Emitter, _ tenant: Identifier) async throws { try await publish(emitter, tenant) }
    }

    private func outcomeEvents(_ decision: ReceptionistDecision, command: ReportCallerTurn, dialogue: inout Dialogue) -> [Outcome] {
        let commandID = ReportCallerTurn.commandID(callID: command.callID, turn: command.turn)
        let now = Timestamp.now
        var events: [Outcome] = []
        var lead: CreateLead?
        switch decision.outcome {
        case .appointment(let name, let phone, let time, let reason)?:
            events.append(Outcome(AppointmentRequested(callID: command.callID, name: name, phone: phone, preferredTime: time, reason: reason,
                                                       turn: command.turn, requestedAt: now),
                                  key: "appointment:\(commandID)"))
            if name != nil || phone != nil {
                lead = CreateLead(leadID: AIService.leadID(of: command.callID), callID: command.callID, name: name, phone: phone,
                                  email: dialogue.slots["email"], intent: .appointment,
                                  notes: "Appointment requested for \(time)." + (reason.map { " Caller said: \($0)" } ?? ""))
            }
        case .message(let name, let phone, let message)?:
            events.append(Outcome(MessageTaken(callID: command.callID, name: name, phone: phone, message: message, turn: command.turn, takenAt: now),
                                  key: "message:\(commandID)"))
            if name != nil || phone != nil {
                lead = CreateLead(leadID: AIService.leadID(of: command.callID), callID: command.callID, name: name, phone: phone,
                                  email: dialogue.slots["email"], intent: dialogue.intent ?? .other, notes: "Message: \(message)")
            }
        case .transfer(let to, let reason)?:
            events.append(Outcome(CallTransferred(callID: command.callID, to: to, reason: reason, turn: command.turn, transferredAt: now),
                                  key: "transfer:\(commandID)"))
        case nil:
            break
        }
        if let lead, !dialogue.leadCreated {
            // The same key as the AI service's lead of the call: one CreateLead per call.
            events.append(Outcome(lead, key: "lead:\(command.callID)"))
            dialogue.leadCreated = true
        }
        return events
    }
}

/// The receptionist's counters: turns, decisions by author, model failures by reason.
struct ReceptionistMetrics: Sendable {
    let turns: Counter
    let repeatedTurns: Counter
    private let factory: any MetricsFactory

    init(factory: any MetricsFactory = MetricsSystem.factory) {
        self.factory = factory
        turns = Counter(label: "voicecore_receptionist_turns_total", factory: factory)
        repeatedTurns = Counter(label: "voicecore_receptionist_repeated_turns_total", factory: factory)
    }

    func decided(by author: ReplyAuthor) {
        Counter(label: "voicecore_receptionist_decisions_total", dimensions: [("decided_by", author.rawValue)], factory: factory).increment()
    }

    func modelFailed(_ reason: String) {
        Counter(label: "voicecore_receptionist_model_failures_total", dimensions: [("reason", reason)], factory: factory).increment()
    }
}
