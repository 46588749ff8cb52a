import VoiceCoreEvents

/// The messages of a ConversationRelay WebSocket (Twilio's `<Connect><ConversationRelay>`; Telnyx
/// TeXML speaks the same protocol): what the provider sends (``Inbound``) and what the edge answers
/// (``Outbound``). Pure values: parsing and encoding, no I/O.
///
/// Inbound (each a JSON text message with a `type`):
/// - `setup` — first, once: `callSid`, `from`, `to`, `sessionId`, `accountSid`, `customParameters`, …;
/// - `prompt` — the caller's speech: `voicePrompt`, `lang`, `last` (false for a partial result);
/// - `dtmf` — a key pressed: `digit`;
/// - `interrupt` — the caller spoke over the text being played;
/// - `error` — the provider refused something the edge sent.
///
/// Outbound: `text` (`token`, `last`) to speak, and `end` (optionally `handoffData`, a string the
/// provider posts to the `<Connect action>` URL as `HandoffData`).
public enum ConversationRelayFrame {
    /// What the provider tells about the call when the session opens.
    public struct Setup: Sendable, Equatable {
        public var callSid: String
        public var sessionID: String?
        public var accountSid: String?
        /// As the provider sent it: E.164 for phone calls, `client:…` or a SIP URI otherwise.
        public var from: String?
        public var to: String?

        public init(callSid: String, sessionID: String? = nil, accountSid: String? = nil, from: String? = nil, to: String? = nil) {
            self.callSid = callSid
            self.sessionID = sessionID
            self.accountSid = accountSid
            self.from = from
            self.to = to
        }
    }

    /// A message from the provider.
    public enum Inbound: Sendable, Equatable {
        case setup(Setup)
        /// Speech recognised; `last` false for a partial result that more will follow.
        case prompt(text: String, language: String?, last: Bool)
        case dtmf(digit: String)
        case interrupt
        /// The provider refused a message of ours; its description may quote what we sent, so it
        /// is not logged.
        case error
    }

    /// Why an inbound message was not understood (the `reason` label of
    /// `voicecore_relay_frames_rejected_total`). Nothing in it comes from the message's text.
    public enum Rejection: String, Sendable, Hashable, CaseIterable, Error {
        /// Not a JSON object.
        case malformed
        /// A binary message (the protocol is JSON text).
        case binary
        /// No `type`, or not a string.
        case missingType = "missing_type"
        /// A `type` this protocol does not have.
        case unknownType = "unknown_type"
        /// A known type with a missing or unusable field (a `prompt` without `voicePrompt`, a
        /// `dtmf` digit that is not a key).
        case invalidField = "invalid_field"
        /// Text the platform cannot store (a control character, ``Storable``).
        case unstorable
        /// A `prompt`, `dtmf` or `interrupt` before `setup`.
        case beforeSetup = "before_setup"
        /// A second `setup`.
        case duplicateSetup = "duplicate_setup"
        /// Anything after the edge ended the session.
        case afterEnd = "after_end"
    }

    /// Parses one text message.
    public static func parse(_ bytes: [UInt8]) -> Result<Inbound, Rejection> {
        let object: [String: JSONValue]
        do {
            object = try JSONValue.object(parsing: bytes)
        } catch {
            return .failure(.malformed)
        }
        guard let type = object["type"]?.string else { return .failure(.missingType) }
        switch type {
        case "setup":
            guard let callSid = object["callSid"]?.string, !callSid.isEmpty else { return .failure(.invalidField) }
            do {
                try Storable.check(callSid, "callSid", as: .identifier)
            } catch {
                return .failure(.unstorable)
            }
            return .success(.setup(Setup(callSid: callSid, sessionID: nonEmpty(object["sessionId"]), accountSid: nonEmpty(object["accountSid"]),
                                         from: nonEmpty(object["from"]), to: nonEmpty(object["to"]))))
        case "prompt":
            guard let text = object["voicePrompt"]?.string else { return .failure(.invalidField) }
            do {
                try Storable.check(text, "voicePrompt", as: .freeText)
            } catch {
                return .failure(.unstorable)
            }
            // `last` is documented as a boolean; a provider that omits it sends whole prompts.
            let last: Bool
            switch object["last"] {
            case nil, .null?: last = true
            case .bool(let value)?: last = value
            default: return .failure(.invalidField)
            }
            let language = nonEmpty(object["lang"]).flatMap { code -> String? in
                (try? Storable.check(code, "lang", as: .identifier, maxLength: 35)) == nil ? nil : code
            }
            return .success(.prompt(text: text, language: language, last: last))
        case "dtmf":
            guard let digit = object["digit"]?.string, digit.count == 1, let key = digit.first, "0123456789*#".contains(key) else {
                return .failure(.invalidField)
            }
            return .success(.dtmf(digit: digit))
        case "interrupt":
            return .success(.interrupt)
        case "error":
            return .success(.error)
        default:
            return .failure(.unknownType)
        }
    }

    private static func nonEmpty(_ value: JSONValue?) -> String? {
        guard let text = value?.string, !text.isEmpty else { return nil }
        return text
    }

    /// A message to the provider.
    public enum Outbound: Sendable, Equatable {
        /// Speak `token`; `last` marks the end of this reply.
        case text(String, last: Bool)
        /// End the session; `handoffData` reaches the `<Connect action>` URL as `HandoffData`.
        case end(handoffData: String?)

        /// The JSON text of the message.
        public var json: String {
            let bytes: [UInt8]
            switch self {
            case .text(let token, let last):
                bytes = JSONObjectWriter.object { o in
                    o.field("type", "text")
                    o.field("token", token)
                    o.field("last", last)
                }
            case .end(let handoffData):
                bytes = JSONObjectWriter.object { o in
                    o.field("type", "end")
                    o.field("handoffData", handoffData)
                }
            }
            return String(decoding: bytes, as: UTF8.self)
        }
    }

    /// The `handoffData` of a session the edge ends: a JSON object text that the `<Connect
    /// action>` route (`/webhooks/twilio/{tenant}/relay/ended`) turns into TwiML —
    /// `{"action":"transfer","transfer_to":"+1…"}` dials, `{"action":"voicemail",…}` records.
    public static func handoff(action: ReceptionistAction, transferTo: String? = nil, reason: String? = nil) -> String {
        String(decoding: JSONObjectWriter.object { o in
            o.field("action", action)
            o.field("transfer_to", transferTo)
            o.field("reason", reason)
        }, as: UTF8.self)
    }
}
