import VoiceCoreBus
import VoiceCoreEvents
import VoiceCoreTime

/// Publishes what a handler derives from the message in hand, once: each derived message has a
/// key naming its cause and purpose (e.g. `call:<id>:ended`), and the publish is deduplicated on
/// it (one Lua script with the XADD). A redelivered message, handled again after a crash between
/// publishing and acknowledging, publishes nothing new.
///
/// Inside an ``EffectBatch`` (a partition's batch) the publish is queued and made with the
/// batch's others when the batch ends, before its entries are acknowledged.
struct Emitter: Sendable {
    let publisher: Publisher

    /// - Parameter id: the envelope's id when the message's id is part of a contract (a reply's id
    ///   derived from its command's); a new UUIDv7 otherwise.
    @discardableResult
    func emit<M: Message>(_ message: M, tenant: Identifier, key: String, id: Identifier? = nil, time: Timestamp = .now) async throws -> Identifier {
        // An invalid event would be dead-lettered by every consumer: refuse it here, so the
        // message that caused it fails (and is retried, then dead-lettered) instead.
        try message.validate()
        let context = MessageContext.current
        let envelope = EventEnvelope(message, tenant: tenant, source: publisher.configuration.source,
                                     correlationID: context?.correlationID, causationID: context?.causationID, id: id, time: time)
        if let batch = EffectBatch.current {
            batch.publish(envelope, category: M.category, kind: M.kind, key: key)
            return envelope.id
        }
        switch try await publisher.publish(envelope, category: M.category, kind: M.kind, deduplicationKey: key) {
        case .published(let entry): return entry.eventID
        case .duplicate(let entry): return entry.eventID
        }
    }
}
