import VoiceCoreEvents
import VoiceCorePostgres
import VoiceCoreTime

/// crm → `leads`, `crm_contacts`, `interactions` (and `crm_lead_contacts`, each lead's contact).
///
/// Leads and interactions are written once per id. Contacts are upserted by id, ordered by their
/// events' time (`revised_at`): the crm service publishes each ``ContactUpserted`` with the
/// contact's full current phone and e-mail at a time that increases strictly per contact, but
/// events of one contact may arrive out of that order. A newer event's phone, e-mail and name
/// replace the row's (those it carries); an older one only fills what the row lacks; first/last
/// seen widen. The service keeps one contact per phone and per e-mail within a tenant and never
/// hands a phone or e-mail from one contact to another, so the unique indexes on phone and
/// lower(email) never refuse its events; they still guard against any other producer: an upsert
/// that would give a second contact the same phone or email is rejected and recorded in
/// `projection_failures`.
///
/// A lead's `contact_id` comes from the lead's ``ContactUpserted`` (its `lead_id`), which may be
/// projected before or after the ``LeadCreated`` (they are on different partitions): the link is
/// kept in `crm_lead_contacts`, and whichever of the two comes second fills `leads.contact_id`.
public struct CRMProjection: Projection {
    public init() {}
    public var name: String { "crm" }
    public var summary: String { "leads, crm_contacts (deduplicated by phone or email), interactions" }
    public var categories: [StreamCategory] { [.crm] }
    public var eventTypes: Set<String>? { [LeadCreated.type, ContactUpserted.type, InteractionLogged.type] }
    public var tables: [String] { ["leads", "crm_contacts", "crm_lead_contacts", "interactions"] }

    struct Key: Hashable {
        var tenant: Identifier, id: Identifier
    }

    public func apply(_ events: [ProjectedEvent], in db: isolated PostgresConnection) throws {
        // A lead's contact: LeadCreated and the lead's ContactUpserted both upsert the lead's row
        // of `crm_lead_contacts` first (the LeadCreated with no contact), in key order. When two
        // projector transactions carry them at once, the second waits there for the first to
        // commit, so its next statement sees the first's rows: the lead row finds the link, or the
        // link finds the lead row. Without that wait each could miss the other's uncommitted row.
        // It is one statement, so every transaction locks these rows in one order: two statements
        // (links, then leads) deadlocked two writers whose batches held each other's keys.
        let links = events.messages(ContactUpserted.self).compactMap { event, contact in
            contact.leadID.map { (key: Key(tenant: event.tenantID, id: $0), contact: contact.contactID) }
        }.uniqued { $0.key }
        let leads = events.messages(LeadCreated.self).uniqued { Key(tenant: $0.event.tenantID, id: $0.message.leadID) }
        // Each lead's row once: its contact where the batch links one, else none yet.
        var lineage: [Key: Identifier?] = [:]
        for lead in leads { lineage.updateValue(nil, forKey: Key(tenant: lead.event.tenantID, id: lead.message.leadID)) }
        for link in links { lineage.updateValue(link.contact, forKey: link.key) }
        if !lineage.isEmpty {
            let rows = lineage.map { (key: $0.key, contact: $0.value) }
            try db.write("""
                INSERT INTO crm_lead_contacts AS l (tenant_id, lead_id, contact_id)
                SELECT * FROM unnest(\(rows.map(\.key.tenant))::uuid[], \(rows.map(\.key.id))::uuid[], \(rows.map(\.contact))::uuid[])
                ORDER BY 1, 2
                ON CONFLICT (tenant_id, lead_id) DO UPDATE SET contact_id = EXCLUDED.contact_id
                WHERE l.contact_id IS NULL AND EXCLUDED.contact_id IS NOT NULL
                """)
        }
        if !leads.isEmpty {
            try db.write("""
                INSERT INTO leads (tenant_id, lead_id, call_id, contact_id, name, phone, email, intent, source, notes, created_at)
                SELECT u.tenant_id, u.lead_id, u.call_id, l.contact_id, u.name, u.phone, u.email, u.intent, u.source, u.notes, u.created_at
                FROM unnest(\(leads.map(\.event.tenantID))::uuid[], \(leads.map(\.message.leadID))::uuid[],
                            \(leads.map(\.message.callID))::uuid[], \(leads.map(\.message.name))::text[],
                            \(leads.map(\.message.phone))::text[], \(leads.map(\.message.email))::text[],
                            \(leads.map(\.message.intent.rawValue))::text[], \(leads.map(\.message.source.rawValue))::text[],
                            \(leads.map(\.message.notes))::text[], \(leads.map(\.message.createdAt))::timestamptz[])
                     AS u(tenant_id, lead_id, call_id, name, phone, email, intent, source, notes, created_at)
                LEFT JOIN crm_lead_contacts l ON l.tenant_id = u.tenant_id AND l.lead_id = u.lead_id
                ON CONFLICT (tenant_id, lead_id) DO NOTHING
                """)
        }
        // Leads projected before their contact's event.
        if !links.isEmpty {
            try db.write("""
                UPDATE leads SET contact_id = l.contact_id
                FROM unnest(\(links.map(\.key.tenant))::uuid[], \(links.map(\.key.id))::uuid[]) AS u(tenant_id, lead_id)
                JOIN crm_lead_contacts l ON l.tenant_id = u.tenant_id AND l.lead_id = u.lead_id
                WHERE leads.tenant_id = u.tenant_id AND leads.lead_id = u.lead_id AND leads.contact_id IS NULL
                """)
        }

        // Several upserts of one contact in a batch merge into one row (one statement may not
        // touch a row twice), with the same rules as the statement's conflict clause.
        var merged: [Key: (contact: ContactUpserted, revisedAt: Timestamp)] = [:]
        var order: [Key] = []
        for (event, contact) in events.messages(ContactUpserted.self) {
            let key = Key(tenant: event.tenantID, id: contact.contactID)
            let time = event.envelope.time
            guard let (existing, revisedAt) = merged[key] else {
                merged[key] = (contact, time)
                order.append(key)
                continue
            }
            merged[key] = (Self.merge(existing, revisedAt: revisedAt, with: contact, at: time), max(revisedAt, time))
        }
        if !order.isEmpty {
            let contacts = order.compactMap { key in merged[key].map { (tenant: key.tenant, contact: $0.contact, revisedAt: $0.revisedAt) } }
            try db.write("""
                INSERT INTO crm_contacts AS c (tenant_id, contact_id, name, phone, email, first_seen_at, last_seen_at, revised_at)
                SELECT * FROM unnest(\(contacts.map(\.tenant))::uuid[], \(contacts.map(\.contact.contactID))::uuid[],
                                     \(contacts.map(\.contact.name))::text[], \(contacts.map(\.contact.phone))::text[],
                                     \(contacts.map(\.contact.email))::text[], \(contacts.map(\.contact.firstSeenAt))::timestamptz[],
                                     \(contacts.map(\.contact.lastSeenAt))::timestamptz[], \(contacts.map(\.revisedAt))::timestamptz[])
                ORDER BY 1, 2
                ON CONFLICT (tenant_id, contact_id) DO UPDATE SET
                  name = CASE WHEN EXCLUDED.revised_at >= c.revised_at THEN COALESCE(EXCLUDED.name, c.name) ELSE COALESCE(c.name, EXCLUDED.name) END,
                  phone = CASE WHEN EXCLUDED.revised_at > c.revised_at THEN COALESCE(EXCLUDED.phone, c.phone) ELSE COALESCE(c.phone, EXCLUDED.phone) END,
                  email = CASE WHEN EXCLUDED.revised_at > c.revised_at THEN COALESCE(EXCLUDED.email, c.email) ELSE COALESCE(c.email, EXCLUDED.email) END,
                  first_seen_at = LEAST(c.first_seen_at, EXCLUDED.first_seen_at),
                  last_seen_at = GREATEST(c.last_seen_at, EXCLUDED.last_seen_at),
                  revised_at = GREATEST(c.revised_at, EXCLUDED.revised_at)
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

    /// One contact's upserts of a batch as one: the rules of the upsert's conflict clause (a
    /// newer event replaces the name, phone and e-mail it carries, an older one fills what is
    /// missing; the name of an event at the same time replaces, in stream order).
    static func merge(_ existing: ContactUpserted, revisedAt: Timestamp, with contact: ContactUpserted, at time: Timestamp) -> ContactUpserted {
        var result = existing
        let newer = time > revisedAt
        result.name = time >= revisedAt ? contact.name ?? existing.name : existing.name ?? contact.name
        result.phone = newer ? contact.phone ?? existing.phone : existing.phone ?? contact.phone
        result.email = newer ? contact.email ?? existing.email : existing.email ?? contact.email
        result.firstSeenAt = min(existing.firstSeenAt, contact.firstSeenAt)
        result.lastSeenAt = max(existing.lastSeenAt, contact.lastSeenAt)
        return result
    }
}
