import VoiceCoreEvents
import VoiceCorePostgres

/// archive → `event_log`: every entry of every event stream (known types or not), with its stream,
/// entry id, envelope attributes and payload, for replay and audits. An event id is archived once:
/// a republished event (same id) adds nothing.
public struct ArchiveProjection: Projection {
    public init() {}
    public var name: String { "archive" }
    public var summary: String { "event_log: every event of every stream, for replay" }
    public var categories: [StreamCategory] { StreamCategory.allCases }
    public var eventTypes: Set<String>? { nil }
    public var tables: [String] { ["event_log"] }

    public func apply(_ events: [ProjectedEvent], in db: isolated PostgresConnection) throws {
        let unique = events.uniqued { $0.envelope.id }
        guard !unique.isEmpty else { return }
        try db.query("""
            INSERT INTO event_log (event_id, stream, entry_id, type, version, tenant_id, subject, time, payload)
            SELECT * FROM unnest(\(unique.map(\.envelope.id))::uuid[], \(unique.map(\.stream))::text[],
                                 \(unique.map(\.entryID.description))::text[], \(unique.map(\.envelope.type))::text[],
                                 \(unique.map(\.envelope.version))::int8[], \(unique.map(\.envelope.tenantID))::uuid[],
                                 \(unique.map(\.envelope.subject))::text[], \(unique.map(\.envelope.time))::timestamptz[],
                                 \(unique.map { PostgresJSON(rawJSON: $0.envelope.data) })::jsonb[])
            ON CONFLICT (event_id) DO NOTHING
            """)
    }
}
