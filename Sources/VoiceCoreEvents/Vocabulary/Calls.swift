import VoiceCoreTime

/// A call reached the platform (the provider reported it initiated or ringing).
public struct CallStarted: Message {
    public static let type = "voicecore.call.started"
    public static let version = 1
    public static let dataschema = "https://schemas.voicecore.dev/events/call.started/v1"
    public static let category = StreamCategory.calls

    public var callID: Identifier
    public var provider: TelephonyProvider
    public var providerCallID: String
    public var direction: CallDirection
    public var from: String
    public var to: String
    public var startedAt: Timestamp

    public init(callID: Identifier, provider: TelephonyProvider, providerCallID: String, direction: CallDirection, from: String, to: String, startedAt: Timestamp) {
        self.callID = callID
        self.provider = provider
        self.providerCallID = providerCallID
        self.direction = direction
        self.from = from
        self.to = to
        self.startedAt = startedAt
    }

    public var subject: String { callID.description }

    public func validate() throws(MessageDecodingError) {
        try Check.notEmpty(providerCallID, "provider_call_id")
        try Check.e164(from, "from")
        try Check.e164(to, "to")
    }

    enum CodingKeys: String, CodingKey {
        case callID = "call_id", provider, providerCallID = "provider_call_id", direction, from, to, startedAt = "started_at"
    }
}

/// Someone (or a machine) answered the call.
public struct CallAnswered: Message {
    public static let type = "voicecore.call.answered"
    public static let version = 1
    public static let dataschema = "https://schemas.voicecore.dev/events/call.answered/v1"
    public static let category = StreamCategory.calls

    public enum AnsweredBy: String, Sendable, Hashable, Codable, CaseIterable {
        case human, machine, unknown
    }

    public var callID: Identifier
    public var answeredAt: Timestamp
    public var answeredBy: AnsweredBy

    public init(callID: Identifier, answeredAt: Timestamp, answeredBy: AnsweredBy = .unknown) {
        self.callID = callID
        self.answeredAt = answeredAt
        self.answeredBy = answeredBy
    }

    public var subject: String { callID.description }

    enum CodingKeys: String, CodingKey {
        case callID = "call_id", answeredAt = "answered_at", answeredBy = "answered_by"
    }
}

/// The call is over, with its final status.
public struct CallEnded: Message {
    public static let type = "voicecore.call.ended"
    public static let version = 1
    public static let dataschema = "https://schemas.voicecore.dev/events/call.ended/v1"
    public static let category = StreamCategory.calls

    /// The final status of a call (Twilio's terms; Telnyx hangup causes map onto them).
    public enum FinalStatus: String, Sendable, Hashable, Codable, CaseIterable {
        case completed, busy, failed
        case noAnswer = "no-answer"
        case canceled
    }

    public enum HungUpBy: String, Sendable, Hashable, Codable, CaseIterable {
        case caller, callee, system, unknown
    }

    public var callID: Identifier
    public var endedAt: Timestamp
    public var status: FinalStatus
    /// Seconds from answer to hang-up (0 when never answered).
    public var durationSeconds: Int
    public var answered: Bool
    public var hungUpBy: HungUpBy

    public init(callID: Identifier, endedAt: Timestamp, status: FinalStatus, durationSeconds: Int, answered: Bool, hungUpBy: HungUpBy = .unknown) {
        self.callID = callID
        self.endedAt = endedAt
        self.status = status
        self.durationSeconds = durationSeconds
        self.answered = answered
        self.hungUpBy = hungUpBy
    }

    public var subject: String { callID.description }

    public func validate() throws(MessageDecodingError) {
        try Check.nonNegative(durationSeconds, "duration_seconds")
    }

    enum CodingKeys: String, CodingKey {
        case callID = "call_id", endedAt = "ended_at", status, durationSeconds = "duration_seconds", answered, hungUpBy = "hung_up_by"
    }
}

/// A piece of the call's transcript (version 2).
///
/// Version 2 names the audio `track` instead of a speaker and gives offsets in milliseconds;
/// version-1 entries are upcast on read (see ``TranscriptChunkV1``).
public struct TranscriptChunk: Message {
    public static let type = "voicecore.call.transcript-chunk"
    public static let version = 2
    public static let dataschema = "https://schemas.voicecore.dev/events/call.transcript-chunk/v2"
    public static let category = StreamCategory.calls

    public var callID: Identifier
    /// Order of chunks within the call and track, from 0.
    public var sequence: Int
    public var track: TranscriptTrack
    public var text: String
    /// A final chunk will not change; a partial one is replaced by a later chunk of the same sequence.
    public var isFinal: Bool
    /// 0 to 1.
    public var confidence: Double
    public var startOffsetMs: Int
    public var endOffsetMs: Int
    /// BCP 47 language tag when known (`en-US`).
    public var language: String?

    public init(callID: Identifier, sequence: Int, track: TranscriptTrack, text: String, isFinal: Bool, confidence: Double, startOffsetMs: Int, endOffsetMs: Int, language: String? = nil) {
        self.callID = callID
        self.sequence = sequence
        self.track = track
        self.text = text
        self.isFinal = isFinal
        self.confidence = confidence
        self.startOffsetMs = startOffsetMs
        self.endOffsetMs = endOffsetMs
        self.language = language
    }

    public var subject: String { callID.description }

    public func validate() throws(MessageDecodingError) {
        try Check.nonNegative(sequence, "sequence")
        try Check.range(confidence, 0...1, "confidence")
        try Check.nonNegative(startOffsetMs, "start_offset_ms")
        guard endOffsetMs >= startOffsetMs else { throw .invalid("data.end_offset_ms", "must not be before start_offset_ms") }
        try Check.maxLength(text, 10_000, "text")
    }

    enum CodingKeys: String, CodingKey {
        case callID = "call_id", sequence, track, text, isFinal = "is_final", confidence
        case startOffsetMs = "start_offset_ms", endOffsetMs = "end_offset_ms", language
    }
}

/// Version 1 of ``TranscriptChunk``: a `speaker` and one offset in seconds. Kept so old entries
/// still decode; ``upcast()`` turns it into version 2.
public struct TranscriptChunkV1: Message {
    public static let type = TranscriptChunk.type
    public static let version = 1
    public static let dataschema = "https://schemas.voicecore.dev/events/call.transcript-chunk/v1"
    public static let category = StreamCategory.calls

    public enum Speaker: String, Sendable, Hashable, Codable, CaseIterable {
        case caller, agent
    }

    public var callID: Identifier
    public var sequence: Int
    public var speaker: Speaker
    public var text: String
    public var final: Bool
    public var confidence: Double
    public var offsetSeconds: Double

    public init(callID: Identifier, sequence: Int, speaker: Speaker, text: String, final: Bool, confidence: Double, offsetSeconds: Double) {
        self.callID = callID
        self.sequence = sequence
        self.speaker = speaker
        self.text = text
        self.final = final
        self.confidence = confidence
        self.offsetSeconds = offsetSeconds
    }

    public var subject: String { callID.description }

    public func validate() throws(MessageDecodingError) {
        try Check.nonNegative(sequence, "sequence")
        try Check.range(confidence, 0...1, "confidence")
        try Check.nonNegative(offsetSeconds, "offset_seconds")
    }

    /// Version 2: the caller speaks on the inbound track, the agent on the outbound one; the one
    /// offset becomes both start and end (version 1 did not record an end).
    public func upcast() -> TranscriptChunk {
        let offset = Int((offsetSeconds * 1000).rounded())
        return TranscriptChunk(callID: callID, sequence: sequence, track: speaker == .caller ? .inbound : .outbound, text: text,
                               isFinal: final, confidence: confidence, startOffsetMs: offset, endOffsetMs: offset, language: nil)
    }

    enum CodingKeys: String, CodingKey {
        case callID = "call_id", sequence, speaker, text, final, confidence, offsetSeconds = "offset_seconds"
    }
}

/// The AI recognised what the caller wants.
public struct IntentDetected: Message {
    public static let type = "voicecore.call.intent-detected"
    public static let version = 1
    public static let dataschema = "https://schemas.voicecore.dev/events/call.intent-detected/v1"
    public static let category = StreamCategory.calls

    public var callID: Identifier
    public var intent: Intent
    /// 0 to 1.
    public var confidence: Double
    /// The words that gave the intent away.
    public var matchedPhrase: String?
    /// The transcript chunk the intent was detected in.
    public var sourceSequence: Int
    public var detectedAt: Timestamp

    public init(callID: Identifier, intent: Intent, confidence: Double, matchedPhrase: String? = nil, sourceSequence: Int, detectedAt: Timestamp) {
        self.callID = callID
        self.intent = intent
        self.confidence = confidence
        self.matchedPhrase = matchedPhrase
        self.sourceSequence = sourceSequence
        self.detectedAt = detectedAt
    }

    public var subject: String { callID.description }

    public func validate() throws(MessageDecodingError) {
        try Check.range(confidence, 0...1, "confidence")
        try Check.nonNegative(sourceSequence, "source_sequence")
    }

    enum CodingKeys: String, CodingKey {
        case callID = "call_id", intent, confidence, matchedPhrase = "matched_phrase", sourceSequence = "source_sequence", detectedAt = "detected_at"
    }
}

/// The AI's summary of a finished call.
public struct CallSummarized: Message {
    public static let type = "voicecore.call.summarized"
    public static let version = 1
    public static let dataschema = "https://schemas.voicecore.dev/events/call.summarized/v1"
    public static let category = StreamCategory.calls

    public enum Sentiment: String, Sendable, Hashable, Codable, CaseIterable {
        case positive, neutral, negative
    }

    public var callID: Identifier
    public var summary: String
    public var keySentences: [String]
    public var sentiment: Sentiment
    /// -1 (negative) to 1 (positive).
    public var sentimentScore: Double
    public var wordCount: Int
    public var summarizedAt: Timestamp

    public init(callID: Identifier, summary: String, keySentences: [String], sentiment: Sentiment, sentimentScore: Double, wordCount: Int, summarizedAt: Timestamp) {
        self.callID = callID
        self.summary = summary
        self.keySentences = keySentences
        self.sentiment = sentiment
        self.sentimentScore = sentimentScore
        self.wordCount = wordCount
        self.summarizedAt = summarizedAt
    }

    public var subject: String { callID.description }

    public func validate() throws(MessageDecodingError) {
        try Check.range(sentimentScore, -1...1, "sentiment_score")
        try Check.nonNegative(wordCount, "word_count")
    }

    enum CodingKeys: String, CodingKey {
        case callID = "call_id", summary, keySentences = "key_sentences", sentiment, sentimentScore = "sentiment_score", wordCount = "word_count", summarizedAt = "summarized_at"
    }
}

// MARK: JSON

extension CallStarted {
    public func writeJSON(to o: inout JSONObjectWriter) {
        o.field("call_id", callID); o.field("provider", provider); o.field("provider_call_id", providerCallID)
        o.field("direction", direction); o.field("from", from); o.field("to", to); o.field("started_at", startedAt)
    }

    public init(json o: JSONObject) throws(MessageDecodingError) {
        self.init(callID: try o.identifier("call_id"), provider: try o.enumeration(TelephonyProvider.self, "provider"),
                  providerCallID: try o.string("provider_call_id"), direction: try o.enumeration(CallDirection.self, "direction"),
                  from: try o.string("from"), to: try o.string("to"), startedAt: try o.timestamp("started_at"))
    }
}

extension CallAnswered {
    public func writeJSON(to o: inout JSONObjectWriter) {
        o.field("call_id", callID); o.field("answered_at", answeredAt); o.field("answered_by", answeredBy)
    }

    public init(json o: JSONObject) throws(MessageDecodingError) {
        self.init(callID: try o.identifier("call_id"), answeredAt: try o.timestamp("answered_at"),
                  answeredBy: try o.optionalEnumeration(AnsweredBy.self, "answered_by") ?? .unknown)
    }
}

extension CallEnded {
    public func writeJSON(to o: inout JSONObjectWriter) {
        o.field("call_id", callID); o.field("ended_at", endedAt); o.field("status", status)
        o.field("duration_seconds", durationSeconds); o.field("answered", answered); o.field("hung_up_by", hungUpBy)
    }

    public init(json o: JSONObject) throws(MessageDecodingError) {
        self.init(callID: try o.identifier("call_id"), endedAt: try o.timestamp("ended_at"), status: try o.enumeration(FinalStatus.self, "status"),
                  durationSeconds: try o.int("duration_seconds"), answered: try o.bool("answered"),
                  hungUpBy: try o.optionalEnumeration(HungUpBy.self, "hung_up_by") ?? .unknown)
    }
}

extension TranscriptChunk {
    public func writeJSON(to o: inout JSONObjectWriter) {
        o.field("call_id", callID); o.field("sequence", sequence); o.field("track", track); o.field("text", text)
        o.field("is_final", isFinal); o.field("confidence", confidence); o.field("start_offset_ms", startOffsetMs)
        o.field("end_offset_ms", endOffsetMs); o.field("language", language)
    }

    public init(json o: JSONObject) throws(MessageDecodingError) {
        self.init(callID: try o.identifier("call_id"), sequence: try o.int("sequence"), track: try o.enumeration(TranscriptTrack.self, "track"),
                  text: try o.string("text"), isFinal: try o.bool("is_final"), confidence: try o.double("confidence"),
                  startOffsetMs: try o.int("start_offset_ms"), endOffsetMs: try o.int("end_offset_ms"), language: try o.optionalString("language"))
    }
}

extension TranscriptChunkV1 {
    public func writeJSON(to o: inout JSONObjectWriter) {
        o.field("call_id", callID); o.field("sequence", sequence); o.field("speaker", speaker); o.field("text", text)
        o.field("final", final); o.field("confidence", confidence); o.field("offset_seconds", offsetSeconds)
    }

    public init(json o: JSONObject) throws(MessageDecodingError) {
        self.init(callID: try o.identifier("call_id"), sequence: try o.int("sequence"), speaker: try o.enumeration(Speaker.self, "speaker"),
                  text: try o.string("text"), final: try o.bool("final"), confidence: try o.double("confidence"),
                  offsetSeconds: try o.double("offset_seconds"))
    }
}

extension IntentDetected {
    public func writeJSON(to o: inout JSONObjectWriter) {
        o.field("call_id", callID); o.field("intent", intent); o.field("confidence", confidence)
        o.field("matched_phrase", matchedPhrase); o.field("source_sequence", sourceSequence); o.field("detected_at", detectedAt)
    }

    public init(json o: JSONObject) throws(MessageDecodingError) {
        self.init(callID: try o.identifier("call_id"), intent: try o.enumeration(Intent.self, "intent"), confidence: try o.double("confidence"),
                  matchedPhrase: try o.optionalString("matched_phrase"), sourceSequence: try o.int("source_sequence"),
                  detectedAt: try o.timestamp("detected_at"))
    }
}

extension CallSummarized {
    public func writeJSON(to o: inout JSONObjectWriter) {
        o.field("call_id", callID); o.field("summary", summary); o.field("key_sentences", keySentences); o.field("sentiment", sentiment)
        o.field("sentiment_score", sentimentScore); o.field("word_count", wordCount); o.field("summarized_at", summarizedAt)
    }

    public init(json o: JSONObject) throws(MessageDecodingError) {
        self.init(callID: try o.identifier("call_id"), summary: try o.string("summary"), keySentences: try o.strings("key_sentences"),
                  sentiment: try o.enumeration(Sentiment.self, "sentiment"), sentimentScore: try o.double("sentiment_score"),
                  wordCount: try o.int("word_count"), summarizedAt: try o.timestamp("summarized_at"))
    }
}
