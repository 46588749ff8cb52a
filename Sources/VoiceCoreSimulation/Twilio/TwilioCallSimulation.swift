import Foundation
import VoiceCoreEvents
import VoiceCoreTime

/// One signed webhook request as Twilio would send it.
public struct SimulatedWebhook: Sendable, Hashable {
    /// Which of the tenant's webhook URLs it goes to.
    public enum Kind: String, Sendable, Hashable { case voice, status, transcription }

    public var kind: Kind
    /// The path under the edge, e.g. `/webhooks/twilio/<tenant>/status`.
    public var path: String
    /// `application/x-www-form-urlencoded`.
    public var body: String
    /// `X-Twilio-Signature`.
    public var signature: String

    public init(kind: Kind, path: String, body: String, signature: String) {
        self.kind = kind
        self.path = path
        self.body = body
        self.signature = signature
    }

    /// The headers Twilio sends it with.
    public var headers: [(name: String, value: String)] {
        [("Content-Type", "application/x-www-form-urlencoded"), ("X-Twilio-Signature", signature)]
    }
}

/// A webhook of a simulated call before it is signed. A load generator plays thousands of calls
/// at once: signing each request when it is sent spreads the HMACs over the calls' lifetimes
/// instead of computing every call's whole script (a minute of transcripts: over a hundred
/// requests) the moment the call starts.
public struct UnsignedWebhook: Sendable {
    public var kind: SimulatedWebhook.Kind
    public var path: String
    public var parameters: [(name: String, value: String)]
    let url: String
    let authToken: String

    /// The value of the first parameter with this name.
    public subscript(name: String) -> String? { parameters.first { $0.name == name }?.value }

    /// The request as Twilio sends it, signed with the tenant's auth token.
    public func signed() -> SimulatedWebhook {
        SimulatedWebhook(kind: kind, path: path, body: TwilioRequestSigner.formBody(parameters),
                         signature: TwilioRequestSigner(authToken: authToken).signature(url: url, parameters: parameters))
    }
}

/// A realistic inbound call as Twilio's webhooks: the incoming-call webhook, the in-progress and
/// completed status callbacks, and real-time transcription callbacks of both tracks (a partial
/// before each caller final; `SequenceId` counts them all), signed with the tenant's auth token. Timestamps are consistent the
/// way Twilio's are: the call is answered `ringSeconds` after it rang, `CallDuration` counts from
/// the answer, each utterance is delivered when it ends.
///
/// Used by `voicecore demo`, `voicecore loadgen` and the end-to-end tests.
public struct TwilioCallSimulation: Sendable {
    /// One thing said on the call, transcribed.
    public struct Utterance: Sendable, Hashable {
        public var track: TranscriptTrack
        public var text: String
        /// Seconds after the answer at which it ends.
        public var at: Int

        public init(_ track: TranscriptTrack, _ text: String, at: Int) {
            self.track = track
            self.text = text
            self.at = at
        }
    }

    public var tenant: Identifier
    public var accountSID: String
    public var authToken: String
    /// The base URL the edge is configured with (`--public-url`), or the one requests go to.
    public var publicBase: String
    public var callSID: String
    public var from: String
    public var to: String
    public var rangAt: Timestamp
    public var ringSeconds: Int
    public var utterances: [Utterance]
    /// Seconds from the answer to the hang-up.
    public var durationSeconds: Int

    public init(tenant: Identifier, accountSID: String, authToken: String, publicBase: String, callSID: String = Self.newCallSID(),
                from: String, to: String, rangAt: Timestamp = .now, ringSeconds: Int = 2, utterances: [Utterance], durationSeconds: Int? = nil) {
        self.tenant = tenant
        self.accountSID = accountSID
        self.authToken = authToken
        self.publicBase = publicBase.hasSuffix("/") ? String(publicBase.dropLast()) : publicBase
        self.callSID = callSID
        self.from = from
        self.to = to
        self.rangAt = rangAt
        self.ringSeconds = ringSeconds
        self.utterances = utterances
        self.durationSeconds = durationSeconds ?? ((utterances.map(\.at).max() ?? 0) + 3)
    }

    /// `CA` and 32 hex digits, like Twilio's.
    public static func newCallSID() -> String {
        "CA" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()
    }

    /// A caller booking an appointment and leaving a name and number.
    public static func appointmentCall(tenant: Identifier, accountSID: String, authToken: String, publicBase: String,
                                       from: String = "+14155550123", to: String = "+14155559876", rangAt: Timestamp = .now) -> TwilioCallSimulation {
        TwilioCallSimulation(
            tenant: tenant, accountSID: accountSID, authToken: authToken, publicBase: publicBase, from: from, to: to, rangAt: rangAt,
            utterances: [
                Utterance(.outbound, "Thanks for calling. How can I help you today?", at: 3),
                Utterance(.inbound, "Hi, this is Maria Lopez. I'd like to book an appointment for a cleaning next week.", at: 9),
                Utterance(.outbound, "Of course. What is the best number to reach you?", at: 12),
                Utterance(.inbound, "You can reach me at 415 555 0199. Thanks, that's great.", at: 18),
            ])
    }

    public var callID: Identifier { CallID.derive(tenant: tenant, provider: .twilio, providerCallID: callSID) }
    public var answeredAt: Timestamp { rangAt.adding(microseconds: Int64(ringSeconds) * 1_000_000) }
    public var endedAt: Timestamp { answeredAt.adding(microseconds: Int64(durationSeconds) * 1_000_000) }

    /// Every webhook of the call in the order Twilio sends them.
    public var webhooks: [SimulatedWebhook] { unsignedWebhooks.map { $0.signed() } }

    /// Every webhook of the call in the order Twilio sends them, each signed when asked.
    public var unsignedWebhooks: [UnsignedWebhook] {
        var hooks: [UnsignedWebhook] = []
        let common: [(String, String)] = [("AccountSid", accountSID), ("CallSid", callSID), ("From", from), ("To", to), ("Direction", "inbound"),
                                          ("ApiVersion", "2010-04-01"), ("Caller", from), ("Called", to)]
        // Twilio's incoming-call webhook carries no Timestamp (the edge takes the time it
        // arrived); the simulation adds one so that a call played after the fact keeps its times.
        hooks.append(request(.voice, common + [("CallStatus", "ringing"), ("Timestamp", Self.rfc2822(rangAt))]))
        hooks.append(request(.status, common + [("CallStatus", "in-progress"), ("SequenceNumber", "0"), ("Timestamp", Self.rfc2822(answeredAt)),
                                             ("CallbackSource", "call-progress-events")]))
        let transcriptionSID = "GT" + String(callSID.dropFirst(2))
        var sequence = 0
        for utterance in utterances.sorted(by: { $0.at < $1.at }) {
            let time = answeredAt.adding(microseconds: Int64(utterance.at) * 1_000_000)
            let track = utterance.track == .inbound ? "inbound_track" : "outbound_track"
            func transcription(_ text: String, final: Bool, at time: Timestamp) -> UnsignedWebhook {
                let data = String(decoding: JSONObjectWriter.object { o in
                    o.field("transcript", text)
                    o.field("confidence", final ? 0.93 : 0.61)
                }, as: UTF8.self)
                return request(.transcription, [("AccountSid", accountSID), ("CallSid", callSID), ("TranscriptionSid", transcriptionSID),
                                             ("TranscriptionEvent", "transcription-content"), ("LanguageCode", "en-US"), ("Track", track),
                                             ("TranscriptionData", data), ("Final", final ? "true" : "false"), ("SequenceId", String(sequence)),
                                             ("Timestamp", time.rfc3339), ("ProviderName", "Google")])
            }
            // SequenceId counts every transcription callback of the call, partials included.
            if utterance.track == .inbound {
                let words = utterance.text.split(separator: " ")
                hooks.append(transcription(words.prefix(max(1, words.count / 2)).joined(separator: " "), final: false, at: time.adding(microseconds: -1_500_000)))
                sequence += 1
            }
            hooks.append(transcription(utterance.text, final: true, at: time))
            sequence += 1
        }
        hooks.append(request(.status, common + [("CallStatus", "completed"), ("SequenceNumber", "1"), ("Timestamp", Self.rfc2822(endedAt)),
                                             ("CallDuration", String(durationSeconds)), ("CallbackSource", "call-progress-events")]))
        return hooks
    }

    private func request(_ kind: SimulatedWebhook.Kind, _ parameters: [(String, String)]) -> UnsignedWebhook {
        let path = "/webhooks/twilio/\(tenant)/\(kind.rawValue)"
        return UnsignedWebhook(kind: kind, path: path, parameters: parameters.map { (name: $0.0, value: $0.1) }, url: publicBase + path, authToken: authToken)
    }

    /// Twilio's status-callback time format (RFC 2822, UTC).
    static func rfc2822(_ time: Timestamp) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss Z"
        return formatter.string(from: time.date)
    }
}
