import Foundation
import VoiceCoreEvents
import VoiceCorePostgres

/// Where the rows a redaction changed are counted: an erasure's or a retention run's `counts`
/// (migration 0017), in the transaction that changes them, so a crash and a rerun never count a row
/// twice (a rerun finds it changed already and changes, and counts, nothing).
enum RedactionLedger: Sendable, Hashable {
    case erasure(Identifier)
    case retentionRun(Identifier)

    /// Adds `count` to `key` of the ledger's counts (inside the caller's transaction).
    func add(_ count: Int, to key: CallerErased.Count, in db: isolated PostgresConnection) throws {
        guard count > 0 else { return }
        let name = key.rawValue
        switch self {
        case .erasure(let id):
            try db.query("""
                UPDATE privacy_erasures
                SET counts = counts || jsonb_build_object(\(name)::text, COALESCE((counts->>\(name)::text)::bigint, 0) + \(count)), updated_at = now()
                WHERE erasure_id = \(id)
                """)
        case .retentionRun(let id):
            try db.query("""
                UPDATE privacy_retention_runs
                SET counts = counts || jsonb_build_object(\(name)::text, COALESCE((counts->>\(name)::text)::bigint, 0) + \(count))
                WHERE run_id = \(id)
                """)
        }
    }
}

/// What a redaction covers: the rows of one tenant that belong to these calls, contacts and leads.
struct RedactionTarget: Sendable, Hashable {
    var tenant: Identifier
    var calls: [Identifier]
    var contacts: [Identifier]
    var leads: [Identifier]

    /// Every id as the `subject` of an envelope (a call's, contact's or lead's events and commands).
    var subjects: [String] { (calls + contacts + leads).map(\.description) }
    var isEmpty: Bool { calls.isEmpty && contacts.isEmpty && leads.isEmpty }
}

/// Redacts the read models in place, in batches of at most ``batchSize`` rows per transaction (no
/// long lock on a table that projections write), each batch counted in its ledger as it commits.
///
/// Every statement changes only rows that still hold what it removes, so running it again (after a
/// crash, or a second retention run) changes and counts nothing. The placeholders are those of
/// ``Erased``: free text becomes `[erased]`, names, numbers and addresses become NULL, transcript
/// lines are deleted (their word counts live on in `call_analytics`). Aggregates —
/// `business_metrics`, `billing_usage`, `billing_usage_items`, the numbers of `call_analytics` — are
/// never touched: a day's calls and a month's bill stay what they were.
struct ReadModelRedaction: Sendable {
    static let batchSize = 500

    let db: PostgresConnection
    let ledger: RedactionLedger

    /// Everything personal of `target` (a caller's erasure; retention of old calls).
    func eraseCaller(_ target: RedactionTarget) async throws {
        guard !target.isEmpty else { return }
        try await eraseCallNumbers(target)
        try await deleteTranscriptLines(target)
        try await eraseTurns(target, scope: .caller)
        try await eraseOutcomes(target, scope: .caller)
        try await eraseSummaries(target)
        try await eraseLeads(target)
        try await eraseContacts(target)
        try await eraseInteractions(target)
        try await deleteProjectionFailures(target)
    }

    /// What was said on `target`'s calls (transcript retention): transcript lines, the turns' words,
    /// the AI's summary, messages taken, interactions' summaries.
    func eraseWords(_ target: RedactionTarget) async throws {
        guard !target.calls.isEmpty else { return }
        try await deleteTranscriptLines(target)
        try await eraseTurns(target, scope: .transcripts)
        try await eraseOutcomes(target, scope: .transcripts)
        try await eraseSummaries(target)
    }

    /// The recordings' addresses of `target`'s calls (recording retention).
    func eraseRecordings(_ target: RedactionTarget) async throws {
        guard !target.calls.isEmpty else { return }
        try await eraseOutcomes(target, scope: .recordings)
    }

    // MARK: Batches

    /// Runs `statement` (which changes at most ``batchSize`` rows) in a transaction of its own,
    /// counting what it changed, until it changes nothing.
    private func repeatBatches(
        _ key: CallerErased.Count?, _ statement: @escaping @Sendable (isolated PostgresConnection) throws -> Int
    ) async throws {
        let ledger = ledger
        while true {
            let changed = try await db.withTransaction { db in
                let changed = try statement(db)
                if let key { try ledger.add(changed, to: key, in: db) }
                return changed
            }
            if changed < Self.batchSize { return }
        }
    }

    private func eraseCallNumbers(_ target: RedactionTarget) async throws {
        guard !target.calls.isEmpty else { return }
        let (tenant, calls, limit) = (target.tenant, target.calls, Self.batchSize)
        try await repeatBatches(.calls) { db in
            try db.query("""
                WITH picked AS (
                  SELECT call_id FROM call_sessions
                  WHERE tenant_id = \(tenant) AND call_id = ANY(\(calls)::uuid[]) AND (from_number IS NOT NULL OR to_number IS NOT NULL)
                  LIMIT \(limit) FOR UPDATE)
                UPDATE call_sessions s SET from_number = NULL, to_number = NULL
                FROM picked WHERE s.tenant_id = \(tenant) AND s.call_id = picked.call_id
                """).affectedRows
        }
    }

    private func deleteTranscriptLines(_ target: RedactionTarget) async throws {
        guard !target.calls.isEmpty else { return }
        let (tenant, calls, limit) = (target.tenant, target.calls, Self.batchSize)
        try await repeatBatches(.transcriptLines) { db in
            try db.query("""
                DELETE FROM transcripts WHERE ctid IN (
                  SELECT ctid FROM transcripts WHERE tenant_id = \(tenant) AND call_id = ANY(\(calls)::uuid[]) LIMIT \(limit) FOR UPDATE)
                """).affectedRows
        }
    }

    private func eraseTurns(_ target: RedactionTarget, scope: ErasureScope) async throws {
        guard !target.calls.isEmpty else { return }
        let (tenant, calls, limit, erased) = (target.tenant, target.calls, Self.batchSize, Erased.text)
        // Who the call was transferred to is the caller's business only in a caller's erasure.
        let transferTo = scope == .caller
        try await repeatBatches(.turns) { db in
            try db.query("""
                WITH picked AS (
                  SELECT call_id, turn FROM call_turns
                  WHERE tenant_id = \(tenant) AND call_id = ANY(\(calls)::uuid[])
                    AND ((heard <> \(erased) AND heard <> '') OR reply <> \(erased) OR slots <> '{}'::jsonb
                         OR (\(transferTo) AND transfer_to IS NOT NULL))
                  LIMIT \(limit) FOR UPDATE)
                UPDATE call_turns t
                SET heard = CASE WHEN t.heard = '' THEN '' ELSE \(erased) END, reply = \(erased), slots = '{}'::jsonb,
                    transfer_to = CASE WHEN \(transferTo) THEN NULL ELSE t.transfer_to END
                FROM picked WHERE t.tenant_id = \(tenant) AND t.call_id = picked.call_id AND t.turn = picked.turn
                """).affectedRows
        }
    }

    private func eraseOutcomes(_ target: RedactionTarget, scope: ErasureScope) async throws {
        guard !target.calls.isEmpty else { return }
        let (tenant, calls, limit, erased, phone) = (target.tenant, target.calls, Self.batchSize, Erased.text, Erased.phone)
        let identity = scope == .caller
        let words = scope != .recordings
        let recordings = scope != .transcripts
        // The same placeholders the archive's events get (VoiceCoreEvents/Privacy), so a replay of
        // the erased archive writes what this writes: who (name, phone) and their words in a
        // caller's erasure; a message's words also under transcript retention; a voicemail's
        // address under recording retention and in a caller's erasure.
        try await repeatBatches(.outcomes) { db in
            try db.query("""
                WITH erased AS (
                  SELECT tenant_id, call_id, event_id, details,
                         CASE kind
                           WHEN 'appointment' THEN CASE WHEN \(identity) THEN details || jsonb_build_object(
                               'name', NULL::text, 'phone', NULL::text, 'preferred_time', \(erased)::text,
                               'reason', CASE WHEN jsonb_typeof(details->'reason') = 'string' THEN \(erased)::text END) ELSE details END
                           WHEN 'message' THEN
                             (CASE WHEN \(identity) THEN details || jsonb_build_object('name', NULL::text, 'phone', NULL::text) ELSE details END)
                             || CASE WHEN \(words) THEN jsonb_build_object('message', \(erased)::text) ELSE '{}'::jsonb END
                           WHEN 'transfer' THEN CASE WHEN \(identity) THEN details || jsonb_build_object(
                               'to', \(phone)::text, 'reason', CASE WHEN jsonb_typeof(details->'reason') = 'string' THEN \(erased)::text END) ELSE details END
                           WHEN 'voicemail' THEN CASE WHEN \(recordings) THEN details || jsonb_build_object('recording_url', NULL::text) ELSE details END
                           ELSE details
                         END AS redacted
                  FROM call_outcomes WHERE tenant_id = \(tenant) AND call_id = ANY(\(calls)::uuid[])),
                picked AS (
                  SELECT o.tenant_id, o.call_id, o.event_id, e.redacted FROM erased e
                  JOIN call_outcomes o USING (tenant_id, call_id, event_id)
                  WHERE e.details <> e.redacted
                  LIMIT \(limit) FOR UPDATE OF o)
                UPDATE call_outcomes o SET details = picked.redacted
                FROM picked WHERE o.tenant_id = picked.tenant_id AND o.call_id = picked.call_id AND o.event_id = picked.event_id
                """).affectedRows
        }
    }

    /// The AI's summary of a call (`call_analytics.summary`, `key_sentences`); the numbers beside it stay.
    private func eraseSummaries(_ target: RedactionTarget) async throws {
        guard !target.calls.isEmpty else { return }
        let (tenant, calls, limit) = (target.tenant, target.calls, Self.batchSize)
        try await repeatBatches(nil) { db in
            try db.query("""
                WITH picked AS (
                  SELECT call_id FROM call_analytics
                  WHERE tenant_id = \(tenant) AND call_id = ANY(\(calls)::uuid[]) AND (summary IS NOT NULL OR key_sentences IS NOT NULL)
                  LIMIT \(limit) FOR UPDATE)
                UPDATE call_analytics a SET summary = NULL, key_sentences = NULL
                FROM picked WHERE a.tenant_id = \(tenant) AND a.call_id = picked.call_id
                """).affectedRows
        }
    }

    /// Leads named in `target` and leads of its calls.
    private func eraseLeads(_ target: RedactionTarget) async throws {
        let (tenant, calls, leads, limit) = (target.tenant, target.calls, target.leads, Self.batchSize)
        try await repeatBatches(.leads) { db in
            try db.query("""
                WITH picked AS (
                  SELECT lead_id FROM leads
                  WHERE tenant_id = \(tenant) AND (lead_id = ANY(\(leads)::uuid[]) OR call_id = ANY(\(calls)::uuid[]))
                    AND (name IS NOT NULL OR phone IS NOT NULL OR email IS NOT NULL OR notes IS NOT NULL)
                  LIMIT \(limit) FOR UPDATE)
                UPDATE leads l SET name = NULL, phone = NULL, email = NULL, notes = NULL
                FROM picked WHERE l.tenant_id = \(tenant) AND l.lead_id = picked.lead_id
                """).affectedRows
        }
    }

    private func eraseContacts(_ target: RedactionTarget) async throws {
        guard !target.contacts.isEmpty else { return }
        let (tenant, contacts, limit) = (target.tenant, target.contacts, Self.batchSize)
        try await repeatBatches(.contacts) { db in
            try db.query("""
                WITH picked AS (
                  SELECT contact_id FROM crm_contacts
                  WHERE tenant_id = \(tenant) AND contact_id = ANY(\(contacts)::uuid[]) AND (name IS NOT NULL OR phone IS NOT NULL OR email IS NOT NULL)
                  LIMIT \(limit) FOR UPDATE)
                UPDATE crm_contacts c SET name = NULL, phone = NULL, email = NULL
                FROM picked WHERE c.tenant_id = \(tenant) AND c.contact_id = picked.contact_id
                """).affectedRows
        }
    }

    /// Interactions of `target`'s contacts or calls: their summary.
    private func eraseInteractions(_ target: RedactionTarget) async throws {
        let (tenant, calls, contacts, limit) = (target.tenant, target.calls, target.contacts, Self.batchSize)
        try await repeatBatches(.interactions) { db in
            try db.query("""
                WITH picked AS (
                  SELECT interaction_id FROM interactions
                  WHERE tenant_id = \(tenant) AND (contact_id = ANY(\(contacts)::uuid[]) OR call_id = ANY(\(calls)::uuid[])) AND summary IS NOT NULL
                  LIMIT \(limit) FOR UPDATE)
                UPDATE interactions i SET summary = NULL
                FROM picked WHERE i.tenant_id = \(tenant) AND i.interaction_id = picked.interaction_id
                """).affectedRows
        }
    }

    /// Entries a projection could not apply keep the entry's fields as they were on the stream
    /// (`projection_failures.fields`): those of `target`'s subjects go.
    private func deleteProjectionFailures(_ target: RedactionTarget) async throws {
        let (tenant, subjects, limit) = (target.tenant.description, target.subjects, Self.batchSize)
        try await repeatBatches(nil) { db in
            try db.query("""
                DELETE FROM projection_failures WHERE ctid IN (
                  SELECT ctid FROM projection_failures
                  WHERE fields->>'tenantid' = \(tenant) AND fields->>'subject' = ANY(\(subjects)::text[]) LIMIT \(limit) FOR UPDATE)
                """).affectedRows
        }
    }
}
