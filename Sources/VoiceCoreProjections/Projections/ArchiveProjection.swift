import VoiceCoreEvents
import VoiceCorePostgres

/// archive → `event_log`: every entry of every event stream (known types or not), with its stream,
/// entry id, envelope attributes and payload, for replay and audits. An event id is archived once:
/// a republished event (same id) adds nothing.
///
/// Set-wise through COPY: the batch is copied into a session-local staging table (no indexes,
/// emptied at commit), then moved into `event_log` with one `INSERT … SELECT … ON CONFLICT DO
/// NOTHING` — COPY's text format costs less to send and parse than array parameters.
public struct ArchiveProjection: Projection {
    public init() {}
    public var name: String { "archive" }
    public var summary: String { "event_log: every event of every stream, for replay" }
    public var categories: [StreamCategory] { StreamCategory.allCases }
    public var eventTypes: Set<String>? { nil }
    public var tables: [String] { ["event_log"] }

    public func apply(_ events: [ProjectedEvent], in db: isolated PostgresConnection) throws {
        guard !events.isEmpty else { return }
        // Temporary tables live in the session's own schema (pg_temp), whatever the search_path.
        try db.query("""
            CREATE TEMP TABLE IF NOT EXISTS event_log_staging (
              event_id uuid, stream text, entry_id text, type text, version int, tenant_id uuid, subject text, time timestamptz, payload jsonb
            ) ON COMMIT DELETE ROWS
            """)
        try db.copyFromStdin("COPY pg_temp.event_log_staging FROM STDIN") { writer in
            for event in events.uniqued(by: { $0.envelope.id }) {
                let e = event.envelope
                try writer.appendRow(e.id, event.stream, event.entryID.description, e.type, e.version, e.tenantID, e.subject, e.time, PostgresJSON(rawJSON: e.data))
            }
        }
        try db.query("""
            INSERT INTO event_log (event_id, stream, entry_id, type, version, tenant_id, subject, time, payload)
            SELECT * FROM pg_temp.event_log_staging
            ON CONFLICT (event_id) DO NOTHING
            """)
    }
}
