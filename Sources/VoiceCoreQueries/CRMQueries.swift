import Foundation
import VoiceCoreEvents
import VoiceCorePostgres
import VoiceCoreTime

/// The CRM's reads for the tenant API: leads, contacts, and each contact's interactions.
///
/// Every function runs inside ``TenantReads/read(tenant:_:)``: no statement names a tenant, row-level
/// security decides what is visible, so another tenant's lead or contact reads exactly as one that
/// does not exist (`nil`). Items are JSON objects built by Postgres (`json_build_object`) in one
/// place per shape; lists are newest first and page by keyset (``Position``), fetching `limit + 1`
/// rows to know whether a next page exists.
///
/// Optional filters are written `($n IS NULL OR column = $n)`. Each read plans its statements with
/// their values (`plan_cache_mode = force_custom_plan` for the transaction): a generic plan of a
/// prepared statement cannot drop the filters that are absent, so it would scan the tenant's
/// whole list in order and filter, instead of one index range per page.
///
/// ```swift
/// let page = try await reads.read(tenant: tenant) { db in
///     try CRMQueries.leads(CRMQueries.LeadFilter(intent: .sales), after: nil, limit: 50, in: db)
/// }
/// ```
public enum CRMQueries {
    /// The names of the lists in their cursors (a cursor of one list is refused by another).
    public static let leadsList = "leads"
    public static let contactsList = "contacts"
    public static let interactionsList = "interactions"

    /// How many interactions and leads a contact's detail embeds, newest first; its
    /// `next_cursor`s continue the lists at `/contacts/{contact}/interactions` and
    /// `/leads?contact_id=`.
    public static let embeddedLimit = 20

    /// Where a page of a newest-first list ended: the time and id of its last item. The next page
    /// holds the items strictly before it in (time, id) order, whatever was added meanwhile.
    public struct Position: Sendable, Hashable {
        public var time: Timestamp
        public var id: Identifier

        public init(time: Timestamp, id: Identifier) {
            self.time = time
            self.id = id
        }

        /// The position a cursor holds; nil when its values are not a time (years 1 to 9999, as
        /// the read models hold them) and an id: a tampered cursor is the client's error.
        public init?(_ cursor: PageCursor) {
            guard cursor.values.count == 2, let time = Timestamp(rfc3339: cursor.values[0]), Self.times.contains(time),
                  let id = Identifier(cursor.values[1]) else { return nil }
            self.init(time: time, id: id)
        }

        private static let times: ClosedRange<Timestamp> = {
            let first = Timestamp(year: 1, month: 1, day: 1, hour: 0, minute: 0, second: 0) ?? Timestamp(microsecondsSinceEpoch: .min)
            let last = Timestamp(year: 9999, month: 12, day: 31, hour: 23, minute: 59, second: 59, microsecond: 999_999) ?? Timestamp(microsecondsSinceEpoch: .max)
            return first...last
        }()

        /// The cursor of this position in `list`.
        public func cursor(of list: String) -> PageCursor {
            PageCursor(list: list, values: [time.rfc3339, id.description])
        }
    }

    /// The filters of the leads list; `nil` filters nothing.
    public struct LeadFilter: Sendable, Hashable {
        /// Created at or after.
        public var from: Timestamp?
        /// Created before.
        public var to: Timestamp?
        public var intent: Intent?
        public var source: LeadCreated.Source?
        public var contactID: Identifier?
        public var callID: Identifier?

        public init(from: Timestamp? = nil, to: Timestamp? = nil, intent: Intent? = nil, source: LeadCreated.Source? = nil,
                    contactID: Identifier? = nil, callID: Identifier? = nil) {
            self.from = from
            self.to = to
            self.intent = intent
            self.source = source
            self.contactID = contactID
            self.callID = callID
        }
    }

    /// What a contact search matches; every criterion given must match (none lists every contact).
    public struct ContactSearch: Sendable, Hashable {
        /// E.164, compared exactly (the CRM stores phones in E.164).
        public var phone: String?
        /// Compared without regard to case.
        public var email: String?
        /// A part of the name, without regard to case; `%` and `_` are matched literally.
        public var name: String?

        public init(phone: String? = nil, email: String? = nil, name: String? = nil) {
            self.phone = phone
            self.email = email
            self.name = name
        }
    }

    // MARK: Leads

    /// A page of leads, newest first (`created_at`, then id), after `position` when given.
    public static func leads(_ filter: LeadFilter, after position: Position?, limit: Int, in db: isolated PostgresConnection) throws -> Page {
        try planWithValues(db)
        let rows = try db.query(leadsQuery(filter, after: position, limit: limit))
        return try page(rows, limit: limit, list: leadsList)
    }

    private static func leadsQuery(_ filter: LeadFilter, after position: Position?, limit: Int) -> PostgresQuery {
        """
        SELECT \(Shape.leadItem) AS item, l.created_at AS position_time, l.lead_id AS position_id
        FROM leads l
        WHERE (\(filter.from)::timestamptz IS NULL OR l.created_at >= \(filter.from))
          AND (\(filter.to)::timestamptz IS NULL OR l.created_at < \(filter.to))
          AND (\(filter.intent?.rawValue)::text IS NULL OR l.intent = \(filter.intent?.rawValue))
          AND (\(filter.source?.rawValue)::text IS NULL OR l.source = \(filter.source?.rawValue))
          AND (\(filter.contactID?.uuid)::uuid IS NULL OR l.contact_id = \(filter.contactID?.uuid))
          AND (\(filter.callID?.uuid)::uuid IS NULL OR l.call_id = \(filter.callID?.uuid))
          AND (\(position?.time)::timestamptz IS NULL OR (l.created_at, l.lead_id) < (\(position?.time), \(position?.id.uuid)::uuid))
        ORDER BY l.created_at DESC, l.lead_id DESC
        LIMIT \(limit + 1)
        """
    }

    /// One lead with its contact and the call it came from (the call as `GET /v1/calls` lists
    /// it, ``CallQueries``' `CallSummary`), each `null` when there is none or it is not projected
    /// yet; `nil` when no such lead is visible.
    public static func lead(_ id: Identifier, in db: isolated PostgresConnection) throws -> [UInt8]? {
        let rows = try db.query("""
            SELECT \(Shape.leadItem) AS item,
                   CASE WHEN c.contact_id IS NOT NULL THEN \(Shape.contactItem) END AS contact,
                   (SELECT json_build_object(\(Shape.callSummaryFields))
                    FROM (SELECT s.*, a.intent, a.sentiment, a.outcome, true AS has_lead
                          FROM call_sessions s
                          LEFT JOIN call_analytics a ON a.tenant_id = s.tenant_id AND a.call_id = s.call_id
                          WHERE s.tenant_id = l.tenant_id AND s.call_id = l.call_id) s) AS call
            FROM leads l
            LEFT JOIN crm_contacts c ON c.tenant_id = l.tenant_id AND c.contact_id = l.contact_id
            WHERE l.lead_id = \(id.uuid)
            """)
        guard let row = rows.first, let lead = row.raw("item") else { return nil }
        let null = Array("null".utf8)
        return appending([("contact", row.raw("contact") ?? null), ("call", row.raw("call") ?? null)], to: lead)
    }

    // MARK: Contacts

    /// A page of the contacts that match `search`, most recently seen first (`last_seen_at`,
    /// then id), after `position` when given.
    ///
    /// Phone and e-mail use the CRM's unique indexes. The name is a substring match while the
    /// list is walked in its order: a page costs the contacts seen since the previous page's
    /// last, so a rare name in a large contact book reads the book once (bounded by the
    /// statement timeout); phone or e-mail find a contact at once.
    public static func contacts(_ search: ContactSearch, after position: Position?, limit: Int, in db: isolated PostgresConnection) throws -> Page {
        try planWithValues(db)
        let namePattern = search.name.map(substringPattern)
        let rows = try db.query("""
            SELECT \(Shape.contactItem) AS item, c.last_seen_at AS position_time, c.contact_id AS position_id
            FROM crm_contacts c
            WHERE (\(search.phone)::text IS NULL OR c.phone = \(search.phone))
              AND (\(search.email)::text IS NULL OR c.email_key = lower(\(search.email)))
              AND (\(namePattern)::text IS NULL OR c.name ILIKE \(namePattern) ESCAPE '\\')
              AND (\(position?.time)::timestamptz IS NULL OR (c.last_seen_at, c.contact_id) < (\(position?.time), \(position?.id.uuid)::uuid))
            ORDER BY c.last_seen_at DESC, c.contact_id DESC
            LIMIT \(limit + 1)
            """)
        return try page(rows, limit: limit, list: contactsList)
    }

    /// One contact with its newest interactions and leads (``embeddedLimit`` of each, as pages
    /// whose `next_cursor` continues them); `nil` when no such contact is visible.
    ///
    /// The three statements travel in one round trip.
    public static func contact(_ id: Identifier, in db: isolated PostgresConnection) throws -> [UInt8]? {
        try planWithValues(db)
        let results = try db.pipeline([
            contactQuery(id),
            interactionsQuery(of: id, after: nil, limit: embeddedLimit),
            leadsQuery(LeadFilter(contactID: id), after: nil, limit: embeddedLimit),
        ])
        guard results.count == 3, let contact = results[0].first?.raw("item") else { return nil }
        let interactions = try page(results[1], limit: embeddedLimit, list: interactionsList)
        let leads = try page(results[2], limit: embeddedLimit, list: leadsList)
        return appending([("interactions", interactions.json), ("leads", leads.json)], to: contact)
    }

    /// A page of a contact's interactions, newest first (`occurred_at`, then id); `nil` when no
    /// such contact is visible.
    public static func interactions(of contact: Identifier, after position: Position?, limit: Int, in db: isolated PostgresConnection) throws -> Page? {
        try planWithValues(db)
        let results = try db.pipeline([contactQuery(contact), interactionsQuery(of: contact, after: position, limit: limit)])
        guard results.count == 2, !results[0].isEmpty else { return nil }
        return try page(results[1], limit: limit, list: interactionsList)
    }

    private static func contactQuery(_ id: Identifier) -> PostgresQuery {
        "SELECT \(Shape.contactItem) AS item FROM crm_contacts c WHERE c.contact_id = \(id.uuid)"
    }

    private static func interactionsQuery(of contact: Identifier, after position: Position?, limit: Int) -> PostgresQuery {
        """
        SELECT json_build_object(
            'interaction_id', i.interaction_id, 'contact_id', i.contact_id, 'call_id', i.call_id, 'channel', i.channel,
            'summary', i.summary, 'duration_seconds', i.duration_seconds, 'occurred_at', i.occurred_at
        )::text AS item, i.occurred_at AS position_time, i.interaction_id AS position_id
        FROM interactions i
        WHERE i.contact_id = \(contact.uuid)
          AND (\(position?.time)::timestamptz IS NULL OR (i.occurred_at, i.interaction_id) < (\(position?.time), \(position?.id.uuid)::uuid))
        ORDER BY i.occurred_at DESC, i.interaction_id DESC
        LIMIT \(limit + 1)
        """
    }

    // MARK: Helpers

    /// `%text%` for `ILIKE … ESCAPE '\'`, with the pattern characters of `text` (`%`, `_` and the
    /// escape itself) escaped, so a name typed with them matches them literally.
    static func substringPattern(_ text: String) -> String {
        var pattern = "%"
        for character in text {
            if character == "%" || character == "_" || character == "\\" { pattern.append("\\") }
            pattern.append(character)
        }
        pattern.append("%")
        return pattern
    }

    private static func planWithValues(_ db: isolated PostgresConnection) throws {
        try db.write("SET LOCAL plan_cache_mode = force_custom_plan")
    }

    /// The first `limit` rows' items, and a cursor at the last of them when there are more.
    private static func page(_ rows: PostgresRows, limit: Int, list: String) throws -> Page {
        try Page(rows: rows, limit: limit, list: list) { last in
            Position(time: try last.decode(Timestamp.self, "position_time"), id: Identifier(try last.decode(UUID.self, "position_id"))).cursor(of: list).values
        }
    }

    /// A JSON object Postgres built, with `fields` (name and JSON text) added at its end.
    private static func appending(_ fields: [(name: String, json: [UInt8])], to object: [UInt8]) -> [UInt8] {
        // json_build_object writes `{…}` with nothing after the closing brace.
        var bytes = Array(object.dropLast())
        let isEmpty = bytes.allSatisfy { $0 == UInt8(ascii: "{") || $0 == UInt8(ascii: " ") }
        for (index, field) in fields.enumerated() {
            if index > 0 || !isEmpty { bytes.append(UInt8(ascii: ",")) }
            bytes.append(contentsOf: "\"\(field.name)\":".utf8)
            bytes.append(contentsOf: field.json)
        }
        bytes.append(UInt8(ascii: "}"))
        return bytes
    }
}

/// The JSON shape of an item (`json_build_object(…)` over a row), written once and used by
/// several statements: SQL text fixed in code, never a value.
private struct Shape {
    let sql: String

    /// `LeadItem` of schemas/openapi.yaml, of the row `l` of `leads`.
    static let leadItem = Shape(sql: """
        json_build_object(
            'lead_id', l.lead_id, 'call_id', l.call_id, 'contact_id', l.contact_id, 'name', l.name, 'phone', l.phone,
            'email', l.email, 'intent', l.intent, 'source', l.source, 'notes', l.notes, 'created_at', l.created_at)
        """)

    /// `ContactItem` of schemas/openapi.yaml, of the row `c` of `crm_contacts`.
    static let contactItem = Shape(sql: """
        json_build_object(
            'contact_id', c.contact_id, 'name', c.name, 'phone', c.phone, 'email', c.email,
            'first_seen_at', c.first_seen_at, 'last_seen_at', c.last_seen_at)
        """)

    /// The fields of `CallSummary` (the calls list's item), of a row `s` of `call_sessions` with
    /// `intent`, `sentiment`, `outcome` and `has_lead` beside it.
    static let callSummaryFields = Shape(sql: CallQueries.summaryFields)
}

extension PostgresQuery.StringInterpolation {
    fileprivate mutating func appendInterpolation(_ shape: Shape) {
        appendLiteral(shape.sql)
    }
}
