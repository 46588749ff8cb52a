import VoiceCoreTime

/// A billable quantity, derived from another event.
///
/// `usage_id` is derived from the source event (UUIDv5 of its id and the meter), so a redelivered
/// source event yields the same usage id and is never billed twice.
public struct UsageRecorded: Message {
    public static let type = "voicecore.billing.usage-recorded"
    public static let version = 1
    public static let dataschema = "https://schemas.voicecore.dev/events/billing.usage-recorded/v1"
    public static let category = StreamCategory.billing

    public enum Meter: String, Sendable, Hashable, Codable, CaseIterable {
        case callMinutes = "call_minutes"
        case transcriptionSeconds = "transcription_seconds"
        case aiRequests = "ai_requests"

        /// The unit each meter counts in.
        public var unit: Unit {
            switch self {
            case .callMinutes: return .minute
            case .transcriptionSeconds: return .second
            case .aiRequests: return .request
            }
        }
    }

    public enum Unit: String, Sendable, Hashable, Codable, CaseIterable {
        case minute, second, request
    }

    /// Namespace of usage ids.
    public static let usageNamespace = Identifier(literal: "b1f2c3d4-5e6f-4a1b-8c2d-3e4f5a6b7c8d")

    public var usageID: Identifier
    public var meter: Meter
    public var quantity: Double
    public var unit: Unit
    public var callID: Identifier?
    public var sourceEventID: Identifier
    public var sourceEventType: String
    public var occurredAt: Timestamp

    public init(meter: Meter, quantity: Double, callID: Identifier? = nil, sourceEventID: Identifier, sourceEventType: String, occurredAt: Timestamp) {
        self.init(usageID: Self.usageID(sourceEventID: sourceEventID, meter: meter), meter: meter, quantity: quantity, unit: meter.unit,
                  callID: callID, sourceEventID: sourceEventID, sourceEventType: sourceEventType, occurredAt: occurredAt)
    }

    /// Every field as given (decoding; validation checks the usage id and unit).
    public init(usageID: Identifier, meter: Meter, quantity: Double, unit: Unit, callID: Identifier?, sourceEventID: Identifier, sourceEventType: String, occurredAt: Timestamp) {
        self.usageID = usageID
        self.meter = meter
        self.quantity = quantity
        self.unit = unit
        self.callID = callID
        self.sourceEventID = sourceEventID
        self.sourceEventType = sourceEventType
        self.occurredAt = occurredAt
    }

    /// `UUIDv5(usageNamespace, "<source event id>/<meter>")`.
    public static func usageID(sourceEventID: Identifier, meter: Meter) -> Identifier {
        .v5(namespace: usageNamespace, name: "\(sourceEventID)/\(meter.rawValue)")
    }

    /// Usage of a call bills in the call's partition; other usage by its own id.
    public var subject: String { (callID ?? usageID).description }

    public func validate() throws(MessageDecodingError) {
        try Check.nonNegative(quantity, "quantity")
        guard usageID == Self.usageID(sourceEventID: sourceEventID, meter: meter) else {
            throw .invalid("data.usage_id", "must be derived from source_event_id and meter (UUIDv5)")
        }
        guard unit == meter.unit else { throw .invalid("data.unit", "must be '\(meter.unit.rawValue)' for meter '\(meter.rawValue)'") }
        try Check.notEmpty(sourceEventType, "source_event_type")
    }

    enum CodingKeys: String, CodingKey {
        case usageID = "usage_id", meter, quantity, unit, callID = "call_id", sourceEventID = "source_event_id", sourceEventType = "source_event_type", occurredAt = "occurred_at"
    }
}

// MARK: JSON

extension UsageRecorded {
    public func writeJSON(to o: inout JSONObjectWriter) {
        o.field("usage_id", usageID); o.field("meter", meter); o.field("quantity", quantity); o.field("unit", unit); o.field("call_id", callID)
        o.field("source_event_id", sourceEventID); o.field("source_event_type", sourceEventType); o.field("occurred_at", occurredAt)
    }

    public init(json o: JSONObject) throws(MessageDecodingError) {
        self.init(usageID: try o.identifier("usage_id"), meter: try o.enumeration(Meter.self, "meter"), quantity: try o.double("quantity"),
                  unit: try o.enumeration(Unit.self, "unit"), callID: try o.optionalIdentifier("call_id"),
                  sourceEventID: try o.identifier("source_event_id"), sourceEventType: try o.string("source_event_type"),
                  occurredAt: try o.timestamp("occurred_at"))
    }
}
