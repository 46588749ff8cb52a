import VoiceCoreTime

/// A sales or appointment lead, from a call or the tenant API.
public struct LeadCreated: Message {
    public static let type = "voicecore.crm.lead-created"
    public static let version = 1
    public static let dataschema = "https://schemas.voicecore.dev/events/crm.lead-created/v1"
    public static let category = StreamCategory.crm

    public enum Source: String, Sendable, Hashable, Codable, CaseIterable {
        case call, api
    }

    public var leadID: Identifier
    public var callID: Identifier?
    public var name: String?
    public var phone: String?
    public var email: String?
    public var intent: Intent
    public var source: Source
    public var notes: String?
    public var createdAt: Timestamp

    public init(leadID: Identifier, callID: Identifier? = nil, name: String? = nil, phone: String? = nil, email: String? = nil, intent: Intent, source: Source, notes: String? = nil, createdAt: Timestamp) {
        self.leadID = leadID
        self.callID = callID
        self.name = name
        self.phone = phone
        self.email = email
        self.intent = intent
        self.source = source
        self.notes = notes
        self.createdAt = createdAt
    }

    public var subject: String { leadID.description }

    public func validate() throws(MessageDecodingError) {
        try Check.contactDetails(name: name, phone: phone, email: email, missing: "needs at least one of name, phone or email")
    }

    enum CodingKeys: String, CodingKey {
        case leadID = "lead_id", callID = "call_id", name, phone, email, intent, source, notes, createdAt = "created_at"
    }
}

/// A CRM contact was created or updated (deduplicated by phone or email within the tenant).
public struct ContactUpserted: Message {
    public static let type = "voicecore.crm.contact-upserted"
    public static let version = 1
    public static let dataschema = "https://schemas.voicecore.dev/events/crm.contact-upserted/v1"
    public static let category = StreamCategory.crm

    public var contactID: Identifier
    public var name: String?
    public var phone: String?
    public var email: String?
    /// The lead that created or last touched the contact.
    public var leadID: Identifier?
    public var firstSeenAt: Timestamp
    public var lastSeenAt: Timestamp

    public init(contactID: Identifier, name: String? = nil, phone: String? = nil, email: String? = nil, leadID: Identifier? = nil, firstSeenAt: Timestamp, lastSeenAt: Timestamp) {
        self.contactID = contactID
        self.name = name
        self.phone = phone
        self.email = email
        self.leadID = leadID
        self.firstSeenAt = firstSeenAt
        self.lastSeenAt = lastSeenAt
    }

    public var subject: String { contactID.description }

    public func validate() throws(MessageDecodingError) {
        try Check.e164(phone, "phone")
        try Check.email(email, "email")
        guard lastSeenAt >= firstSeenAt else { throw .invalid("data.last_seen_at", "must not be before first_seen_at") }
    }

    enum CodingKeys: String, CodingKey {
        case contactID = "contact_id", name, phone, email, leadID = "lead_id", firstSeenAt = "first_seen_at", lastSeenAt = "last_seen_at"
    }
}

/// A contact interacted with the tenant (a call, an API request, …).
public struct InteractionLogged: Message {
    public static let type = "voicecore.crm.interaction-logged"
    public static let version = 1
    public static let dataschema = "https://schemas.voicecore.dev/events/crm.interaction-logged/v1"
    public static let category = StreamCategory.crm

    public enum Channel: String, Sendable, Hashable, Codable, CaseIterable {
        case call, sms, email, api
    }

    public var interactionID: Identifier
    public var contactID: Identifier
    public var callID: Identifier?
    public var channel: Channel
    public var summary: String?
    public var durationSeconds: Int?
    public var occurredAt: Timestamp

    public init(interactionID: Identifier, contactID: Identifier, callID: Identifier? = nil, channel: Channel, summary: String? = nil, durationSeconds: Int? = nil, occurredAt: Timestamp) {
        self.interactionID = interactionID
        self.contactID = contactID
        self.callID = callID
        self.channel = channel
        self.summary = summary
        self.durationSeconds = durationSeconds
        self.occurredAt = occurredAt
    }

    public var subject: String { contactID.description }

    public func validate() throws(MessageDecodingError) {
        try Check.nonNegative(durationSeconds, "duration_seconds")
    }

    enum CodingKeys: String, CodingKey {
        case interactionID = "interaction_id", contactID = "contact_id", callID = "call_id", channel, summary, durationSeconds = "duration_seconds", occurredAt = "occurred_at"
    }
}

// MARK: JSON

extension LeadCreated {
    public func writeJSON(to o: inout JSONObjectWriter) {
        o.field("lead_id", leadID); o.field("call_id", callID); o.field("name", name); o.field("phone", phone); o.field("email", email)
        o.field("intent", intent); o.field("source", source); o.field("notes", notes); o.field("created_at", createdAt)
    }

    public init(json o: JSONObject) throws(MessageDecodingError) {
        self.init(leadID: try o.identifier("lead_id"), callID: try o.optionalIdentifier("call_id"), name: try o.optionalString("name"),
                  phone: try o.optionalString("phone"), email: try o.optionalString("email"), intent: try o.enumeration(Intent.self, "intent"),
                  source: try o.enumeration(Source.self, "source"), notes: try o.optionalString("notes"), createdAt: try o.timestamp("created_at"))
    }
}

extension ContactUpserted {
    public func writeJSON(to o: inout JSONObjectWriter) {
        o.field("contact_id", contactID); o.field("name", name); o.field("phone", phone); o.field("email", email)
        o.field("lead_id", leadID); o.field("first_seen_at", firstSeenAt); o.field("last_seen_at", lastSeenAt)
    }

    public init(json o: JSONObject) throws(MessageDecodingError) {
        self.init(contactID: try o.identifier("contact_id"), name: try o.optionalString("name"), phone: try o.optionalString("phone"),
                  email: try o.optionalString("email"), leadID: try o.optionalIdentifier("lead_id"),
                  firstSeenAt: try o.timestamp("first_seen_at"), lastSeenAt: try o.timestamp("last_seen_at"))
    }
}

extension InteractionLogged {
    public func writeJSON(to o: inout JSONObjectWriter) {
        o.field("interaction_id", interactionID); o.field("contact_id", contactID); o.field("call_id", callID); o.field("channel", channel)
        o.field("summary", summary); o.field("duration_seconds", durationSeconds); o.field("occurred_at", occurredAt)
    }

    public init(json o: JSONObject) throws(MessageDecodingError) {
        self.init(interactionID: try o.identifier("interaction_id"), contactID: try o.identifier("contact_id"), callID: try o.optionalIdentifier("call_id"),
                  channel: try o.enumeration(Channel.self, "channel"), summary: try o.optionalString("summary"),
                  durationSeconds: try o.optionalInt("duration_seconds"), occurredAt: try o.timestamp("occurred_at"))
    }
}
