/// Maps `(type, version)` to the Swift type that decodes it, upcasting old versions.
///
/// ```swift
/// switch try MessageRegistry.standard.decode(fields: entry.fields) {
/// case .known(let envelope, let message as CallStarted): …
/// case .known: break            // a known type this consumer does not handle
/// case .unknown(let envelope, _): logger.debug("skipping \(envelope.type)")
/// }
/// ```
///
/// An unknown type, or a version newer than the registry knows, decodes as
/// ``DecodedMessage/unknown(_:reason:)`` carrying the raw envelope: a consumer may skip it, it never
/// crashes. A known type with an invalid payload throws ``MessageDecodingError`` naming the field.
public struct MessageRegistry: Sendable {
    struct Key: Hashable, Sendable {
        var type: String
        var version: Int
    }

    // Untyped `throws` here: a stored closure with typed throws crashes the Swift 6.3 compiler. The
    // closures only ever throw MessageDecodingError.
    private var decoders: [Key: @Sendable ([UInt8]) throws -> any Message] = [:]

    public init() {}

    /// Every message type of the platform at its current version.
    static let currentTypes: [any Message.Type] = [
        CallStarted.self, CallAnswered.self, CallEnded.self, TranscriptChunk.self, IntentDetected.self, CallSummarized.self,
        LeadCreated.self, ContactUpserted.self, InteractionLogged.self,
        UsageRecorded.self,
        TenantProvisioned.self, TenantSettingsChanged.self,
        ReportCallProgress.self, ReportTranscriptSegment.self, CreateLead.self, UpdateContact.self, ChangeSettings.self,
        AppointmentRequested.self, MessageTaken.self, CallTransferred.self, VoicemailRecorded.self, ReportRecording.self,
        ReportCallerTurn.self, ReceptionistReplied.self, ReportPromptPlayed.self,
        CallerErased.self,
    ]

    /// The type names of every event of the platform (commands excluded): what an event stream carries.
    public static let eventTypes: [String] = currentTypes.filter { $0.kind == .event }.map { $0.type }

    /// The current types and the older versions the standard registry upcasts.
    static let standardTypes: [any Message.Type] = currentTypes + [TranscriptChunkV1.self]

    /// Every message type of the platform, with the upcasters of older versions.
    public static let standard: MessageRegistry = {
        var registry = MessageRegistry()
        for type in currentTypes { registry.register(type) }
        registry.register(upcasting: TranscriptChunkV1.self, to: TranscriptChunk.self) { $0.upcast() }
        return registry
    }()

    /// Decodes `M` at its own version.
    public mutating func register<M: Message>(_ type: M.Type) {
        decoders[Key(type: M.type, version: M.version)] = { json in
            try MessageCodec.decode(M.self, from: json)
        }
    }

    /// Decodes `Old`'s version and converts it to `New`, so consumers only ever see the current type.
    public mutating func register<Old: Message, New: Message>(upcasting old: Old.Type, to new: New.Type, _ upcast: @escaping @Sendable (Old) -> New) {
        decoders[Key(type: Old.type, version: Old.version)] = { json in
            upcast(try MessageCodec.decode(Old.self, from: json))
        }
    }

    /// Whether `(type, version)` decodes.
    public func knows(type: String, version: Int) -> Bool {
        decoders[Key(type: type, version: version)] != nil
    }

    /// The decoder of `(type, version)` (upcasting to the current type), if registered.
    func decoder(type: String, version: Int) -> (@Sendable ([UInt8]) throws -> any Message)? {
        decoders[Key(type: type, version: version)]
    }

    /// Decodes an envelope's payload.
    public func decode(_ envelope: EventEnvelope) throws(MessageDecodingError) -> DecodedMessage {
        let version = envelope.version
        guard let decode = decoders[Key(type: envelope.type, version: version)] else {
            let known = decoders.keys.filter { $0.type == envelope.type }.map(\.version)
            let reason = known.isEmpty ? "unknown type \(envelope.type)" : "unknown version \(version) of \(envelope.type) (known: \(known.sorted()))"
            return .unknown(envelope, reason: reason)
        }
        do {
            return .known(envelope, try decode(envelope.data))
        } catch let error as MessageDecodingError {
            throw error
        } catch {
            throw MessageDecodingError(field: "data", reason: "could not be decoded: \(error)")
        }
    }

    /// Decodes a stream entry's fields: the envelope, then its payload.
    public func decode(fields: [EnvelopeField]) throws(MessageDecodingError) -> DecodedMessage {
        try decode(try EventEnvelope(fields: fields))
    }

    /// Decodes a stream entry as one expected type (after upcasting).
    /// - Throws: ``MessageDecodingError`` when the entry is of another type.
    public func decode<M: Message>(fields: [EnvelopeField], as type: M.Type) throws(MessageDecodingError) -> (EventEnvelope, M) {
        let envelope = try EventEnvelope(fields: fields)
        // The current version of the expected type decodes directly: no existential box, no cast.
        if envelope.type == M.type && envelope.dataschema == M.dataschema {
            return (envelope, try MessageCodec.decode(M.self, from: envelope.data))
        }
        switch try decode(envelope) {
        case .known(let envelope, let message as M):
            return (envelope, message)
        case .known(let envelope, _), .unknown(let envelope, _):
            throw MessageDecodingError(field: "type", reason: "is \(envelope.type) v\(envelope.version), expected \(M.type)")
        }
    }
}

/// A decoded stream entry.
public enum DecodedMessage: Sendable {
    /// A type this registry knows, decoded (and upcast) into its current Swift type.
    case known(EventEnvelope, any Message)
    /// A type or version this registry does not know; the raw envelope, for skipping or forwarding.
    case unknown(EventEnvelope, reason: String)

    public var envelope: EventEnvelope {
        switch self {
        case .known(let envelope, _), .unknown(let envelope, _): return envelope
        }
    }

    /// The message as `M`, or `nil`.
    public func message<M: Message>(as type: M.Type) -> M? {
        if case .known(_, let message as M) = self { return message }
        return nil
    }
}
