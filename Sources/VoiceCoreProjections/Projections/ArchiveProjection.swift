import VoiceCoreEvents
import VoiceCorePostgres

/// archive → `event_log`: every entry of every event stream (known types or not), with its stream,
/// entry id, envelope attributes and payload, for replay and audits. An event id is archived once:
/// a republished event (same id) adds nothing.
///
/// Set-wise through COPY straight into `event_log`, behind a savepoint. An event id already
/// archived (a republished event) makes the COPY fail with a unique violation; then, and only
/// then, the batch's archived ids are looked up (one index probe each, in one statement) and the
/// rest is copied. Looking them up for every batch cost 7 % of the projector's Postgres time under
/// `voicecore bench project`, for the five duplicates in 200,000 events. Writing each row once
/// costs less than a staging table plus `INSERT … ON CONFLICT` (measured with 200,000 archived
/// events: 2.0 s of Postgres time for that pair, 1.5 s for the direct COPY; the archive is the
/// largest write of all projections). The COPY is binary: the server takes the uuids, the
/// timestamp and the version as they are instead of parsing their text (200,000 archive rows into
/// `event_log`'s indexes: 1.1–1.3 s against 1.4–1.6 s of text).
///
/// A small batch — what a steady stream of calls brings, a few events a batch — is one
/// `INSERT … SELECT FROM unnest(…) ON CONFLICT (event_id) DO NOTHING` instead: one round trip,
/// where the savepoint, the COPY and its release take four, and without COPY's fixed cost per statement (measured
/// under `voicecore loadgen`: 1.2 ms of Postgres time per COPY of about six rows).
///
/// Only the owner of a partition archives its events (the partition's advisory lock), so no
/// other transaction inserts the same id meanwhile. Should one still do so (an event id reused
/// across partitions), the COPY waits for that transaction and, once it commits, fails with a
/// unique violation; the lookup then finds the committed row and the rest is copied.
public struct ArchiveProjection: Projection {
    public init() {}
    public var name: String { "archive" }
    public var summary: String { "event_log: every event of every stream, for replay" }
    public var categories: [StreamCategory] { StreamCategory.allCases }
    public var eventTypes: Set<String>? { nil }
    public var tables: [String] { ["event_log"] }

    public func apply(_ events: [ProjectedEvent], in db: isolated PostgresConnection) throws {
        let unique = events.uniqued(by: { $0.envelope.id })
        guard !unique.isEmpty else { return }
        if unique.count <= Self.insertedUpTo {
            try insert(unique, in: db)
            return
        }
        // Copied as they are, behind a savepoint: an event id already archived (a republished
        // event: a handful in 200,000) makes the COPY fail with a unique violation, and only then
        // are the archived ids looked up and left out.
        try db.query("SAVEPOINT archive_copy")
        do {
            try copy(unique, in: db)
            try db.query("RELEASE SAVEPOINT archive_copy")
            return
        } catch let error as PostgresError where error.sqlState == "23505" {
            try db.query("ROLLBACK TO SAVEPOINT archive_copy")
            try db.query("RELEASE SAVEPOINT archive_copy")
        }
        let archived = try Set(db.query("SELECT event_id FROM event_log WHERE event_id = ANY(\(unique.map(\.envelope.id))::uuid[])")
            .map { try $0.decode(Identifier.self, "event_id") })
        try copy(unique.filter { !archived.contains($0.envelope.id) }, in: db)
    }

    private func copy(_ events: [ProjectedEvent], in db: isolated PostgresConnection) throws {
        guard !events.isEmpty else { return }
        try db.copyBinaryFromStdin("COPY event_log (event_id, stream, entry_id, type, version, tenant_id, subject, time, payload) FROM STDIN (FORMAT binary)") { writer in
            for event in events {
                let e = event.envelope
                try writer.appendRow(e.id, event.stream, event.entryID, e.type, Int32(clamping: e.version), e.tenantID, e.subject, e.time,
                                     PostgresJSONText(rawJSON: e.data))
            }
        }
    }

    /// Batches of up to this many events are inserted over arrays; larger ones are copied.
    static let insertedUpTo = 100

    private func insert(_ events: [ProjectedEvent], in db: isolated PostgresConnection) throws {
        let envelopes = events.map(\.envelope)
        try db.write("""
            INSERT INTO event_log (event_id, stream, entry_id, type, version, tenant_id, subject, time, payload)
            SELECT * FROM unnest(\(envelopes.map(\.id))::uuid[], \(events.map(\.stream))::text[], \(events.map(\.entryID))::text[],
                                 \(envelopes.map(\.type))::text[], \(envelopes.map(\.version))::int[], \(envelopes.map(\.tenantID))::uuid[],
                                 \(envelopes.map(\.subject))::text[], \(envelopes.map(\.time))::timestamptz[],
                                 \(envelopes.map { PostgresJSONText(rawJSON: $0.data) })::json[])
            ON CONFLICT (event_id) DO NOTHING
            """)
    }
}
