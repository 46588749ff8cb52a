import VoiceCoreTime

/// How a caller's words reached the platform.
public enum TurnChannel: String, Sendable, Hashable, Codable, CaseIterable {
    /// A Twilio or Telnyx ConversationRelay WebSocket (`prompt` or `dtmf` frames).
    case relay
    /// A classic `<Gather>` callback (`SpeechResult`, `Digits`).
    case gather
    /// Telnyx Call Control's `call.gather.ended` webhook.
    case callControl = "call-control"
}

/// What the call does after the receptionist's reply is spoken.
public enum ReceptionistAction: String, Sendable, Hashable, Codable, CaseIterable {
    /// Listen for the caller's next turn.
    case `continue`
    /// Connect the caller to ``ReceptionistReplied/transferTo``.
    case transfer
    /// Record a voicemail after the reply.
    case voicemail
    /// Say the reply and hang up.
    case hangup
}

/// Who chose a reply.
public enum ReplyAuthor: String, Sendable, Hashable, Codable, CaseIterable {
    /// The built-in receptionist policy (no network).
    case builtIn = "built-in"
    /// An OpenAI-compatible model with tool calls.
    case model
    /// The built-in policy after the model failed, timed out or answered no valid action.
    case fallback
}

/// The caller said something (or pressed keys): one turn of the conversation, published by the
/// edge. The receptionist answers it with a ``ReceptionistReplied`` whose envelope `causationid`
/// is this command's id.
///
/// The command id is `UUIDv5(call id, "turn:<turn>")` (``ReportCallerTurn/commandID(callID:turn:)``),
/// so a provider's retry of the same callback is the same command, published once.
public struct ReportCallerTurn: Message {
    public static let type = "voicecore.command.conversation.report-caller-turn"
    public static let version = 1
    public static let dataschema = "https://schemas.voicecore.dev/commands/conversation.report-caller-turn/v1"
    public static let category = StreamCategory.conversations
    public static let kind = MessageKind.command

    public var callID: Identifier
    public var provider: TelephonyProvider
    public var providerCallID: String
    /// 1 for the caller's first turn, then one more per turn.
    public var turn: Int
    /// What the caller said; empty when they said nothing (a timeout) or only pressed keys.
    public var text: String
    /// Keys pressed (`0`–`9`, `*`, `#`).
    public var digits: String?
    /// Speech recognition confidence, 0 to 1.
    public var confidence: Double?
    public var channel: TurnChannel
    /// The caller's number (E.164) when the provider told it.
    public var from: String?
    /// The number the caller dialled (E.164) when the provider told it.
    public var to: String?
    /// BCP 47 language of the speech (`en-US`).
    public var language: String?
    public var occurredAt: Timestamp

    public init(callID: Identifier, provider: TelephonyProvider, providerCallID: String, turn: Int, text: String, digits: String? = nil,
                confidence: Double? = nil, channel: TurnChannel, from: String? = nil, to: String? = nil, language: String? = nil, occurredAt: Timestamp) {
        self.callID = callID
        self.provider = provider
        self.providerCallID = providerCallID
        self.turn = turn
        self.text = text
        self.digits = digits
        self.confidence = confidence
        self.channel = channel
        self.from = from
        self.to = to
        self.language = language
        self.occurredAt = occurredAt
    }

    /// The id of the command for a call's turn: the same for every delivery of that turn.
    public static func commandID(callID: Identifier, turn: Int) -> Identifier {
        Identifier.v5(namespace: callID, name: "turn:\(turn)")
    }

    public var subject: String { callID.description }

    public func validate() throws(MessageDecodingError) {
        try Storable.check(providerCallID, "data.provider_call_id", as: .identifier)
        try Storable.check(turn, "data.turn", in: 1...Storable.integerMaximum)
        try Storable.check(text, "data.text", as: .freeText, maxLength: ConversationLimits.utteranceLength)
        if let digits, digits.isEmpty || digits.count > 64 || !digits.allSatisfy({ "0123456789*#w".contains($0) }) {
            throw .invalid("data.digits", "must be 1 to 64 of 0-9, * and #")
        }
        if let confidence { try Check.range(confidence, 0...1, "confidence") }
        try Check.e164(from, "from")
        try Check.e164(to, "to")
        try Storable.check(language, "data.language", as: .identifier, maxLength: 35)
    }

    enum CodingKeys: String, CodingKey {
        case callID = "call_id", provider, providerCallID = "provider_call_id", turn, text, digits, confidence, channel, from, to, language
        case occurredAt = "occurred_at"
    }
}

/// A prompt the telephony service had spoken before a transfer, voicemail or hang-up has finished
/// playing on the call: Telnyx's `call.speak.ended` for the `speak` of the receptionist's reply to
/// `turn` (its `client_state` names that turn, ``CallControlState/closing(after:)``). Published by
/// the edge (deduplicated by the webhook's id); the telephony service (group `telephony`) then
/// sends the follow-up it kept for that turn, so the caller hears the whole reply first and a
/// restart between the reply and the end of the speech loses nothing.
public struct ReportPromptPlayed: Message {
    public static let type = "voicecore.command.conversation.report-prompt-played"
    public static let version = 1
    public static let dataschema = "https://schemas.voicecore.dev/commands/conversation.report-prompt-played/v1"
    public static let category = StreamCategory.conversations
    public static let kind = MessageKind.command

    public var callID: Identifier
    public var provider: TelephonyProvider
    public var providerCallID: String
    /// The caller's turn whose reply was spoken.
    public var turn: Int
    public var occurredAt: Timestamp

    public init(callID: Identifier, provider: TelephonyProvider, providerCallID: String, turn: Int, occurredAt: Timestamp) {
        self.callID = callID
        self.provider = provider
        self.providerCallID = providerCallID
        self.turn = turn
        self.occurredAt = occurredAt
    }

    public var subject: String { callID.description }

    public func validate() throws(MessageDecodingError) {
        try Storable.check(providerCallID, "data.provider_call_id", as: .identifier)
        try Storable.check(turn, "data.turn", in: 1...Storable.integerMaximum)
    }

    enum CodingKeys: String, CodingKey {
        case callID = "call_id", provider, providerCallID = "provider_call_id", turn
        case occurredAt = "occurred_at"
    }
}

/// The receptionist answered a caller's turn. Published by the receptionist (group `receptionist`)
/// with `causationid` = the ``ReportCallerTurn`` command's id; its own id is
/// `UUIDv5(command id, "reply")`, so answering a turn again publishes nothing new.
public struct ReceptionistReplied: Message {
    public static let type = "voicecore.conversation.receptionist-replied"
    public static let version = 1
    public static let dataschema = "https://schemas.voicecore.dev/events/conversation.receptionist-replied/v1"
    public static let category = StreamCategory.conversations

    public var callID: Identifier
    public var provider: TelephonyProvider
    public var providerCallID: String
    public var turn: Int
    public var channel: TurnChannel
    /// What the caller said in this turn (the command's text, or the digits when nothing was said).
    public var heard: String
    /// What the receptionist says.
    public var text: String
    public var action: ReceptionistAction
    /// E.164 number the call is connected to when `action` is `transfer`.
    public var transferTo: String?
    /// What the conversation has learned so far (`name`, `phone`, `preferred_time`, `message`,
    /// `job`, …), the whole state after this turn.
    public var slots: [String: String]
    /// What the caller wants, as understood at this turn.
    public var intent: Intent?
    public var decidedBy: ReplyAuthor
    public var repliedAt: Timestamp

    public init(callID: Identifier, provider: TelephonyProvider, providerCallID: String, turn: Int, channel: TurnChannel, heard: String,
                text: String, action: ReceptionistAction, transferTo: String? = nil, slots: [String: String] = [:], intent: Intent? = nil,
                decidedBy: ReplyAuthor, repliedAt: Timestamp) {
        self.callID = callID
        self.provider = provider
        self.providerCallID = providerCallID
        self.turn = turn
        self.channel = channel
        self.heard = heard
        self.text = text
        self.action = action
        self.transferTo = transferTo
        self.slots = slots
        self.intent = intent
        self.decidedBy = decidedBy
        self.repliedAt = repliedAt
    }

    /// The id of the reply to a turn's command.
    public static func replyID(commandID: Identifier) -> Identifier {
        Identifier.v5(namespace: commandID, name: "reply")
    }

    public var subject: String { callID.description }

    public func validate() throws(MessageDecodingError) {
        try Storable.check(providerCallID, "data.provider_call_id", as: .identifier)
        try Storable.check(turn, "data.turn", in: 1...Storable.integerMaximum)
        try Storable.check(heard, "data.heard", as: .freeText, maxLength: ConversationLimits.utteranceLength)
        try Check.notEmpty(text, "text")
        try Storable.check(text, "data.text", as: .freeText, maxLength: ConversationLimits.replyLength)
        if action == .transfer, transferTo == nil { throw .invalid("data.transfer_to", "is required when action is transfer") }
        try Check.e164(transferTo, "transfer_to")
        try ConversationLimits.checkSlots(slots)
    }

    enum CodingKeys: String, CodingKey {
        case callID = "call_id", provider, providerCallID = "provider_call_id", turn, channel, heard, text, action, transferTo = "transfer_to", slots, intent
        case decidedBy = "decided_by", repliedAt = "replied_at"
    }
}

/// The caller asked for an appointment; the receptionist collected who and when.
public struct AppointmentRequested: Message {
    public static let type = "voicecore.call.appointment-requested"
    public static let version = 1
    public static let dataschema = "https://schemas.voicecore.dev/events/call.appointment-requested/v1"
    public static let category = StreamCategory.calls

    public var callID: Identifier
    public var name: String?
    /// E.164; the caller's number unless they gave another.
    public var phone: String?
    /// The time the caller asked for, in their words ("Tuesday morning").
    public var preferredTime: String
    /// What the appointment is for, in the caller's words.
    public var reason: String?
    public var turn: Int
    public var requestedAt: Timestamp

    public init(callID: Identifier, name: String?, phone: String?, preferredTime: String, reason: String? = nil, turn: Int, requestedAt: Timestamp) {
        self.callID = callID
        self.name = name
        self.phone = phone
        self.preferredTime = preferredTime
        self.reason = reason
        self.turn = turn
        self.requestedAt = requestedAt
    }

    public var subject: String { callID.description }

    public func validate() throws(MessageDecodingError) {
        try Storable.check(name, "data.name", as: .line)
        try Check.e164(phone, "phone")
        try Check.notEmpty(preferredTime, "preferred_time")
        try Storable.check(preferredTime, "data.preferred_time", as: .line)
        try Storable.check(reason, "data.reason", as: .freeText, maxLength: ConversationLimits.utteranceLength)
        try Storable.check(turn, "data.turn", in: 1...Storable.integerMaximum)
    }

    enum CodingKeys: String, CodingKey {
        case callID = "call_id", name, phone, preferredTime = "preferred_time", reason, turn, requestedAt = "requested_at"
    }
}

/// The receptionist took a message for the business.
public struct MessageTaken: Message {
    public static let type = "voicecore.call.message-taken"
    public static let version = 1
    public static let dataschema = "https://schemas.voicecore.dev/events/call.message-taken/v1"
    public static let category = StreamCategory.calls

    public var callID: Identifier
    public var name: String?
    /// E.164 number to call back; the caller's number unless they gave another.
    public var phone: String?
    public var message: String
    public var turn: Int
    public var takenAt: Timestamp

    public init(callID: Identifier, name: String?, phone: String?, message: String, turn: Int, takenAt: Timestamp) {
        self.callID = callID
        self.name = name
        self.phone = phone
        self.message = message
        self.turn = turn
        self.takenAt = takenAt
    }

    public var subject: String { callID.description }

    public func validate() throws(MessageDecodingError) {
        try Storable.check(name, "data.name", as: .line)
        try Check.e164(phone, "phone")
        try Check.notEmpty(message, "message")
        try Storable.check(message, "data.message", as: .freeText, maxLength: ConversationLimits.utteranceLength)
        try Storable.check(turn, "data.turn", in: 1...Storable.integerMaximum)
    }

    enum CodingKeys: String, CodingKey {
        case callID = "call_id", name, phone, message, turn, takenAt = "taken_at"
    }
}

/// The call was handed to a person: the receptionist transferred it to the tenant's forwarding number.
public struct CallTransferred: Message {
    public static let type = "voicecore.call.transferred"
    public static let version = 1
    public static let dataschema = "https://schemas.voicecore.dev/events/call.transferred/v1"
    public static let category = StreamCategory.calls

    public var callID: Identifier
    /// E.164 number the call was connected to.
    public var to: String
    /// Why, in a few words ("caller asked for a person").
    public var reason: String?
    public var turn: Int
    public var transferredAt: Timestamp

    public init(callID: Identifier, to: String, reason: String? = nil, turn: Int, transferredAt: Timestamp) {
        self.callID = callID
        self.to = to
        self.reason = reason
        self.turn = turn
        self.transferredAt = transferredAt
    }

    public var subject: String { callID.description }

    public func validate() throws(MessageDecodingError) {
        try Check.e164(to, "to")
        try Storable.check(reason, "data.reason", as: .line)
        try Storable.check(turn, "data.turn", in: 1...Storable.integerMaximum)
    }

    enum CodingKeys: String, CodingKey {
        case callID = "call_id", to, reason, turn, transferredAt = "transferred_at"
    }
}

/// A provider finished (or failed) a recording of the caller: a voicemail. Published by the edge
/// from Twilio's signed `recordingStatusCallback` (or Telnyx's `call.recording.saved`); the call
/// service turns a completed one into ``VoicemailRecorded``.
public struct ReportRecording: Message {
    public static let type = "voicecore.command.call.report-recording"
    public static let version = 1
    public static let dataschema = "https://schemas.voicecore.dev/commands/call.report-recording/v1"
    public static let category = StreamCategory.calls
    public static let kind = MessageKind.command

    public enum Status: String, Sendable, Hashable, Codable, CaseIterable {
        case completed, failed, absent
    }

    public var callID: Identifier
    public var provider: TelephonyProvider
    public var providerCallID: String
    /// Twilio's `RecordingSid`, Telnyx's `recording_id`.
    public var recordingID: String
    /// Where the provider keeps the audio (needs the provider's credentials to fetch).
    public var recordingURL: String?
    public var durationSeconds: Int?
    public var status: Status
    public var occurredAt: Timestamp

    public init(callID: Identifier, provider: TelephonyProvider, providerCallID: String, recordingID: String, recordingURL: String?,
                durationSeconds: Int?, status: Status, occurredAt: Timestamp) {
        self.callID = callID
        self.provider = provider
        self.providerCallID = providerCallID
        self.recordingID = recordingID
        self.recordingURL = recordingURL
        self.durationSeconds = durationSeconds
        self.status = status
        self.occurredAt = occurredAt
    }

    public var subject: String { callID.description }

    public func validate() throws(MessageDecodingError) {
        try Storable.check(providerCallID, "data.provider_call_id", as: .identifier)
        try Storable.check(recordingID, "data.recording_id", as: .identifier)
        try Storable.check(recordingURL, "data.recording_url", as: .identifier, maxLength: 2048)
        try Storable.check(durationSeconds, "data.duration_seconds")
    }

    enum CodingKeys: String, CodingKey {
        case callID = "call_id", provider, providerCallID = "provider_call_id", recordingID = "recording_id", recordingURL = "recording_url"
        case durationSeconds = "duration_seconds", status, occurredAt = "occurred_at"
    }
}

/// The caller left a voicemail.
public struct VoicemailRecorded: Message {
    public static let type = "voicecore.call.voicemail-recorded"
    public static let version = 1
    public static let dataschema = "https://schemas.voicecore.dev/events/call.voicemail-recorded/v1"
    public static let category = StreamCategory.calls

    public var callID: Identifier
    public var recordingID: String
    public var recordingURL: String?
    public var durationSeconds: Int
    public var recordedAt: Timestamp

    public init(callID: Identifier, recordingID: String, recordingURL: String?, durationSeconds: Int, recordedAt: Timestamp) {
        self.callID = callID
        self.recordingID = recordingID
        self.recordingURL = recordingURL
        self.durationSeconds = durationSeconds
        self.recordedAt = recordedAt
    }

    public var subject: String { callID.description }

    public func validate() throws(MessageDecodingError) {
        try Storable.check(recordingID, "data.recording_id", as: .identifier)
        try Storable.check(recordingURL, "data.recording_url", as: .identifier, maxLength: 2048)
        try Storable.check(durationSeconds, "data.duration_seconds")
    }

    enum CodingKeys: String, CodingKey {
        case callID = "call_id", recordingID = "recording_id", recordingURL = "recording_url", durationSeconds = "duration_seconds"
        case recordedAt = "recorded_at"
    }
}

/// Sizes of conversation text, shared by the types and their schemas.
public enum ConversationLimits {
    /// One caller turn, one message, one FAQ answer.
    public static let utteranceLength = 4000
    /// One reply of the receptionist (spoken: a few sentences).
    public static let replyLength = 2000
    /// Slots per conversation and the length of a slot's name and value.
    public static let slotCount = 32
    public static let slotValueLength = 1000

    static func checkSlots(_ slots: [String: String]) throws(MessageDecodingError) {
        if slots.count > slotCount { throw .invalid("data.slots", "must hold at most \(slotCount) entries") }
        for (name, value) in slots {
            guard !name.isEmpty, name.utf8.count <= 64, name.utf8.allSatisfy({ ($0 >= 97 && $0 <= 122) || ($0 >= 48 && $0 <= 57) || $0 == 95 }) else {
                throw .invalid("data.slots", "names must be 1 to 64 of a-z, 0-9 and _")
            }
            try Storable.check(value, "data.slots.\(name)", as: .freeText, maxLength: slotValueLength)
        }
    }
}

// MARK: JSON

extension ReportCallerTurn {
    public func writeJSON(to o: inout JSONObjectWriter) {
        o.field("call_id", callID); o.field("provider", provider); o.field("provider_call_id", providerCallID); o.field("turn", turn)
        o.field("text", text); o.field("digits", digits); o.field("confidence", confidence); o.field("channel", channel)
        o.field("from", from); o.field("to", to); o.field("language", language); o.field("occurred_at", occurredAt)
    }

    public init(json o: JSONObject) throws(MessageDecodingError) {
        self.init(callID: try o.identifier("call_id"), provider: try o.enumeration(TelephonyProvider.self, "provider"),
                  providerCallID: try o.string("provider_call_id"), turn: try o.int("turn"), text: try o.string("text"),
                  digits: try o.optionalString("digits"), confidence: try o.optionalDouble("confidence"),
                  channel: try o.enumeration(TurnChannel.self, "channel"), from: try o.optionalString("from"), to: try o.optionalString("to"),
                  language: try o.optionalString("language"), occurredAt: try o.timestamp("occurred_at"))
    }
}

extension ReportPromptPlayed {
    public func writeJSON(to o: inout JSONObjectWriter) {
        o.field("call_id", callID); o.field("provider", provider); o.field("provider_call_id", providerCallID); o.field("turn", turn)
        o.field("occurred_at", occurredAt)
    }

    public init(json o: JSONObject) throws(MessageDecodingError) {
        self.init(callID: try o.identifier("call_id"), provider: try o.enumeration(TelephonyProvider.self, "provider"),
                  providerCallID: try o.string("provider_call_id"), turn: try o.int("turn"), occurredAt: try o.timestamp("occurred_at"))
    }
}

extension ReceptionistReplied {
    public func writeJSON(to o: inout JSONObjectWriter) {
        o.field("call_id", callID); o.field("provider", provider); o.field("provider_call_id", providerCallID); o.field("turn", turn)
        o.field("channel", channel); o.field("heard", heard); o.field("text", text); o.field("action", action)
        o.field("transfer_to", transferTo); o.field("slots", slots)
        if let intent { o.field("intent", intent) }
        o.field("decided_by", decidedBy); o.field("replied_at", repliedAt)
    }

    public init(json o: JSONObject) throws(MessageDecodingError) {
        self.init(callID: try o.identifier("call_id"), provider: try o.enumeration(TelephonyProvider.self, "provider"),
                  providerCallID: try o.string("provider_call_id"), turn: try o.int("turn"), channel: try o.enumeration(TurnChannel.self, "channel"),
                  heard: try o.string("heard"), text: try o.string("text"), action: try o.enumeration(ReceptionistAction.self, "action"),
                  transferTo: try o.optionalString("transfer_to"), slots: try o.optionalStringMap("slots") ?? [:],
                  intent: try o.optionalEnumeration(Intent.self, "intent"), decidedBy: try o.enumeration(ReplyAuthor.self, "decided_by"),
                  repliedAt: try o.timestamp("replied_at"))
    }
}

extension AppointmentRequested {
    public func writeJSON(to o: inout JSONObjectWriter) {
        o.field("call_id", callID); o.field("name", name); o.field("phone", phone); o.field("preferred_time", preferredTime)
        o.field("reason", reason); o.field("turn", turn); o.field("requested_at", requestedAt)
    }

    public init(json o: JSONObject) throws(MessageDecodingError) {
        self.init(callID: try o.identifier("call_id"), name: try o.optionalString("name"), phone: try o.optionalString("phone"),
                  preferredTime: try o.string("preferred_time"), reason: try o.optionalString("reason"), turn: try o.int("turn"),
                  requestedAt: try o.timestamp("requested_at"))
    }
}

extension MessageTaken {
    public func writeJSON(to o: inout JSONObjectWriter) {
        o.field("call_id", callID); o.field("name", name); o.field("phone", phone); o.field("message", message)
        o.field("turn", turn); o.field("taken_at", takenAt)
    }

    public init(json o: JSONObject) throws(MessageDecodingError) {
        self.init(callID: try o.identifier("call_id"), name: try o.optionalString("name"), phone: try o.optionalString("phone"),
                  message: try o.string("message"), turn: try o.int("turn"), takenAt: try o.timestamp("taken_at"))
    }
}

extension CallTransferred {
    public func writeJSON(to o: inout JSONObjectWriter) {
        o.field("call_id", callID); o.field("to", to); o.field("reason", reason); o.field("turn", turn); o.field("transferred_at", transferredAt)
    }

    public init(json o: JSONObject) throws(MessageDecodingError) {
        self.init(callID: try o.identifier("call_id"), to: try o.string("to"), reason: try o.optionalString("reason"), turn: try o.int("turn"),
                  transferredAt: try o.timestamp("transferred_at"))
    }
}

extension ReportRecording {
    public func writeJSON(to o: inout JSONObjectWriter) {
        o.field("call_id", callID); o.field("provider", provider); o.field("provider_call_id", providerCallID); o.field("recording_id", recordingID)
        o.field("recording_url", recordingURL); o.field("duration_seconds", durationSeconds); o.field("status", status); o.field("occurred_at", occurredAt)
    }

    public init(json o: JSONObject) throws(MessageDecodingError) {
        self.init(callID: try o.identifier("call_id"), provider: try o.enumeration(TelephonyProvider.self, "provider"),
                  providerCallID: try o.string("provider_call_id"), recordingID: try o.string("recording_id"),
                  recordingURL: try o.optionalString("recording_url"), durationSeconds: try o.optionalInt("duration_seconds"),
                  status: try o.enumeration(Status.self, "status"), occurredAt: try o.timestamp("occurred_at"))
    }
}

extension VoicemailRecorded {
    public func writeJSON(to o: inout JSONObjectWriter) {
        o.field("call_id", callID); o.field("recording_id", recordingID); o.field("recording_url", recordingURL)
        o.field("duration_seconds", durationSeconds); o.field("recorded_at", recordedAt)
    }

    public init(json o: JSONObject) throws(MessageDecodingError) {
        self.init(callID: try o.identifier("call_id"), recordingID: try o.string("recording_id"), recordingURL: try o.optionalString("recording_url"),
                  durationSeconds: try o.int("duration_seconds"), recordedAt: try o.timestamp("recorded_at"))
    }
}
