import Foundation
import VoiceCoreTime

/// A provider reported a call's progress (a Twilio status callback, a Telnyx call webhook), in
/// provider-neutral form. The call service turns these into call events.
public struct ReportCallProgress: Message {
    public static let type = "voicecore.command.call.report-progress"
    public static let version = 1
    public static let dataschema = "https://schemas.voicecore.dev/commands/call.report-progress/v1"
    public static let category = StreamCategory.calls
    public static let kind = MessageKind.command

    /// The provider-neutral call status.
    public enum Status: String, Sendable, Hashable, Codable, CaseIterable {
        case initiated, ringing
        case inProgress = "in-progress"
        case completed, busy, failed
        case noAnswer = "no-answer"
        case canceled
    }

    /// ``CallID/derive(tenant:provider:providerCallID:)`` of the provider call id.
    public var callID: Identifier
    public var provider: TelephonyProvider
    public var providerCallID: String
    public var providerAccountID: String?
    public var status: Status
    /// The provider's ordering of callbacks for this call: Twilio's `SequenceNumber`; for Telnyx,
    /// `occurred_at` in microseconds. A lower sequence never overrides a higher one.
    public var sequence: Int64
    public var occurredAt: Timestamp
    public var direction: CallDirection
    public var from: String
    public var to: String
    public var durationSeconds: Int?
    /// Every field the provider sent, kept as received (flattened with dots for JSON bodies).
    public var providerFields: [String: String]

    public init(callID: Identifier, provider: TelephonyProvider, providerCallID: String, providerAccountID: String? = nil, status: Status, sequence: Int64, occurredAt: Timestamp, direction: CallDirection, from: String, to: String, durationSeconds: Int? = nil, providerFields: [String: String] = [:]) {
        self.callID = callID
        self.provider = provider
        self.providerCallID = providerCallID
        self.providerAccountID = providerAccountID
        self.status = status
        self.sequence = sequence
        self.occurredAt = occurredAt
        self.direction = direction
        self.from = from
        self.to = to
        self.durationSeconds = durationSeconds
        self.providerFields = providerFields
    }

    public var subject: String { callID.description }

    public func validate() throws(MessageDecodingError) {
        try Storable.check(providerCallID, "data.provider_call_id", as: .identifier)
        try Storable.check(providerAccountID, "data.provider_account_id", as: .identifier)
        try Check.nonNegative(sequence, "sequence")
        try Check.e164(from, "from")
        try Check.e164(to, "to")
        try Storable.check(durationSeconds, "data.duration_seconds")
        try Storable.check(fields: providerFields, prefix: "data.provider_fields.")
    }

    enum CodingKeys: String, CodingKey {
        case callID = "call_id", provider, providerCallID = "provider_call_id", providerAccountID = "provider_account_id", status, sequence
        case occurredAt = "occurred_at", direction, from, to, durationSeconds = "duration_seconds", providerFields = "provider_fields"
    }
}

/// A provider delivered a piece of real-time transcription.
public struct ReportTranscriptSegment: Message {
    public static let type = "voicecore.command.call.report-transcript-segment"
    public static let version = 1
    public static let dataschema = "https://schemas.voicecore.dev/commands/call.report-transcript-segment/v1"
    public static let category = StreamCategory.calls
    public static let kind = MessageKind.command

    public var callID: Identifier
    public var provider: TelephonyProvider
    public var providerCallID: String
    /// The provider's transcription session (Twilio `TranscriptionSid`).
    public var transcriptionID: String
    /// The provider's order of segments (Twilio `SequenceId`).
    public var sequence: Int
    public var track: TranscriptTrack
    public var text: String
    public var isFinal: Bool
    public var confidence: Double?
    public var occurredAt: Timestamp

    public init(callID: Identifier, provider: TelephonyProvider, providerCallID: String, transcriptionID: String, sequence: Int, track: TranscriptTrack, text: String, isFinal: Bool, confidence: Double? = nil, occurredAt: Timestamp) {
        self.callID = callID
        self.provider = provider
        self.providerCallID = providerCallID
        self.transcriptionID = transcriptionID
        self.sequence = sequence
        self.track = track
        self.text = text
        self.isFinal = isFinal
        self.confidence = confidence
        self.occurredAt = occurredAt
    }

    public var subject: String { callID.description }

    public func validate() throws(MessageDecodingError) {
        try Storable.check(providerCallID, "data.provider_call_id", as: .identifier)
        try Storable.check(transcriptionID, "data.transcription_id", as: .identifier)
        try Storable.check(sequence, "data.sequence")
        if let confidence { try Check.range(confidence, 0...1, "confidence") }
        try Storable.check(text, "data.text", as: .freeText, maxLength: 10_000)
    }

    enum CodingKeys: String, CodingKey {
        case callID = "call_id", provider, providerCallID = "provider_call_id", transcriptionID = "transcription_id", sequence, track, text
        case isFinal = "is_final", confidence, occurredAt = "occurred_at"
    }
}

/// Create a lead (tenant API, or the AI service after a sales/appointment intent).
public struct CreateLead: Message {
    public static let type = "voicecore.command.crm.create-lead"
    public static let version = 1
    public static let dataschema = "https://schemas.voicecore.dev/commands/crm.create-lead/v1"
    public static let category = StreamCategory.crm
    public static let kind = MessageKind.command

    /// Chosen by the caller so a retried request creates one lead.
    public var leadID: Identifier
    public var callID: Identifier?
    public var name: String?
    public var phone: String?
    public var email: String?
    public var intent: Intent
    public var notes: String?

    public init(leadID: Identifier, callID: Identifier? = nil, name: String? = nil, phone: String? = nil, email: String? = nil, intent: Intent, notes: String? = nil) {
        self.leadID = leadID
        self.callID = callID
        self.name = name
        self.phone = phone
        self.email = email
        self.intent = intent
        self.notes = notes
    }

    public var subject: String { leadID.description }

    public func validate() throws(MessageDecodingError) {
        try Check.contactDetails(name: name, phone: phone, email: email, missing: "needs at least one of name, phone or email")
        try Storable.check(notes, "data.notes", as: .freeText, maxLength: 5_000)
    }

    enum CodingKeys: String, CodingKey {
        case leadID = "lead_id", callID = "call_id", name, phone, email, intent, notes
    }
}

/// Change a contact's details (tenant API). Absent fields stay as they are.
public struct UpdateContact: Message {
    public static let type = "voicecore.command.crm.update-contact"
    public static let version = 1
    public static let dataschema = "https://schemas.voicecore.dev/commands/crm.update-contact/v1"
    public static let category = StreamCategory.crm
    public static let kind = MessageKind.command

    public var contactID: Identifier
    public var name: String?
    public var phone: String?
    public var email: String?

    public init(contactID: Identifier, name: String? = nil, phone: String? = nil, email: String? = nil) {
        self.contactID = contactID
        self.name = name
        self.phone = phone
        self.email = email
    }

    public var subject: String { contactID.description }

    public func validate() throws(MessageDecodingError) {
        try Check.contactDetails(name: name, phone: phone, email: email, missing: "changes nothing: give name, phone or email")
    }

    enum CodingKeys: String, CodingKey {
        case contactID = "contact_id", name, phone, email
    }
}

/// Replace a tenant's AI settings (tenant API).
public struct ChangeSettings: Message {
    public static let type = "voicecore.command.tenant.change-settings"
    public static let version = 1
    public static let dataschema = "https://schemas.voicecore.dev/commands/tenant.change-settings/v1"
    public static let category = StreamCategory.tenants
    public static let kind = MessageKind.command

    public var tenantID: Identifier
    public var settings: AISettings

    public init(tenantID: Identifier, settings: AISettings) {
        self.tenantID = tenantID
        self.settings = settings
    }

    public var subject: String { tenantID.description }

    /// The settings' own checks, and a business-hours time zone of the IANA database: checked on
    /// the command only, so settings events archived before this check still decode and replay.
    public func validate() throws(MessageDecodingError) {
        try settings.validate("data.settings")
        if TimeZone(identifier: settings.businessHours.timeZone) == nil {
            throw .invalid("data.settings.business_hours.time_zone", "is not a time zone of the IANA database, such as America/New_York")
        }
    }

    enum CodingKeys: String, CodingKey {
        case tenantID = "tenant_id", settings
    }
}

// MARK: JSON

extension ReportCallProgress {
    public func writeJSON(to o: inout JSONObjectWriter) {
        o.field("call_id", callID); o.field("provider", provider); o.field("provider_call_id", providerCallID)
        o.field("provider_account_id", providerAccountID); o.field("status", status); o.field("sequence", sequence)
        o.field("occurred_at", occurredAt); o.field("direction", direction); o.field("from", from); o.field("to", to)
        o.field("duration_seconds", durationSeconds); o.field("provider_fields", providerFields)
    }

    public init(json o: JSONObject) throws(MessageDecodingError) {
        self.init(callID: try o.identifier("call_id"), provider: try o.enumeration(TelephonyProvider.self, "provider"),
                  providerCallID: try o.string("provider_call_id"), providerAccountID: try o.optionalString("provider_account_id"),
                  status: try o.enumeration(Status.self, "status"), sequence: try o.int64("sequence"), occurredAt: try o.timestamp("occurred_at"),
                  direction: try o.enumeration(CallDirection.self, "direction"), from: try o.string("from"), to: try o.string("to"),
                  durationSeconds: try o.optionalInt("duration_seconds"), providerFields: try o.stringMap("provider_fields"))
    }
}

extension ReportTranscriptSegment {
    public func writeJSON(to o: inout JSONObjectWriter) {
        o.field("call_id", callID); o.field("provider", provider); o.field("provider_call_id", providerCallID)
        o.field("transcription_id", transcriptionID); o.field("sequence", sequence); o.field("track", track); o.field("text", text)
        o.field("is_final", isFinal); o.field("confidence", confidence); o.field("occurred_at", occurredAt)
    }

    public init(json o: JSONObject) throws(MessageDecodingError) {
        self.init(callID: try o.identifier("call_id"), provider: try o.enumeration(TelephonyProvider.self, "provider"),
                  providerCallID: try o.string("provider_call_id"), transcriptionID: try o.string("transcription_id"),
                  sequence: try o.int("sequence"), track: try o.enumeration(TranscriptTrack.self, "track"), text: try o.string("text"),
                  isFinal: try o.bool("is_final"), confidence: try o.optionalDouble("confidence"), occurredAt: try o.timestamp("occurred_at"))
    }
}

extension CreateLead {
    public func writeJSON(to o: inout JSONObjectWriter) {
        o.field("lead_id", leadID); o.field("call_id", callID); o.field("name", name); o.field("phone", phone)
        o.field("email", email); o.field("intent", intent); o.field("notes", notes)
    }

    public init(json o: JSONObject) throws(MessageDecodingError) {
        self.init(leadID: try o.identifier("lead_id"), callID: try o.optionalIdentifier("call_id"), name: try o.optionalString("name"),
                  phone: try o.optionalString("phone"), email: try o.optionalString("email"), intent: try o.enumeration(Intent.self, "intent"),
                  notes: try o.optionalString("notes"))
    }
}

extension UpdateContact {
    public func writeJSON(to o: inout JSONObjectWriter) {
        o.field("contact_id", contactID); o.field("name", name); o.field("phone", phone); o.field("email", email)
    }

    public init(json o: JSONObject) throws(MessageDecodingError) {
        self.init(contactID: try o.identifier("contact_id"), name: try o.optionalString("name"), phone: try o.optionalString("phone"),
                  email: try o.optionalString("email"))
    }
}

extension ChangeSettings {
    public func writeJSON(to o: inout JSONObjectWriter) {
        o.field("tenant_id", tenantID); o.field("settings", settings)
    }

    public init(json o: JSONObject) throws(MessageDecodingError) {
        self.init(tenantID: try o.identifier("tenant_id"), settings: try o.object(AISettings.self, "settings"))
    }
}
