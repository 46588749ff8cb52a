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
    }

    /// The envelope types whose payload names a call (`call_id`) although their subject is a lead or
    /// a contact: found by the call as well as by their subject.
    static let typesNamingCalls = [LeadCreated.type, InteractionLogged.type]

    /// Events of `target`'s subjects, and leads' and interactions' events naming its calls.
    func eraseCaller(_ target: RedactionTarget) async throws -> Outcome {
        guard !target.isEmpty else { return Outcome() }
        let (tenant, subjects, calls, types) = (target.tenant, target.subjects, target.calls.map(\.description), Self.typesNamingCalls)
        let ids = try await db.query("""
            SELECT event_id FROM event_log
            WHERE tenant_id = \(tenant)
              AND (subject = ANY(\(subjects)::text[]) OR (type = ANY(\(types)::text[]) AND payload->>'call_id' = ANY(\(calls)::text[])))
            ORDER BY event_id
            """).map { try $0.decode(Identifier.self, "event_id") }
        return try await rewrite(ids, scope: .caller)
    }

    /// Events of `tenant` archived with a time in `[from, before)` that concern a call (every event
    /// on a calls, conversations or billing stream; leads and interactions naming a call), erased
    /// in `scope`. Contacts' own events stay: a contact outlives retention of calls.
    func eraseCallEvents(tenant: Identifier, from: Timestamp?, before: Timestamp, scope: ErasureScope) async throws -> Outcome {
        let types = Self.typesNamingCalls
        let ids = try await db.query("""
            SELECT event_id FROM event_log
            WHERE tenant_id = \(tenant) AND time < \(before) AND (\(from)::timestamptz IS NULL OR time >= \(from))
              AND (stream NOT LIKE '%:crm' OR (type = ANY(\(types)::text[]) AND payload->>'call_id' IS NOT NULL))
            ORDER BY event_id
            """).map { try $0.decode(Identifier.self, "event_id") }
        return try await rewrite(ids, scope: scope)
    }

    private func rewrite(_ ids: [Identifier], scope: ErasureScope) async throws -> Outcome {
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
                }
                result.rewritten = changedIDs.count
                return result
            }
            outcome.rewritten += result.rewritten
            outcome.undecodable += result.undecodable
        }
        return outcome
    }
}
