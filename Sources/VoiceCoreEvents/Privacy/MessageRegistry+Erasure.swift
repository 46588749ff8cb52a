extension MessageRegistry {
    /// Decodes (and upcasts) a payload of `(type, version)`; nil when the registry does not know it.
    /// - Throws: ``MessageDecodingError`` when the payload is invalid for a known type.
    public func decodePayload(type: String, version: Int, data: [UInt8]) throws(MessageDecodingError) -> (any Message)? {
        guard let decode = decoder(type: type, version: version) else { return nil }
        do {
            return try decode(data)
        } catch let error as MessageDecodingError {
            throw error
        } catch {
            throw MessageDecodingError(field: "data", reason: "could not be decoded: \(error)")
        }
    }

    /// An archived or streamed payload with the personal data of `scope` replaced by the
    /// placeholders of ``Erased``, re-encoded; nil when the type has none in that scope (or holds
    /// none in this payload: nothing would change).
    ///
    /// The result decodes and validates with this registry at the returned version. A payload of an
    /// older version is decoded through its upcaster and comes back at the current version
    /// (`version` says which; rewrite the entry's `dataschema` to that version's).
    ///
    /// ```swift
    /// if let erased = try MessageRegistry.standard.erasePersonalData(type: row.type, version: row.version, data: row.data, scope: .caller) {
    ///     // UPDATE event_log SET data = erased.data, dataschema = … WHERE …
    /// }
    /// ```
    /// - Throws: ``MessageDecodingError`` when the payload does not decode as its type and version;
    ///   an unknown type or version returns nil (there is nothing this registry could erase in it).
    public func erasePersonalData(type: String, version: Int, data: [UInt8], scope: ErasureScope) throws(MessageDecodingError) -> (data: [UInt8], version: Int)? {
        guard let message = try decodePayload(type: type, version: version, data: data),
              let personal = message as? any PersonalData else { return nil }
        return try Self.erase(personal, scope: scope)
    }

    private static func erase<M: PersonalData>(_ message: M, scope: ErasureScope) throws(MessageDecodingError) -> (data: [UInt8], version: Int)? {
        let erased = message.erasingPersonalData(scope)
        guard erased != message else { return nil }
        // A placeholder the schema does not accept would make the archive unreadable: refuse here,
        // where the bug is, rather than in every reader later.
        try erased.validate()
        return (MessageCodec.encode(erased), M.version)
    }
}
