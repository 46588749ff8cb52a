import VoiceCoreEvents
import VoiceCorePostgres

/// crm → `leads`, `crm_contacts`, `interactions`.
///
/// Leads and interactions are written once per id. Contacts are upserted by id: a later name
/// replaces the earlier one, phone and email are filled when missing, first/last seen widen. The
/// CRM service deduplicates contacts by phone or email per tenant (it derives the contact id from
/// them); the unique indexes on phone and lower(email) guard that here: an upsert that would
/// create a second contact with the same phone or email is rejected and recorded in
/// `projection_failures`.
public struct CRMProjection: Projection {
    public init() {}
    public var name: String { "crm" }
    public var summary: String { "leads, crm_contacts (deduplicated by phone or email), interactions" }
    public var categories: [StreamCategory] { [.crm] }
    public var eventTypes: Set<String>? { [LeadCreated.type, ContactUpserted.type, InteractionLogged.type] }
    public var tables: [String] { ["leads", "crm_contacts", "interactions"] }

    struct Key: Hashable {
        var tenant: Identifier, id: Identifier
    }

    public func apply(_ events: [ProjectedEvent], in db: isolated PostgresConnection) throws {
        let leads = events.messages(LeadCreated.self).uniqued { Key(tenant: $0.event.tenantID, id: $0.message.leadID) }
        if !leads.isEmpty {
            try db.write("""
                INSERT INTO leads (tenant_id, lead_id, call_id, contact_id, name, phone, email, intent, source, notes, created_at)
                SELECT u.tenant_id, u.lead_id, u.call_id, NULL, u.name, u.phone, u.email, u.intent, u.source, u.notes, u.created_at
                FROM unnest(\(leads.map(\.event.tenantID))::uuid[], \(leads.map(\.message.leadID))::uuid[],
                            \(leads.map(\.message.callID))::uuid[], \(leads.map(\.message.name))::text[],
                            \(leads.map(\.message.phone))::text[], \(leads.map(\.message.email))::text[],
                            \(leads.map(\.message.intent.rawValue))::text[], \(leads.map(\.message.source.rawValue))::text[],
                            \(leads.map(\.message.notes))::text[], \(leads.map(\.message.createdAt))::timestamptz[])
                     AS u(tenant_id, lead_id, call_id, name, phone, email, intent, source, notes, created_at)
                ON CONFLICT (tenant_id, lead_id) DO NOTHING
                """)
        }

        // Several upserts of one contact in a batch merge into one row (one statement may not
        // touch a row twice), with the same rules as the statement's conflict clause.
        var merged: [Key: ContactUpserted] = [:]
        var order: [Key] = []
        for (event, contact) in events.messages(ContactUpserted.self) {
            let key = Key(tenant: event.tenantID, id: contact.contactID)
            if var existing = merged[key] {
                existing.name = contact.name ?? existing.name
                existing.phone = existing.phone ?? contact.phone
                existing.email = existing.email ?? contact.email
                existing.firstSeenAt = min(existing.firstSeenAt, contact.firstSeenAt)
                existing.lastSeenAt = max(existing.lastSeenAt, contact.lastSeenAt)
                merged[key] = existing
            } else {
                merged[key] = contact
                order.append(key)
            }
        }
        if !order.isEmpty {
            let contacts = order.map { ($0.tenant, merged[$0]!) }
            try db.write("""
                INSERT INTO crm_contacts AS c (tenant_id, contact_id, name, phone, email, first_seen_at, last_seen_at)
                SELECT * FROM unnest(\(contacts.map(\.0))::uuid[], \(contacts.map(\.1.contactID))::uuid[],
                                     \(contacts.map(\.1.name))::text[], \(contacts.map(\.1.phone))::text[],
                                     \(contacts.map(\.1.email))::text[], \(contacts.map(\.1.firstSeenAt))::timestamptz[],
                                     \(contacts.map(\.1.lastSeenAt))::timestamptz[])
                ORDER BY 1, 2
                ON CONFLICT (tenant_id, contact_id) DO UPDATE SET
                  name = COALESCE(EXCLUDED.name, c.name),
                  phone = COALESCE(c.phone, EXCLUDED.phone),
                  email = COALESCE(c.email, EXCLUDED.email),
                  first_seen_at = LEAST(c.first_seen_at, EXCLUDED.first_seen_at),
                  last_seen_at = GREATEST(c.last_seen_at, EXCLUDED.last_seen_at)
                """)
        }

        let interactions = events.messages(InteractionLogged.self).uniqued { Key(tenant: $0.event.tenantID, id: $0.message.interactionID) }
        if !interactions.isEmpty {
            try db.write("""
                INSERT INTO interactions (tenant_id, interaction_id, contact_id, call_id, channel, summary, duration_seconds, occurred_at)
                SELECT * FROM unnest(\(interactions.map(\.event.tenantID))::uuid[], \(interactions.map(\.message.interactionID))::uuid[],
                                     \(interactions.map(\.message.contactID))::uuid[], \(interactions.map(\.message.callID))::uuid[],
                                     \(interactions.map(\.message.channel.rawValue))::text[], \(interactions.map(\.message.summary))::text[],
                                     \(interactions.map(\.message.durationSeconds))::int8[], \(interactions.map(\.message.occurredAt))::timestamptz[])
                ON CONFLICT (tenant_id, interaction_id) DO NOTHING
                """)
        }
    }
}
