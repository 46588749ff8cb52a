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
        let eventTime = time ?? .now
        // An event of now gets an id of the same instant (one clock read for both).
        let id = id ?? (time == nil ? .v7(at: eventTime) : .v7())
        self.init(
            id: id, source: source, type: M.type, time: eventTime, subject: message.subject, dataschema: M.dataschema,
            tenantID: tenant, correlationID: correlationID ?? id, causationID: causationID, data: MessageCodec.encode(message)
        )
    }
}
