import Foundation
import VoiceCoreEvents
import VoiceCorePostgres
import VoiceCoreTime

/// Rewrites archived events (`event_log`) with their personal data erased
/// (``MessageRegistry/erasePersonalData(type:version:data:scope:)``), so a replay of any projection
/// rebuilds the erasure instead of undoing it.
///
/// The candidates are found first (ids only, one read), then rewritten by primary key in
/// transactions of at most ``ReadModelRedaction/batchSize`` events, each counted in its ledger as
/// it commits. An event already erased re-encodes to itself and is neither rewritten nor counted
/// again, so a crash and a rerun count each event once. An event the registry does not know, or
/// that does not decode (a payload archived by a newer deployment), is left as it was and counted
/// in ``Outcome/undecodable`` (logged by the caller; it cannot hold what this version cannot read).
struct ArchiveRedaction: Sendable {
    let db: PostgresConnection
    let ledger: RedactionLedger
    let registry: MessageRegistry

    struct Outcome: Sendable, Hashable {
        var rewritten = 0
        var undecodable = 0
        /// The events rewritten (erased now; events erased before are not among them).
        var rewrittenIDs: [Identifier] = []
    }

    /// An archived event as the late-event sweep and retention need it: where it was on the
    /// streams, and when it was archived.
    struct ArchivedEvent: Sendable, Hashable {
        var id: Identifier
        var stream: String
        var entryID: String
        var type: String
        var subject: String
        var recordedAt: Timestamp
    }

    /// The envelope types whose payload names a call (`call_id`) although their subject is a lead or
    /// a contact: found by the call as well as by their subject.
    static let typesNamingCalls = [LeadCreated.type, InteractionLogged.type]
    /// ``typesNamingCalls`` as the SQL literal list of migration 0018's partial index
    /// `event_log_crm_call`: spelled out so the planner can prove a query's condition implies the
    /// index's (a bound array would not let it). A test checks both name the same types.
    static let typesNamingCallsSQL = "('voicecore.crm.lead-created', 'voicecore.crm.interaction-logged')"

    /// Events of `target`'s subjects, and leads' and interactions' events naming its calls.
    func eraseCaller(_ target: RedactionTarget) async throws -> Outcome {
        guard !target.isEmpty else { return Outcome() }
        let ids = try await callerEvents(target, archivedSince: nil).map(\.id)
        return try await rewrite(ids, scope: .caller)
    }

    /// The archived events of `target`: by subject (`event_log_subject`), and leads' and
    /// interactions' events naming one of its calls (`event_log_crm_call`); with `since`, only
    /// those archived at or after it. Two index ranges per subject or call, never the tenant's
    /// whole archive.
    func callerEvents(_ target: RedactionTarget, archivedSince since: Timestamp?) async throws -> [ArchivedEvent] {
        guard !target.isEmpty else { return [] }
        return try await db.query(Self.callerEventsQuery(target, archivedSince: since)).map { row in
            ArchivedEvent(id: try row.decode(Identifier.self, "event_id"), stream: try row.decode(String.self, "stream"),
                          entryID: try row.decode(String.self, "entry_id"), type: try row.decode(String.self, "type"),
                          subject: try row.decode(String.self, "subject"), recordedAt: try row.decode(Timestamp.self, "recorded_at"))
        }
    }

    /// The statement of ``callerEvents(_:archivedSince:)`` (its plan is checked by a test).
    static func callerEventsQuery(_ target: RedactionTarget, archivedSince since: Timestamp?) -> PostgresQuery {
        let (tenant, subjects, calls) = (target.tenant, target.subjects, target.calls.map(\.description))
        var query: PostgresQuery = """
            SELECT event_id, stream, entry_id, type, subject, recorded_at FROM event_log
            WHERE tenant_id = \(tenant) AND subject = ANY(\(subjects)::text[]) AND (\(since)::timestamptz IS NULL OR recorded_at >= \(since))
            UNION
            SELECT event_id, stream, entry_id, type, subject, recorded_at FROM event_log
            WHERE tenant_id = \(tenant) AND payload->>'call_id' = ANY(\(calls)::text[]) AND (\(since)::timestamptz IS NULL OR recorded_at >= \(since))
              AND type IN 
            """
        query = PostgresQuery(unsafeSQL: query.sql + typesNamingCallsSQL + " ORDER BY event_id", binds: query.binds)
        return query
    }

    /// A retention pass over the archive: what it rewrote, and the events it found archived late.
    struct CallEventsOutcome: Sendable {
        var outcome: Outcome
        /// Events with a time before the window that were archived at or after `archivedSince`
        /// (late arrivals), with the call each concerns.
        var late: [(event: ArchivedEvent, call: Identifier)]
    }

    /// Events of `tenant` that concern a call (every event on a calls, conversations or billing
    /// stream; leads and interactions naming a call), erased in `scope`: those with a time in
    /// `[from, before)`, and — with `archivedSince` — those with an older time archived at or after
    /// it (a backlog published late carries old times; a window by time alone would pass them by
    /// for good). Contacts' own events stay: a contact outlives retention of calls.
    func eraseCallEvents(tenant: Identifier, from: Timestamp?, before: Timestamp, archivedSince: Timestamp?,
                         scope: ErasureScope) async throws -> CallEventsOutcome {
        let types = Self.typesNamingCalls
        var ids = try await db.query("""
            SELECT event_id FROM event_log
            WHERE tenant_id = \(tenant) AND time < \(before) AND (\(from)::timestamptz IS NULL OR time >= \(from))
              AND (stream NOT LIKE '%:crm' OR (type = ANY(\(types)::text[]) AND payload->>'call_id' IS NOT NULL))
            ORDER BY event_id
            """).map { try $0.decode(Identifier.self, "event_id") }
        var late: [(event: ArchivedEvent, call: Identifier)] = []
        if let from, let archivedSince {
            // The archive's newest rows by recorded_at (BRIN event_log_recorded), old by their time.
            let rows = try await db.query("""
                SELECT event_id, stream, entry_id, type, subject, recorded_at, payload->>'call_id' AS call FROM event_log
                WHERE recorded_at >= \(archivedSince) AND tenant_id = \(tenant) AND time < \(min(from, before))
                  AND (stream NOT LIKE '%:crm' OR (type = ANY(\(types)::text[]) AND payload->>'call_id' IS NOT NULL))
                ORDER BY event_id
                """)
            for row in rows {
                let event = ArchivedEvent(id: try row.decode(Identifier.self, "event_id"), stream: try row.decode(String.self, "stream"),
                                          entryID: try row.decode(String.self, "entry_id"), type: try row.decode(String.self, "type"),
                                          subject: try row.decode(String.self, "subject"), recordedAt: try row.decode(Timestamp.self, "recorded_at"))
                ids.append(event.id)
                // An event of a call carries its id; one that names none (a tenant's own event) has no read model of a call to redo.
                if let text = try row.decode(String?.self, "call"), let call = Identifier(text) { late.append((event, call)) }
            }
        }
        return CallEventsOutcome(outcome: try await rewrite(Array(Set(ids)).sorted(), scope: scope), late: late)
    }

    /// Rewrites the events `ids` erased in `scope`, in batches; `alsoInTransaction` runs in each
    /// batch's transaction with the ids it rewrote (so what must follow a rewrite is recorded with it).
    func rewrite(_ ids: [Identifier], scope: ErasureScope,
                 alsoInTransaction: (@Sendable (isolated PostgresConnection, [Identifier]) throws -> Void)? = nil) async throws -> Outcome {
        var outcome = Outcome()
        let (ledger, registry) = (ledger, registry)
        var start = 0
        while start < ids.count {
            let batch = Array(ids[start..<min(ids.count, start + ReadModelRedaction.batchSize)])
            start += batch.count
            let result = try await db.withTransaction { db -> Outcome in
                var result = Outcome()
                let rows = try db.query("""
                    SELECT event_id, type, version, payload::text AS payload FROM event_log
                    WHERE event_id = ANY(\(batch)::uuid[]) FOR UPDATE
                    """)
                var changedIDs: [Identifier] = [], payloads: [PostgresJSONText] = [], versions: [Int] = []
                for row in rows {
                    let type = try row.decode(String.self, "type")
                    let version = try row.decode(Int.self, "version")
                    let payload = Array(try row.decode(String.self, "payload").utf8)
                    let erased: (data: [UInt8], version: Int)?
                    do {
                        erased = try registry.erasePersonalData(type: type, version: version, data: payload, scope: scope)
                    } catch {
                        result.undecodable += 1
                        continue
                    }
                    guard let erased, erased.data != payload || erased.version != version else { continue }
                    changedIDs.append(try row.decode(Identifier.self, "event_id"))
                    payloads.append(PostgresJSONText(rawJSON: erased.data))
                    versions.append(erased.version)
                }
                if !changedIDs.isEmpty {
                    try db.query("""
                        UPDATE event_log l SET payload = e.payload, version = e.version
                        FROM unnest(\(changedIDs)::uuid[], \(payloads)::json[], \(versions)::int[]) AS e(event_id, payload, version)
                        WHERE l.event_id = e.event_id
                        """)
                    try ledger.add(changedIDs.count, to: .archivedEvents, in: db)
                    try alsoInTransaction?(db, changedIDs)
                }
                result.rewritten = changedIDs.count
                result.rewrittenIDs = changedIDs
                return result
            }
            outcome.rewritten += result.rewritten
            outcome.undecodable += result.undecodable
            outcome.rewrittenIDs += result.rewrittenIDs
        }
        return outcome
    }
}
