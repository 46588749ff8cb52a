import Logging
import VoiceCoreBus
import VoiceCoreEvents
import VoiceCoreTenants
import VoiceCoreTime

/// The AI service (group `ai`): listens to calls as they are transcribed.
///
/// - Each final ``TranscriptChunk`` of the caller (inbound track) goes to the ``IntentDetector``
///   with the tenant's AI settings → ``IntentDetected``; contact details said in it are kept.
/// - ``CallEnded`` → ``CallSummarized`` (key sentences, lexicon sentiment, intent, contact,
///   after-hours), and, when the strongest intent is sales or appointment and the caller left a
///   name, phone or e-mail, a ``CreateLead`` command (lead id derived from the call: one lead per call).
/// - A final chunk that arrives after the call ended (providers deliver late) updates the summary
///   (a new ``CallSummarized``; the latest wins) and can still produce the lead.
///
/// What was heard is kept per call in Redis (final texts by track and sequence, the strongest
/// intent, contact details with the sequence they came from: the earliest wins, whatever the
/// delivery order).
public struct AIService: Sendable {
    public static let group = "ai"

    let state: StateStore
    let emitter: Emitter
    let detector: any IntentDetector
    let tenants: TenantProfiles
    let logger: Logger

    public static func runner(_ dependencies: ServiceDependencies, detector: (any IntentDetector)? = nil) async throws -> ConsumerGroupRunner {
        let service = AIService(
            state: dependencies.stateStore(try await dependencies.connect(group)),
            emitter: try await dependencies.emitter(group),
            detector: detector ?? OpenAICompatibleIntentDetector.fromEnvironment().map { FallbackIntentDetector(primary: $0, logger: dependencies.logger) }
                ?? BuiltInIntentDetector(),
            tenants: dependencies.tenants, logger: dependencies.logger)
        var handlers = MessageHandlers()
        handlers.aroundPartitionBatch(EffectBatch.scope(publisher: service.emitter.publisher))
        handlers.onPartitionAcquired { stream in service.state.invalidate(stream: stream) }
        handlers.on(TranscriptChunk.self) { message, chunk in try await service.handle(chunk, message) }
        handlers.on(CallEnded.self) { message, ended in try await service.handle(ended, message) }
        return ConsumerGroupRunner(redis: dependencies.redis,
                                   configuration: dependencies.consumer(group, streams: dependencies.naming.streams(.calls, kind: .event), readInterval: ServiceDependencies.backgroundReadInterval),
                                   handlers: handlers, logger: dependencies.logger)
    }

    /// What the service remembers of a call.
    struct Heard {
        /// The state as stored (shared with the state store's memory, never copied); among it the
        /// final texts, by `text:<track>:<sequence>`.
        private let stored: [String: String]
        /// Texts heard since, by the same names.
        private var added: [String: String] = [:]
        var intent: IntentMatch?
        var contact = ContactDetails()
        var contactSequences: [String: Int] = [:]
        var ended: Timestamp?
        var leadCreated = false

        init(fields: [String: String]) {
            stored = fields
            if let name = fields["intent"], let intent = Intent(rawValue: name), let confidence = fields["intent_confidence"].flatMap(Double.init) {
                self.intent = IntentMatch(intent: intent, confidence: confidence, matchedPhrase: fields["intent_phrase"])
            }
            contact = ContactDetails(name: fields["name"], phone: fields["phone"], email: fields["email"])
            for field in ["name", "phone", "email"] { if let sequence = fields["\(field)_seq"].flatMap(Int.init) { contactSequences[field] = sequence } }
            ended = fields["ended_at"].flatMap(Timestamp.init(rfc3339:))
            leadCreated = fields["lead"] == "1"
        }

        static func textField(track: TranscriptTrack, sequence: Int) -> String { "text:\(track.rawValue):\(sequence)" }

        func heard(track: TranscriptTrack, sequence: Int) -> Bool {
            let field = Self.textField(track: track, sequence: sequence)
            return stored[field] != nil || added[field] != nil
        }

        mutating func add(track: TranscriptTrack, sequence: Int, text: String) { added[Self.textField(track: track, sequence: sequence)] = text }

        /// The final texts in order of sequence, then track. Parsed when asked for (a call's end),
        /// not on every chunk: a long call's chunks would each read all the call's texts again.
        var utterances: [(track: String, sequence: Int, text: String)] {
            var utterances: [(track: String, sequence: Int, text: String)] = []
            for (name, value) in stored.merging(added, uniquingKeysWith: { _, new in new }) where name.hasPrefix("text:") {
                let parts = name.split(separator: ":")
                if parts.count == 3, let sequence = Int(parts[2]) { utterances.append((String(parts[1]), sequence, value)) }
            }
            return utterances.sorted { ($0.sequence, $0.track) < ($1.sequence, $1.track) }
        }

        mutating func merge(_ found: ContactDetails, sequence: Int, into changes: inout [String: String]) {
            for (field, value) in [("name", found.name), ("phone", found.phone), ("email", found.email)] {
                guard let value, contactSequences[field].map({ sequence < $0 }) ?? true else { continue }
                contactSequences[field] = sequence
                changes[field] = value
                changes["\(field)_seq"] = String(sequence)
                switch field {
                case "name": contact.name = value
                case "phone": contact.phone = value
                default: contact.email = value
                }
            }
        }
    }

    func handle(_ chunk: TranscriptChunk, _ message: ConsumedMessage) async throws {
        guard chunk.isFinal else { return }
        let tenant = message.envelope.tenantID
        let key = StateStore.key(stream: message.stream, service: Self.group, entity: chunk.callID.description)
        var heard = Heard(fields: try await state.read(key))
        if heard.heard(track: chunk.track, sequence: chunk.sequence) { return }
        var changes = [Heard.textField(track: chunk.track, sequence: chunk.sequence): chunk.text]
        heard.add(track: chunk.track, sequence: chunk.sequence, text: chunk.text)
        let settings = try await tenants.profile(of: tenant)?.aiSettings ?? .builtIn
        if chunk.track == .inbound {
            if let match = try await detector.detect(chunk.text, settings: settings) {
                try await emitter.emit(IntentDetected(callID: chunk.callID, intent: match.intent, confidence: match.confidence, matchedPhrase: match.matchedPhrase,
                                                      sourceSequence: chunk.sequence, detectedAt: .now),
                                       tenant: tenant, key: "intent:\(message.envelope.id)")
                if heard.intent.map({ match.confidence > $0.confidence }) ?? true {
                    heard.intent = match
                    changes["intent"] = match.intent.rawValue
                    changes["intent_confidence"] = String(match.confidence)
                    if let phrase = match.matchedPhrase { changes["intent_phrase"] = phrase }
                }
            }
            heard.merge(ConversationAnalysis.contactDetails(in: chunk.text), sequence: chunk.sequence, into: &changes)
        }
        if let ended = heard.ended {
            // Late: the call is over and was summarized without this chunk.
            try await conclude(&heard, callID: chunk.callID, tenant: tenant, endedAt: ended, settings: settings, changes: &changes)
        }
        try await state.write(key, changes)
    }

    func handle(_ ended: CallEnded, _ message: ConsumedMessage) async throws {
        let tenant = message.envelope.tenantID
        let key = StateStore.key(stream: message.stream, service: Self.group, entity: ended.callID.description)
        var heard = Heard(fields: try await state.read(key))
        guard heard.ended == nil else { return }
        var changes = ["ended_at": ended.endedAt.rfc3339]
        heard.ended = ended.endedAt
        let settings = try await tenants.profile(of: tenant)?.aiSettings ?? .builtIn
        try await conclude(&heard, callID: ended.callID, tenant: tenant, endedAt: ended.endedAt, settings: settings, changes: &changes)
        try await state.write(key, changes)
    }

    /// Summarizes the call as heard so far and creates its lead when it qualifies.
    private func conclude(_ heard: inout Heard, callID: Identifier, tenant: Identifier, endedAt: Timestamp, settings: AISettings,
                          changes: inout [String: String]) async throws {
        let afterHours = !ConversationAnalysis.isOpen(settings.businessHours, at: endedAt)
        let utterances = heard.utterances
        let callerTexts = utterances.filter { $0.track == TranscriptTrack.inbound.rawValue }.map(\.text)
        let summary = ConversationAnalysis.summarize(callID: callID, utterances: callerTexts, intent: heard.intent, contact: heard.contact,
                                                     afterHours: afterHours, settings: settings, at: .now)
        // One summary per set of utterances: a redelivery publishes nothing new.
        try await emitter.emit(summary, tenant: tenant, key: "summary:\(callID):\(utterances.count)")
        if !heard.leadCreated, let intent = heard.intent, intent.intent == .sales || intent.intent == .appointment, !heard.contact.isEmpty {
            let lead = CreateLead(leadID: Self.leadID(of: callID), callID: callID, name: heard.contact.name, phone: heard.contact.phone,
                                  email: heard.contact.email, intent: intent.intent, notes: summary.summary)
            // Dated by the call, not by when it was processed: a backlog or a replay counts the lead
            // on the call's day.
            try await emitter.emit(lead, tenant: tenant, key: "lead:\(callID)", time: endedAt)
            heard.leadCreated = true
            changes["lead"] = "1"
        }
    }

    /// The lead a call produces: UUIDv5 of the call id and "lead".
    public static func leadID(of callID: Identifier) -> Identifier {
        Identifier.v5(namespace: callID, name: "lead")
    }
}
