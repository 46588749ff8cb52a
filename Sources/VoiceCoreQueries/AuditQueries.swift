import VoiceCoreEvents
import VoiceCorePostgres
import VoiceCoreTime

/// The read behind `GET /v1/audit`: the tenant's audit trail (`audit_logs`, migration 0010), newest
/// first, one SQL statement, each item's JSON built by Postgres and passed through.
///
/// Run it inside ``TenantReads/read(tenant:_:)``: row-level security decides what is visible; the
/// `tenant_id = $1` predicate is there for the index (`audit_logs_tenant_at`: tenant, time
/// descending, request id descending), not for isolation.
///
/// An item (`AuditEntry` in the OpenAPI document):
/// `{"request_id", "at", "actor", "api_key_id", "action", "target", "outcome", "details"}` — the
/// request id the edge answered in `X-Request-Id`, when the request was accepted, who asked
/// (`admin`, `operator` or `api_key` with the key's public id), what it asked for and changed,
/// `succeeded` or `accepted`, and the names of what changed.
///
/// ```swift
/// let page = try await reads.read(tenant: tenant) { db in
///     try AuditQueries.list(db, tenant: tenant, filter: AuditFilter(action: "api_key.rotate"), after: nil, limit: 50)
/// }
/// ```
public enum AuditQueries {
    /// The `list` of the list's cursors (a cursor of another list is refused).
    public static let cursorList = "audit"
    /// How many values an audit cursor holds: the time in microseconds since the epoch and the request id.
    public static let cursorValues = 2

    /// Parameters: `$1` tenant, `$2` from (inclusive) and `$3` to (exclusive), timestamptz or NULL;
    /// `$4` action, `$5` actor (text or NULL); `$6` request id (uuid or NULL); `$7` and `$8` the
    /// keyset to start after (microseconds since the epoch, int8, and request id; NULL for the
    /// first page); `$9` rows to return (`limit + 1`, to know whether a next page exists).
    /// Columns: `item` (the JSON text), `at_us` and `request_id` (the row's keyset).
    public static let listSQL = """
        SELECT json_build_object('request_id', a.request_id, 'at', a.at, 'actor', a.actor, 'api_key_id', a.api_key_id,
                                 'action', a.action, 'target', a.target, 'outcome', a.outcome, 'details', a.details)::text AS item,
               ((extract(epoch FROM a.at) * 1000000)::int8)::text AS at_us, a.request_id::text AS request_id
        FROM audit_logs a
        WHERE a.tenant_id = $1::uuid
          AND ($2::timestamptz IS NULL OR a.at >= $2::timestamptz)
          AND ($3::timestamptz IS NULL OR a.at < $3::timestamptz)
          AND ($4::text IS NULL OR a.action = $4::text)
          AND ($5::text IS NULL OR a.actor = $5::text)
          AND ($6::uuid IS NULL OR a.request_id = $6::uuid)
          AND ($7::int8 IS NULL OR (a.at, a.request_id) < ('epoch'::timestamptz + $7::int8 * interval '1 microsecond', $8::uuid))
        ORDER BY a.at DESC, a.request_id DESC
        LIMIT $9
        """

    /// A page of the tenant's audit trail that passes `filter`, after `cursor` (nil: the first page).
    /// - Throws: ``AuditCursorError`` when the cursor's values are not an audit keyset (see
    ///   ``isKeyset(_:)``); ``PostgresError`` as the statement fails.
    public static func list(_ db: isolated PostgresConnection, tenant: Identifier, filter: AuditFilter,
                            after cursor: PageCursor?, limit: Int) throws -> Page {
        var keyset: (microseconds: Int64, requestID: Identifier)?
        if let cursor {
            guard let position = Self.keyset(cursor) else { throw AuditCursorError() }
            keyset = position
        }
        // Optional filters are `$n IS NULL OR …`: only a plan made for the values at hand drops
        // the absent ones and walks the index in order.
        try db.write("SET LOCAL plan_cache_mode = force_custom_plan")
        let rows = try db.query(PostgresQuery(unsafeSQL: listSQL, binds: [
            PostgresBind(tenant.uuid), PostgresBind(filter.from), PostgresBind(filter.to), PostgresBind(filter.action),
            PostgresBind(filter.actor), PostgresBind(filter.requestID?.uuid), PostgresBind(keyset?.microseconds),
            PostgresBind(keyset?.requestID.uuid), PostgresBind(limit + 1),
        ]))
        return try Page(rows: rows, limit: limit, list: cursorList) { last in
            [try last.decode(String.self, "at_us"), try last.decode(String.self, "request_id")]
        }
    }

    /// Whether `cursor` holds a keyset of this list (check before reading: a cursor that decodes
    /// but was altered is the client's error, a 400).
    public static func isKeyset(_ cursor: PageCursor) -> Bool {
        keyset(cursor) != nil
    }

    /// The keyset a cursor holds: a time (microseconds since the epoch, within years 1 to 9999)
    /// and a request id.
    static func keyset(_ cursor: PageCursor) -> (microseconds: Int64, requestID: Identifier)? {
        guard cursor.list == cursorList, cursor.values.count == cursorValues,
              let microseconds = Int64(cursor.values[0]), cursorMicroseconds.contains(microseconds),
              let requestID = Identifier(cursor.values[1]) else { return nil }
        return (microseconds, requestID)
    }

    /// Years 1 to 9999 in microseconds since the epoch: the times Postgres and RFC 3339 both write.
    static let cursorMicroseconds: ClosedRange<Int64> = -62_135_596_800_000_000...253_402_300_799_999_999
}

/// The filters of `GET /v1/audit`; nil filters nothing.
public struct AuditFilter: Sendable, Hashable {
    /// Entries at or after this time.
    public var from: Timestamp?
    /// Entries before this time.
    public var to: Timestamp?
    /// One action, e.g. `api_key.rotate`.
    public var action: String?
    /// One kind of actor: `admin`, `operator` or `api_key`.
    public var actor: String?
    /// The entry of one request (the `X-Request-Id` an answer carried).
    public var requestID: Identifier?

    public init(from: Timestamp? = nil, to: Timestamp? = nil, action: String? = nil, actor: String? = nil, requestID: Identifier? = nil) {
        self.from = from
        self.to = to
        self.action = action
        self.actor = actor
        self.requestID = requestID
    }
}

/// A cursor whose text decodes but whose values are not an audit keyset (altered by hand): the
/// edge answers 400 naming `cursor`.
public struct AuditCursorError: Error, Sendable, CustomStringConvertible {
    public init() {}
    public var description: String { "the cursor is not a keyset of the audit trail" }
}
