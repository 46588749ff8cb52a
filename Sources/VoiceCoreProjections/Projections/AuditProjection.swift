import VoiceCoreEvents
import VoiceCorePostgres
import VoiceCoreTenants

/// crm and tenants commands → `audit_logs`: one row per command the tenant API published
/// (CreateLead, UpdateContact, ChangeSettings), with actor `api_key` and the key's public id (from
/// the command's `source`, `/edge/api/keys/<key id>`), the request id (the command's id, which
/// the edge answered in `X-Request-Id`), the time the edge accepted it and outcome `accepted`.
///
/// A tenant API request takes effect as its command on its stream (the edge answers 202 once Redis
/// has it), so that stream is the request's outbox: the row is written in the projector's
/// transaction with the checkpoint, and keyed by request id, so a command delivered twice (again
/// after a crash, or published twice) is recorded once. Commands of other sources (the AI
/// service's own CreateLead) are passed over: they are no API request.
///
/// The details name the fields the request gave, never their values: the trail is kept whole,
/// and a caller's name or phone in it would outlive an erasure.
///
/// It reads command streams (``kind``), which the archive does not hold: replay refuses it, and
/// nothing ever truncates or rebuilds the trail.
public struct AuditProjection: Projection {
    public init() {}
    public var name: String { "audit" }
    public var summary: String { "audit: the tenant API's commands as audit-trail rows (never replayed)" }
    public var categories: [StreamCategory] { [.crm, .tenants] }
    public var kind: MessageKind { .command }
    public var eventTypes: Set<String>? { [CreateLead.type, UpdateContact.type, ChangeSettings.type] }
    public var tables: [String] { ["audit_logs"] }

    public func apply(_ events: [ProjectedEvent], in db: isolated PostgresConnection) throws {
        try AuditTrail.write(events.compactMap(Self.entry), in: db)
    }

    /// The row a command stands for; nil for a command the tenant API did not publish.
    static func entry(_ event: ProjectedEvent) -> AuditEntry? {
        let envelope = event.envelope
        guard let actor = AuditActor(commandSource: envelope.source) else { return nil }
        let action: AuditAction
        let target: String
        let details: [UInt8]
        if let lead = event.message(as: CreateLead.self) {
            action = .leadCreate
            target = "leads/\(lead.leadID)"
            details = JSONObjectWriter.object { json in
                json.field("intent", lead.intent)
                json.field("fields", Self.given([("call_id", lead.callID != nil), ("name", lead.name != nil), ("phone", lead.phone != nil),
                                                 ("email", lead.email != nil), ("notes", lead.notes != nil)]))
            }
        } else if let update = event.message(as: UpdateContact.self) {
            action = .contactUpdate
            target = "contacts/\(update.contactID)"
            details = JSONObjectWriter.object { json in
                json.field("fields", Self.given([("name", update.name != nil), ("phone", update.phone != nil), ("email", update.email != nil)]))
            }
        } else if let change = event.message(as: ChangeSettings.self) {
            action = .settingsChange
            target = "settings"
            details = JSONObjectWriter.object { json in
                json.field("fields", Self.given([("greeting", true), ("personality", change.settings.personality != nil), ("intents", true),
                                                 ("business_hours", true)]))
            }
        } else {
            return nil
        }
        return AuditEntry(tenant: envelope.tenantID, actor: actor, action: action, target: target, requestID: envelope.id, at: envelope.time,
                          outcome: .accepted, details: details)
    }

    private static func given(_ fields: [(String, Bool)]) -> [String] {
        fields.filter(\.1).map(\.0)
    }
}
