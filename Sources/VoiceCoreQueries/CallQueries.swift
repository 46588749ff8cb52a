import VoiceCoreEvents
import VoiceCorePostgres
import VoiceCoreTime

/// The reads behind `GET /v1/calls` and `GET /v1/calls/{call}`: one SQL statement each, the JSON
/// of every answer built by Postgres (`json_build_object`) and passed through unparsed.
///
/// Run them inside ``TenantReads/read(tenant:_:)``: row-level security decides what is visible;
/// the `tenant_id = $1` predicate of each statement is there for the indexes (migration 0012),
/// not for isolation. The statements are public so `voicecore bench api` can run the very same
/// SQL under pgbench.
///
/// Order of the list: newest first by the call's start, ties broken by call id (descending). A
/// call whose `CallStarted` is not projected yet has no start; it sorts as the oldest call
/// (`-infinity`) and moves to its place when its start arrives, so a client paging at that moment
/// may miss it once (it appears on the next listing). The `from`/`to` filters compare the start,
/// so they leave such calls out.
///
/// ```swift
/// let page = try await reads.read(tenant: tenant) { db in
///     try CallQueries.list(db, tenant: tenant, filter: CallFilter(status: "completed"), after: nil, limit: 50)
/// }
/// ```
public enum CallQueries {
    /// The `list` of the list's cursors (a cursor of another list is refused).
    public static let cursorList = "calls"
    /// How many values a calls cursor holds: the start (or `-infinity`) and the call id.
    public static let cursorValues = 2

    /// The statuses a call has in `call_sessions.status`: `initiated` and `in-progress` while it
    /// runs, then its final status.
    public static let statuses = ["initiated", "in-progress"] + CallEnded.FinalStatus.allCases.map(\.rawValue)

    /// One `CallSummary` JSON object, of a row `s` of `call_sessions` with the analytics columns
    /// `intent`, `sentiment`, `outcome` and the `has_lead` flag beside it.
    static let summaryFields = """
        'call_id', s.call_id, 'provider', s.provider, 'provider_call_id', s.provider_call_id, 'direction', s.direction,
        'from', s.from_number, 'to', s.to_number, 'status', s.status, 'started_at', s.started_at, 'answered_at', s.answered_at,
        'ended_at', s.ended_at, 'duration_seconds', s.duration_seconds, 'end_status', s.end_status, 'hung_up_by', s.hung_up_by,
        'intent', s.intent, 'sentiment', s.sentiment, 'outcome', s.outcome, 'has_lead', s.has_lead
        """

    /// `GET /v1/calls`: a page of calls, newest first.
    ///
    /// Parameters: `$1` tenant (uuid), `$2` from (timestamptz, inclusive, or NULL), `$3` to
    /// (timestamptz, exclusive, or NULL), `$4` status, `$5` intent, `$6` direction, `$7` number
    /// (caller or callee) — text or NULL each; `$8`, `$9` the keyset to start after (the previous
    /// page's last `sort_time` and `call_id`; `'infinity'` and `ffffffff-ffff-ffff-ffff-ffffffffffff`
    /// for the first page), `$10` rows to return (`limit + 1`, to know whether a next page exists).
    /// Columns: `item` (the JSON text), `sort_time` and `call_id` (the keyset of the row).
    ///
    /// The page is chosen first (an index scan of `call_sessions_recent` that stops after `$10`
    /// rows, joining each row's analytics), and only its rows get their lead looked up and their
    /// JSON built. Run it with custom plans (see ``list(_:tenant:filter:after:limit:)``): a generic
    /// plan cannot drop the filters that are NULL and sorts the tenant's every call instead.
    public static let listSQL = """
        SELECT json_build_object(\(summaryFields))::text AS item, s.sort_time::text AS sort_time, s.call_id
        FROM (
          SELECT p.*, EXISTS (SELECT FROM leads l WHERE l.tenant_id = p.tenant_id AND l.call_id = p.call_id) AS has_lead
          FROM (
            SELECT s.*, a.intent, a.sentiment, a.outcome, COALESCE(s.started_at, '-infinity'::timestamptz) AS sort_time
            FROM call_sessions s
            LEFT JOIN call_analytics a ON a.tenant_id = s.tenant_id AND a.call_id = s.call_id
            WHERE s.tenant_id = $1
              AND ($2::timestamptz IS NULL OR s.started_at >= $2::timestamptz)
              AND ($3::timestamptz IS NULL OR s.started_at < $3::timestamptz)
              AND ($4::text IS NULL OR s.status = $4::text)
              AND ($5::text IS NULL OR a.intent = $5::text)
              AND ($6::text IS NULL OR s.direction = $6::text)
              AND ($7::text IS NULL OR s.from_number = $7::text OR s.to_number = $7::text)
              AND (COALESCE(s.started_at, '-infinity'::timestamptz), s.call_id) < ($8::timestamptz, $9::uuid)
            ORDER BY COALESCE(s.started_at, '-infinity'::timestamptz) DESC, s.call_id DESC
            LIMIT $10) p) s
        ORDER BY s.sort_time DESC, s.call_id DESC
        """

    /// `GET /v1/calls/{call}`: the call whole, as one `CallDetail` JSON object (column `call`), or
    /// no row. Parameters: `$1` tenant, `$2` call id (uuid).
    ///
    /// Transcript lines of both tracks interleave in the order they were spoken (start offset,
    /// then end offset, track and sequence). `lead` is the call's first lead, `interaction` its
    /// first interaction (the CRM logs one per call), `usage_items` every usage line item the
    /// call produced, oldest first. `turns` are the receptionist's turns in order (`call_turns`),
    /// `outcomes` what came of the call — appointment requests, messages, transfers, voicemails
    /// (`call_outcomes`) — oldest first; both read by the primary keys of migration 0013.
    public static let detailSQL = """
        SELECT json_build_object(\(summaryFields),
          'analytics', CASE WHEN s.has_analytics THEN json_build_object(
              'duration_seconds', s.analytics_duration_seconds, 'outcome', s.outcome, 'intent', s.intent,
              'intent_confidence', s.intent_confidence, 'sentiment', s.sentiment, 'sentiment_score', s.sentiment_score,
              'word_count', s.word_count) END,
          'summary', CASE WHEN s.summary IS NOT NULL THEN json_build_object(
              'text', s.summary, 'key_sentences', COALESCE(s.key_sentences, '[]'::jsonb), 'summarized_at', s.summarized_at) END,
          'transcript', COALESCE((
              SELECT json_agg(json_build_object('track', t.track, 'sequence', t.sequence, 'text', t.text, 'confidence', t.confidence,
                                                'start_offset_ms', t.start_offset_ms, 'end_offset_ms', t.end_offset_ms, 'language', t.language)
                              ORDER BY t.start_offset_ms, t.end_offset_ms, t.track, t.sequence)
              FROM transcripts t WHERE t.tenant_id = s.tenant_id AND t.call_id = s.call_id), '[]'::json),
          'lead', s.lead,
          'interaction', (
              SELECT json_build_object('interaction_id', i.interaction_id, 'contact_id', i.contact_id, 'call_id', i.call_id, 'channel', i.channel,
                                       'summary', i.summary, 'duration_seconds', i.duration_seconds, 'occurred_at', i.occurred_at)
              FROM interactions i WHERE i.tenant_id = s.tenant_id AND i.call_id = s.call_id
              ORDER BY i.occurred_at, i.interaction_id LIMIT 1),
          'usage_items', COALESCE((
              SELECT json_agg(json_build_object('usage_id', u.usage_id, 'meter', u.meter, 'quantity', u.quantity, 'unit', u.unit,
                                                'day', u.day, 'occurred_at', u.occurred_at)
                              ORDER BY u.occurred_at, u.usage_id)
              FROM billing_usage_items u WHERE u.tenant_id = s.tenant_id AND u.call_id = s.call_id), '[]'::json),
          'turns', COALESCE((
              SELECT json_agg(json_build_object('turn', t.turn, 'channel', t.channel, 'heard', t.heard, 'reply', t.reply, 'action', t.action,
                                                'transfer_to', t.transfer_to, 'slots', t.slots, 'intent', t.intent, 'decided_by', t.decided_by,
                                                'replied_at', t.replied_at)
                              ORDER BY t.turn)
              FROM call_turns t WHERE t.tenant_id = s.tenant_id AND t.call_id = s.call_id), '[]'::json),
          'outcomes', COALESCE((
              SELECT json_agg(json_build_object('event_id', o.event_id, 'kind', o.kind, 'turn', o.turn, 'details', o.details,
                                                'occurred_at', o.occurred_at)
                              ORDER BY o.occurred_at, o.event_id)
              FROM call_outcomes o WHERE o.tenant_id = s.tenant_id AND o.call_id = s.call_id), '[]'::json)
        )::text AS call
        FROM (
          SELECT c.*, a.call_id IS NOT NULL AS has_analytics, a.duration_seconds AS analytics_duration_seconds, a.outcome,
                 a.intent, a.intent_confidence, a.sentiment, a.sentiment_score, a.word_count, a.summary, a.key_sentences,
                 a.summarized_at, l.lead, l.lead IS NOT NULL AS has_lead
          FROM call_sessions c
          LEFT JOIN call_analytics a ON a.tenant_id = c.tenant_id AND a.call_id = c.call_id
          LEFT JOIN LATERAL (
            SELECT json_build_object('lead_id', l.lead_id, 'call_id', l.call_id, 'contact_id', l.contact_id, 'name', l.name, 'phone', l.phone,
                                     'email', l.email, 'intent', l.intent, 'source', l.source, 'notes', l.notes,
                                     'created_at', l.created_at) AS lead
            FROM leads l WHERE l.tenant_id = c.tenant_id AND l.call_id = c.call_id
            ORDER BY l.created_at, l.lead_id LIMIT 1) l ON true
          WHERE c.tenant_id = $1 AND c.call_id = $2) s
        """

    /// The keyset before every call: the first page starts after it.
    static let firstKeyset = (time: "infinity", call: "ffffffff-ffff-ffff-ffff-ffffffffffff")

    /// A page of the tenant's calls that pass `filter`, after `cursor` (nil: the first page).
    /// - Throws: ``InvalidCursor`` when the cursor's values are not a calls keyset (a cursor that
    ///   decodes but was tampered with); ``PostgresError`` as the statement fails.
    public static func list(_ db: isolated PostgresConnection, tenant: Identifier, filter: CallFilter,
                            after cursor: PageCursor?, limit: Int) throws -> Page {
        let keyset = try cursor.map(Self.keyset) ?? firstKeyset
        // Optional filters are `$n IS NULL OR …`: only a plan made for the values at hand drops
        // the absent ones and uses the right index (the pipeline prepares statements by name, and
        // after five runs Postgres may settle on one generic plan).
        try db.write("SET LOCAL plan_cache_mode = force_custom_plan")
        let rows = try db.query(PostgresQuery(unsafeSQL: listSQL, binds: [
            PostgresBind(tenant.uuid), PostgresBind(filter.from), PostgresBind(filter.to), PostgresBind(filter.status),
            PostgresBind(filter.intent), PostgresBind(filter.direction), PostgresBind(filter.number),
            PostgresBind(keyset.time), PostgresBind(keyset.call), PostgresBind(limit + 1),
        ]))
        return try Page(rows: rows, limit: limit, list: cursorList) { last in
            [try last.decode(String.self, "sort_time"), try last.decode(String.self, "call_id")]
        }
    }

    /// The call's `CallDetail` JSON, nil when the tenant has no such call (or cannot see it).
    public static func detail(_ db: isolated PostgresConnection, tenant: Identifier, call: Identifier) throws -> [UInt8]? {
        let rows = try db.query(PostgresQuery(unsafeSQL: detailSQL, binds: [PostgresBind(tenant.uuid), PostgresBind(call.uuid)]))
        return rows.first?.raw("call")
    }

    /// Whether `cursor` holds a keyset of this list (check before reading: a cursor that decodes
    /// but was altered is the client's error).
    public static func isKeyset(_ cursor: PageCursor) -> Bool {
        (try? keyset(cursor)) != nil
    }

    /// The keyset a cursor holds, its values checked so a tampered cursor is a 400, not an error
    /// of Postgres: a start time Postgres printed (or `-infinity`) and a call id.
    static func keyset(_ cursor: PageCursor) throws -> (time: String, call: String) {
        guard cursor.list == cursorList, cursor.values.count == cursorValues,
              let call = Identifier(cursor.values[1]) else { throw InvalidCursor() }
        let time = cursor.values[0]
        if time == "-infinity" { return (time, call.description) }
        guard let start = Timestamp(rfc3339: time), cursorTimes.contains(start) else { throw InvalidCursor() }
        return (start.rfc3339, call.description)
    }

    /// Start times a cursor may hold: years 1 to 9999, which Postgres and RFC 3339 both write.
    static let cursorTimes: ClosedRange<Timestamp> = {
        let first = Timestamp(year: 1, month: 1, day: 1, hour: 0, minute: 0, second: 0) ?? Timestamp(microsecondsSinceEpoch: .min)
        let last = Timestamp(year: 9999, month: 12, day: 31, hour: 23, minute: 59, second: 59, microsecond: 999_999) ?? Timestamp(microsecondsSinceEpoch: .max)
        return first...last
    }()
}

/// The filters of `GET /v1/calls`; nil filters nothing.
public struct CallFilter: Sendable, Hashable {
    /// Calls that started at or after this time.
    public var from: Timestamp?
    /// Calls that started before this time.
    public var to: Timestamp?
    /// One of ``CallQueries/statuses``.
    public var status: String?
    /// The intent the AI detected (``Intent`` raw value).
    public var intent: String?
    /// `inbound` or `outbound`.
    public var direction: String?
    /// A phone number in E.164 that is the caller or the callee.
    public var number: String?

    public init(from: Timestamp? = nil, to: Timestamp? = nil, status: String? = nil, intent: String? = nil,
                direction: String? = nil, number: String? = nil) {
        self.from = from
        self.to = to
        self.status = status
        self.intent = intent
        self.direction = direction
        self.number = number
    }
}

/// A cursor whose text decodes but whose values are not a keyset of its list (altered by hand):
/// the edge answers 400 naming `cursor`.
public struct InvalidCursor: Error, Sendable, CustomStringConvertible {
    public init() {}
    public var description: String { "the cursor is not a keyset of this list" }
}
