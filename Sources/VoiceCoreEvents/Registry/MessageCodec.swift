import VoiceCoreTime

/// JSON for payloads, in each type's hand-written form (``JSONObjectCodable``): fields are written
/// straight into bytes, and read from a strictly parsed tree (RFC 8259, valid UTF-8) with exact
/// integers. On Linux, Foundation's `JSONEncoder`/`JSONDecoder` cost about 19 µs per
/// TranscriptChunk round trip, and a custom `Codable` encoder/decoder about 10 µs.
public enum MessageCodec {
    /// The payload as JSON bytes.
    public static func encode<M: Message>(_ message: M) -> [UInt8] {
        JSONObjectWriter.encode(message)
    }

    /// Decodes and validates a payload.
    /// - Throws: ``MessageDecodingError`` naming the field (`data.from`) and the reason.
    public static func decode<M: Message>(_ type: M.Type, from json: [UInt8]) throws(MessageDecodingError) -> M {
        let message = try M(json: JSONObject.parse(json))
        try message.validate()
        return message
    }
}

extension EventEnvelope {
    /// Wraps a message: encodes its payload and fills type, subject and dataschema from it. `id`
    /// defaults to a new UUIDv7 and `time` to now (the same instant when neither is given).
    ///
    /// ```swift
    /// let envelope = EventEnvelope(CallStarted(…), tenant: tenant, source: "/services/calls",
    ///                              correlationID: command.correlationID, causationID: command.id)
    /// ```
    public init<M: Message>(
        _ message: M, tenant: Identifier, source: String, correlationID: Identifier? = nil,
        causationID: Identifier? = nil, id: Identifier? = nil, time: Timestamp? = nil
    ) {
        // One clock read for both when neither is given: a new id's time is the event's time.
        let now = time == nil ? Timestamp.now : nil
        let time = time ?? now!
        let id = id ?? (now.map { Identifier.v7(at: $0) } ?? .v7())
        self.init(
            id: id, source: source, type: M.type, time: time, subject: message.subject, dataschema: M.dataschema,
            tenantID: tenant, correlationID: correlationID ?? id, causationID: causationID, data: MessageCodec.encode(message)
        )
    }
}
