import VoiceCoreEvents

/// One ConversationRelay session's conversation as a pure state machine: provider messages and
/// the receptionist's replies in, what to do next out. The WebSocket handler
/// (``ConversationRelayConnection``) performs the actions; this type does no I/O, so every path
/// of a call is tested as values.
///
/// - `setup` opens the session for its call (``Action/open(_:)``); anything before it is counted
///   and ignored, a second one too.
/// - Partial `prompt`s (`last: false`) are gathered until `last: true`; that utterance, or one
///   `dtmf` key, is a turn, numbered from 1 in this session (``Action/ask(_:attempt:)``). One
///   turn is asked at a time: what the caller says meanwhile waits its turn, in order.
/// - The reply is spoken (`text`, `last: true`); `transfer` and `voicemail` then end the session
///   with `handoffData` for the `<Connect action>` route, `hangup` ends it without.
/// - A reply that misses its deadline: the caller hears ``holdingLine`` and the same turn is
///   waited for again; a second miss ends the session with a voicemail handoff (a message needs
///   no receptionist) whose reason, ``fallbackReason``, makes the `<Connect action>` answer apologise.
public struct ConversationRelaySession: Sendable {
    /// The call a session belongs to, from its `setup`.
    public struct Call: Sendable, Equatable {
        public var tenant: Identifier
        public var callID: Identifier
        public var callSid: String
        /// E.164, or nil when the provider's value is not a phone number (`client:…`, SIP).
        public var from: String?
        public var to: String?
    }

    /// A caller turn to publish as ``ReportCallerTurn``.
    public struct Turn: Sendable, Equatable {
        public var number: Int
        public var text: String
        public var digits: String?
        public var language: String?
    }

    public enum Action: Sendable, Equatable {
        /// Count (and log) a message that was not understood; the session goes on.
        case reject(ConversationRelayFrame.Rejection)
        /// The session belongs to `call` now: register it (a call already ended is refused with
        /// ``refuse()``).
        case open(Call)
        /// Publish `turn` (again, on a second attempt: the same command id, so once in effect) and
        /// wait for its reply, then call ``replied(_:)`` or ``missedDeadline(turn:)``.
        case ask(Turn, attempt: Int)
        /// Send a message to the provider.
        case send(ConversationRelayFrame.Outbound)
        /// The conversation is over (an `end` was sent): the provider hangs up the relay now.
        case finish
    }

    /// Said while a reply is late; then the same turn is waited for again.
    public static let holdingLine = "One moment, please."
    /// Why the fallback voicemail happened (in its `handoffData`: the `<Connect action>` answer
    /// then apologises before it records).
    public static let fallbackReason = "receptionist unavailable"

    private enum Phase: Sendable {
        case awaitingSetup
        case open(Call)
        case ended
    }

    public let tenant: Identifier
    private var phase: Phase = .awaitingSetup
    /// The utterance being heard (partial prompts so far).
    private var partial = ""
    private var partialLanguage: String?
    private var nextTurn = 1
    /// The turn being asked and how many of its deadlines passed.
    private var asking: (turn: Turn, misses: Int)?
    private var waiting: [Turn] = []

    public init(tenant: Identifier) {
        self.tenant = tenant
    }

    /// The call, once `setup` opened the session.
    public var call: Call? {
        if case .open(let call) = phase { call } else { nil }
    }

    public var isEnded: Bool {
        if case .ended = phase { true } else { false }
    }

    /// The turn waiting for its reply, if any.
    public var askingTurn: Int? { asking?.turn.number }

    // MARK: Events

    /// A message from the provider, as ``ConversationRelayFrame/parse(_:)`` read it.
    public mutating func receive(_ parsed: Result<ConversationRelayFrame.Inbound, ConversationRelayFrame.Rejection>) -> [Action] {
        if case .ended = phase { return [.reject(.afterEnd)] }
        let frame: ConversationRelayFrame.Inbound
        switch parsed {
        case .failure(let rejection): return [.reject(rejection)]
        case .success(let value): frame = value
        }
        switch frame {
        case .setup(let setup):
            guard case .awaitingSetup = phase else { return [.reject(.duplicateSetup)] }
            let call = Call(tenant: tenant, callID: CallID.derive(tenant: tenant, provider: .twilio, providerCallID: setup.callSid),
                            callSid: setup.callSid, from: Self.phoneNumber(setup.from), to: Self.phoneNumber(setup.to))
            phase = .open(call)
            return [.open(call)]
        case .prompt(let text, let language, let last):
            guard case .open = phase else { return [.reject(.beforeSetup)] }
            hear(text)
            partialLanguage = language ?? partialLanguage
            guard last else { return [] }
            let turn = Turn(number: nextTurn, text: partial, digits: nil, language: partialLanguage)
            partial = ""
            partialLanguage = nil
            return ask(turn)
        case .dtmf(let digit):
            guard case .open = phase else { return [.reject(.beforeSetup)] }
            return ask(Turn(number: nextTurn, text: "", digits: digit, language: nil))
        case .interrupt, .error:
            guard case .open = phase else { return [.reject(.beforeSetup)] }
            // The caller spoke over the reply (what they say arrives as a prompt), or the provider
            // refused a message of ours: the conversation goes on either way.
            return []
        }
    }

    /// The receptionist answered. A reply to a turn not being asked (late, or another
    /// session's) changes nothing.
    public mutating func replied(_ reply: ReceptionistReplied) -> [Action] {
        guard !isEnded, let asking, reply.turn == asking.turn.number else { return [] }
        self.asking = nil
        let spoken = ConversationRelayFrame.Outbound.text(reply.text, last: true)
        switch reply.action {
        case .continue:
            return [.send(spoken)] + askNext()
        case .transfer:
            guard let number = reply.transferTo else {
                return end(saying: reply.text, handoff: ConversationRelayFrame.handoff(action: .voicemail, reason: "no transfer number"))
            }
            return end(saying: reply.text, handoff: ConversationRelayFrame.handoff(action: .transfer, transferTo: number))
        case .voicemail:
            return end(saying: reply.text, handoff: ConversationRelayFrame.handoff(action: .voicemail))
        case .hangup:
            return end(saying: reply.text, handoff: nil)
        }
    }

    /// The deadline of `turn`'s reply passed (or its command could not be published).
    public mutating func missedDeadline(turn: Int) -> [Action] {
        guard !isEnded, var asking, asking.turn.number == turn else { return [] }
        asking.misses += 1
        if asking.misses >= 2 {
            self.asking = nil
            // The `<Connect action>` answer apologises (the handoff has a reason) and records.
            return end(saying: nil, handoff: ConversationRelayFrame.handoff(action: .voicemail, reason: Self.fallbackReason))
        }
        self.asking = asking
        return [.send(.text(Self.holdingLine, last: true)), .ask(asking.turn, attempt: asking.misses + 1)]
    }

    /// The session may not go on (its call already ended): nothing more is asked or said.
    public mutating func refuse() {
        phase = .ended
        asking = nil
        waiting = []
    }

    // MARK: Steps

    /// Adds a prompt to the utterance. Providers send partial results either as the next words or
    /// as everything heard so far: a piece that repeats the utterance replaces it.
    private mutating func hear(_ text: String) {
        if partial.isEmpty || text.hasPrefix(partial) {
            partial = text
        } else {
            partial += text
        }
        // One turn is at most what a turn command holds: the rest of a very long monologue is dropped.
        if partial.unicodeScalars.count > ConversationLimits.utteranceLength {
            partial = String(String.UnicodeScalarView(partial.unicodeScalars.prefix(ConversationLimits.utteranceLength)))
        }
    }

    private mutating func ask(_ turn: Turn) -> [Action] {
        nextTurn += 1
        guard asking == nil else {
            waiting.append(turn)
            return []
        }
        asking = (turn, 0)
        return [.ask(turn, attempt: 1)]
    }

    private mutating func askNext() -> [Action] {
        guard !waiting.isEmpty else { return [] }
        let turn = waiting.removeFirst()
        asking = (turn, 0)
        return [.ask(turn, attempt: 1)]
    }

    private mutating func end(saying text: String?, handoff: String?) -> [Action] {
        phase = .ended
        waiting = []
        return (text.map { [.send(.text($0, last: true))] } ?? []) + [.send(.end(handoffData: handoff)), .finish]
    }

    /// `value` when it is an E.164 number (what a turn command carries), else nil.
    static func phoneNumber(_ value: String?) -> String? {
        guard let value else { return nil }
        let bytes = Array(value.utf8)
        guard bytes.count >= 3, bytes.count <= 16, bytes[0] == UInt8(ascii: "+"), bytes[1] != UInt8(ascii: "0"),
              bytes.dropFirst().allSatisfy({ $0 >= 48 && $0 <= 57 }) else { return nil }
        return value
    }
}
