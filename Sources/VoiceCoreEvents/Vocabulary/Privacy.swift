import VoiceCoreTime

/// A caller's personal data was erased everywhere the platform holds it (read models, the archive,
/// the streams); team consumers erase their own copies by the ids it names.
///
/// It carries no personal data: the identifier only as a keyed hash (HMAC-SHA256 under a key
/// derived from the platform's master key, so it cannot be reversed by guessing numbers), and the
/// ids of the calls, contacts and leads that were erased (ids are not personal: they were random or
/// derived from provider ids). Published once per erasure: its event id is derived from the
/// erasure's id.
public struct CallerErased: Message {
    public static let type = "voicecore.privacy.caller-erased"
    public static let version = 1
    public static let dataschema = "https://schemas.voicecore.dev/events/privacy.caller-erased/v1"
    public static let category = StreamCategory.tenants

    /// What the erasure request named the caller by.
    public enum IdentifierKind: String, Sendable, Hashable, Codable, CaseIterable {
        case phone, email, contact
    }

    /// The names of the `counts` entries, one spelling everywhere (the erasure's status, the audit
    /// trail, this event).
    public enum Count: String, Sendable, Hashable, Codable, CaseIterable {
        case calls
        case transcriptLines = "transcript_lines"
        case turns, outcomes, leads, contacts, interactions
        case archivedEvents = "archived_events"
        case streamEntries = "stream_entries"
        case deadLetters = "dead_letters"
        case redisKeys = "redis_keys"
        /// AI summaries of calls (`call_analytics` summary and key sentences).
        case summaries
        /// Entries a projection could not apply (`projection_failures`), deleted.
        case projectionFailures = "projection_failures"
    }

    /// The erasure's id (`GET /v1/privacy/erasures/{id}`).
    public var erasureID: Identifier
    public var tenantID: Identifier
    public var identifierKind: IdentifierKind
    /// 64 lowercase hex digits: HMAC-SHA256 of `<tenant>|<kind>|<normalised identifier>`.
    public var identifierHash: String
    public var callIDs: [Identifier]
    public var contactIDs: [Identifier]
    public var leadIDs: [Identifier]
    /// How many of each were erased, by the names of ``Count``.
    public var counts: [String: Int]
    public var erasedAt: Timestamp

    public init(erasureID: Identifier, tenantID: Identifier, identifierKind: IdentifierKind, identifierHash: String, callIDs: [Identifier],
                contactIDs: [Identifier], leadIDs: [Identifier], counts: [String: Int], erasedAt: Timestamp) {
        self.erasureID = erasureID
        self.tenantID = tenantID
        self.identifierKind = identifierKind
        self.identifierHash = identifierHash
        self.callIDs = callIDs
        self.contactIDs = contactIDs
        self.leadIDs = leadIDs
        self.counts = counts
        self.erasedAt = erasedAt
    }

    /// The id of the one `CallerErased` event of an erasure.
    public static func eventID(erasureID: Identifier) -> Identifier {
        Identifier.v5(namespace: erasureID, name: "caller-erased")
    }

    /// A tenant's erasures keep their order (the tenant's partition).
    public var subject: String { tenantID.description }

    public func validate() throws(MessageDecodingError) {
        guard identifierHash.utf8.count == 64, identifierHash.utf8.allSatisfy({ ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) }) else {
            throw .invalid("data.identifier_hash", "must be 64 lowercase hexadecimal digits (HMAC-SHA256)")
        }
        for (name, count) in counts {
            guard Count(rawValue: name) != nil else {
                throw .invalid("data.counts.\(name)", "is not a count (known: \(Count.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            try Storable.check(count, "data.counts.\(name)", in: 0...Int(Int64.max))
        }
    }

    enum CodingKeys: String, CodingKey {
        case erasureID = "erasure_id", tenantID = "tenant_id", identifierKind = "identifier_kind", identifierHash = "identifier_hash"
        case callIDs = "call_ids", contactIDs = "contact_ids", leadIDs = "lead_ids", counts, erasedAt = "erased_at"
    }
}

// MARK: JSON

extension CallerErased {
    public func writeJSON(to o: inout JSONObjectWriter) {
        o.field("erasure_id", erasureID); o.field("tenant_id", tenantID); o.field("identifier_kind", identifierKind)
        o.field("identifier_hash", identifierHash); o.field("call_ids", callIDs); o.field("contact_ids", contactIDs); o.field("lead_ids", leadIDs)
        o.field("counts", counts); o.field("erased_at", erasedAt)
    }

    public init(json o: JSONObject) throws(MessageDecodingError) {
        self.init(erasureID: try o.identifier("erasure_id"), tenantID: try o.identifier("tenant_id"),
                  identifierKind: try o.enumeration(IdentifierKind.self, "identifier_kind"), identifierHash: try o.string("identifier_hash"),
                  callIDs: try o.identifiers("call_ids"), contactIDs: try o.identifiers("contact_ids"), leadIDs: try o.identifiers("lead_ids"),
                  counts: try o.intMap("counts"), erasedAt: try o.timestamp("erased_at"))
    }
}
