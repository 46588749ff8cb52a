import VoiceCoreEvents
import VoiceCorePostgres
import VoiceCoreTime

/// conversations, calls → `call_turns`, `call_outcomes`: the receptionist's side of a call.
///
/// - ``ReceptionistReplied`` → one `call_turns` row per call and turn: what the caller said, the
///   reply, its action and the slots after the turn. A turn is answered once (a retried turn gets
///   the same reply, under the same id); should a second reply of a turn still arrive, the first
///   stays. Both sit on the call's partition, in the same order for the live projector and a
///   replay, so a replay keeps the same one.
/// - ``AppointmentRequested``, ``MessageTaken``, ``CallTransferred``, ``VoicemailRecorded`` → one
///   `call_outcomes` row per event id (`kind` appointment, message, transfer, voicemail), its
///   fields in `details` (every field present, null when absent), so a redelivered or republished
///   event adds nothing.
///
/// Neither needs the call's session row: turns and outcomes of a call whose `CallStarted` is
/// not projected yet are kept, and shown with the call once it is.
public struct ConversationsProjection: Projection {
    public init() {}
    public var name: String { "conversations" }
    public var summary: String { "call_turns: the receptionist's turns; call_outcomes: appointments, messages, transfers, voicemails" }
    public var categories: [StreamCategory] { [.conversations, .calls] }
    public var eventTypes: Set<String>? {
        [ReceptionistReplied.type, AppointmentRequested.type, MessageTaken.type, CallTransferred.type, VoicemailRecorded.type]
    }
    public var tables: [String] { ["call_turns", "call_outcomes"] }

    struct TurnKey: Hashable {
        var tenant: Identifier, call: Identifier, turn: Int
    }

    struct OutcomeKey: Hashable {
        var tenant: Identifier, call: Identifier, event: Identifier
    }

    /// One `call_outcomes` row.
    struct Outcome {
        var event: ProjectedEvent
        var call: Identifier
        var kind: String
        var turn: Int?
        var details: [String: JSONValue]
        var occurredAt: Timestamp
    }

    public func apply(_ events: [ProjectedEvent], in db: isolated PostgresConnection) throws {
        // The first reply of each turn in the batch: one statement may not upsert a row twice.
        let replies = events.messages(ReceptionistReplied.self)
            .uniqued { TurnKey(tenant: $0.event.tenantID, call: $0.message.callID, turn: $0.message.turn) }
        if !replies.isEmpty {
            try db.write("""
                INSERT INTO call_turns (tenant_id, call_id, turn, channel, heard, reply, action, transfer_to, slots, intent, decided_by, replied_at)
                SELECT * FROM unnest(\(replies.map(\.event.tenantID))::uuid[], \(replies.map(\.message.callID))::uuid[],
                                     \(replies.map(\.message.turn))::int8[], \(replies.map(\.message.channel.rawValue))::text[],
                                     \(replies.map(\.message.heard))::text[], \(replies.map(\.message.text))::text[],
                                     \(replies.map(\.message.action.rawValue))::text[], \(replies.map(\.message.transferTo))::text[],
                                     \(replies.map { Self.json($0.message.slots.mapValues(JSONValue.string)) })::jsonb[],
                                     \(replies.map { $0.message.intent?.rawValue })::text[], \(replies.map(\.message.decidedBy.rawValue))::text[],
                                     \(replies.map(\.message.repliedAt))::timestamptz[])
                ORDER BY 1, 2, 3
                ON CONFLICT (tenant_id, call_id, turn) DO NOTHING
                """)
        }

        let outcomes = events.compactMap(Self.outcome).uniqued { OutcomeKey(tenant: $0.event.tenantID, call: $0.call, event: $0.event.envelope.id) }
        if !outcomes.isEmpty {
            try db.write("""
                INSERT INTO call_outcomes (tenant_id, call_id, event_id, kind, turn, details, occurred_at)
                SELECT * FROM unnest(\(outcomes.map(\.event.tenantID))::uuid[], \(outcomes.map(\.call))::uuid[],
                                     \(outcomes.map(\.event.envelope.id))::uuid[], \(outcomes.map(\.kind))::text[],
                                     \(outcomes.map(\.turn))::int8[], \(outcomes.map { Self.json($0.details) })::jsonb[],
                                     \(outcomes.map(\.occurredAt))::timestamptz[])
                ORDER BY 1, 2, 3
                ON CONFLICT (tenant_id, call_id, event_id) DO NOTHING
                """)
        }
    }

    /// The outcome an event records, nil for a reply (or anything else).
    static func outcome(_ event: ProjectedEvent) -> Outcome? {
        func text(_ value: String?) -> JSONValue { value.map(JSONValue.string) ?? .null }
        switch event.message {
        case let requested as AppointmentRequested:
            return Outcome(event: event, call: requested.callID, kind: "appointment", turn: requested.turn,
                           details: ["name": text(requested.name), "phone": text(requested.phone),
                                     "preferred_time": .string(requested.preferredTime), "reason": text(requested.reason)],
                           occurredAt: requested.requestedAt)
        case let taken as MessageTaken:
            return Outcome(event: event, call: taken.callID, kind: "message", turn: taken.turn,
                           details: ["name": text(taken.name), "phone": text(taken.phone), "message": .string(taken.message)],
                           occurredAt: taken.takenAt)
        case let transferred as CallTransferred:
            return Outcome(event: event, call: transferred.callID, kind: "transfer", turn: transferred.turn,
                           details: ["to": .string(transferred.to), "reason": text(transferred.reason)],
                           occurredAt: transferred.transferredAt)
        case let voicemail as VoicemailRecorded:
            return Outcome(event: event, call: voicemail.callID, kind: "voicemail", turn: nil,
                           details: ["recording_id": .string(voicemail.recordingID), "recording_url": text(voicemail.recordingURL),
                                     "duration_seconds": .number(String(voicemail.durationSeconds))],
                           occurredAt: voicemail.recordedAt)
        default:
            return nil
        }
    }

    static func json(_ members: [String: JSONValue]) -> PostgresJSON {
        PostgresJSON(rawJSON: JSONValue.object(members).jsonText)
    }
}
