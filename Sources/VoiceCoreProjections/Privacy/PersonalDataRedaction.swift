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
/// Every row ends up holding exactly what its projection writes from the erased archive (the
/// placeholders of ``Erased`` that ``ArchiveRedaction`` leaves in the events), so a replay of any
/// projection after an erasure rebuilds the same rows (`voicecore replay --verify` finds no
/// difference): a call's numbers become `+999`, words said become `[erased]` (an empty utterance
/// stays empty), optional names, numbers and addresses become NULL, a slot keeps its name and loses
/// its value, transcript lines keep their place and timing and lose their text. Holding the
/// placeholder rather than NULL also keeps a late redelivered event from filling the number back
/// in: the calls projection fills only what is still NULL.
///
/// Every statement changes only rows that still hold what it removes, so running it again (after a
/// crash, a second retention run, the late-event sweep) changes and counts nothing. Aggregates —
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
        try await eraseTranscriptLines(target)
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
        try await eraseTranscriptLines(target)
        try await eraseTurns(target, scope: .transcripts)
        try await eraseOutcomes(target, scope: .transcripts)
        try await eraseSummaries(target)
        try await deleteProjectionFailures(target, types: RetentionJob.wordTypes)
    }

    /// The recordings' addresses of `target`'s calls (recording retention).
    func eraseRecordings(_ target: RedactionTarget) async throws {
        guard !target.calls.isEmpty else { return }
        try await eraseOutcomes(target, scope: .recordings)
        try await deleteProjectionFailures(target, types: RetentionJob.recordingTypes)
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

    /// `CallStarted` requires both numbers: an erased one holds ``Erased/phone`` in each.
    private func eraseCallNumbers(_ target: RedactionTarget) async throws {
        guard !target.calls.isEmpty else { return }
        let (tenant, calls, limit, phone) = (target.tenant, target.calls, Self.batchSize, Erased.phone)
        try await repeatBatches(.calls) { db in
            try db.query("""
                WITH picked AS (
                  SELECT call_id FROM call_sessions
                  WHERE tenant_id = \(tenant) AND call_id = ANY(\(calls)::uuid[]) AND (from_number <> \(phone) OR to_number <> \(phone))
                  LIMIT \(limit) FOR UPDATE)
                UPDATE call_sessions s
                SET from_number = CASE WHEN s.from_number IS NULL THEN NULL ELSE \(phone) END,
                    to_number = CASE WHEN s.to_number IS NULL THEN NULL ELSE \(phone) END
                FROM picked WHERE s.tenant_id = \(tenant) AND s.call_id = picked.call_id
                """).affectedRows
        }
    }

    /// A transcript line keeps its place, timing and confidence; its text becomes ``Erased/text``
    /// (an empty one stays empty), as the erased `TranscriptChunk` it was projected from.
    private func eraseTranscriptLines(_ target: RedactionTarget) async throws {
        guard !target.calls.isEmpty else { return }
        let (tenant, calls, limit, erased) = (target.tenant, target.calls, Self.batchSize, Erased.text)
        try await repeatBatches(.transcriptLines) { db in
            try db.query("""
                UPDATE transcripts SET text = \(erased) WHERE ctid IN (
                  SELECT ctid FROM transcripts
                  WHERE tenant_id = \(tenant) AND call_id = ANY(\(calls)::uuid[]) AND text <> \(erased) AND text <> ''
                  LIMIT \(limit) FOR UPDATE)
                """).affectedRows
        }
    }

    /// As the erased `ReceptionistReplied`: what was heard (unless nothing was) and the reply become
    /// ``Erased/text``, each slot's value too (its name stays); on a caller's erasure a transfer
    /// number becomes ``Erased/phone``.
    private func eraseTurns(_ target: RedactionTarget, scope: ErasureScope) async throws {
        guard !target.calls.isEmpty else { return }
        let (tenant, calls, limit, erased, phone) = (target.tenant, target.calls, Self.batchSize, Erased.text, Erased.phone)
        // Who the call was transferred to is the caller's business only in a caller's erasure.
        let transferTo = scope == .caller
        try await repeatBatches(.turns) { db in
            try db.query("""
                WITH picked AS (
                  SELECT call_id, turn FROM call_turns t
                  WHERE tenant_id = \(tenant) AND call_id = ANY(\(calls)::uuid[])
                    AND ((heard <> \(erased) AND heard <> '') OR reply <> \(erased)
                         OR EXISTS (SELECT 1 FROM jsonb_each_text(t.slots) s WHERE s.value <> \(erased) AND s.value <> '')
                         OR (\(transferTo) AND transfer_to <> \(phone)))
                  LIMIT \(limit) FOR UPDATE)
                UPDATE call_turns t
                SET heard = CASE WHEN t.heard = '' THEN '' ELSE \(erased) END, reply = \(erased),
                    slots = COALESCE((SELECT jsonb_object_agg(s.key, CASE WHEN s.value = '' THEN '' ELSE \(erased) END)
                                      FROM jsonb_each_text(t.slots) s), '{}'::jsonb),
                    transfer_to = CASE WHEN \(transferTo) AND t.transfer_to IS NOT NULL THEN \(phone) ELSE t.transfer_to END
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
                               'reason', CASE WHEN details->>'reason' = '' THEN '' WHEN jsonb_typeof(details->'reason') = 'string' THEN \(erased)::text END)
                             ELSE details END
                           WHEN 'message' THEN
                             (CASE WHEN \(identity) THEN details || jsonb_build_object('name', NULL::text, 'phone', NULL::text) ELSE details END)
                             || CASE WHEN \(words) THEN jsonb_build_object('message', \(erased)::text) ELSE '{}'::jsonb END
                           WHEN 'transfer' THEN CASE WHEN \(identity) THEN details || jsonb_build_object(
                               'to', \(phone)::text,
                               'reason', CASE WHEN details->>'reason' = '' THEN '' WHEN jsonb_typeof(details->'reason') = 'string' THEN \(erased)::text END)
                             ELSE details END
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

    /// The AI's summary of a call (`call_analytics.summary`, `key_sentences`) as the erased
    /// `CallSummarized`: ``Erased/text`` for the summary and for each key sentence (their number
    /// stays); the numbers beside them stay.
    private func eraseSummaries(_ target: RedactionTarget) async throws {
        guard !target.calls.isEmpty else { return }
        let (tenant, calls, limit, erased) = (target.tenant, target.calls, Self.batchSize, Erased.text)
        try await repeatBatches(.summaries) { db in
            try db.query("""
                WITH picked AS (
                  SELECT call_id FROM call_analytics a
                  WHERE tenant_id = \(tenant) AND call_id = ANY(\(calls)::uuid[])
                    AND ((summary <> \(erased) AND summary <> '')
                         OR (jsonb_typeof(key_sentences) = 'array'
                             AND EXISTS (SELECT 1 FROM jsonb_array_elements_text(a.key_sentences) k WHERE k <> \(erased) AND k <> '')))
                  LIMIT \(limit) FOR UPDATE)
                UPDATE call_analytics a
                SET summary = CASE WHEN a.summary IS NULL OR a.summary = '' THEN a.summary ELSE \(erased) END,
                    key_sentences = CASE WHEN jsonb_typeof(a.key_sentences) = 'array' THEN COALESCE(
                        (SELECT jsonb_agg(CASE WHEN k.value = '' THEN '' ELSE \(erased) END ORDER BY k.position)
                         FROM jsonb_array_elements_text(a.key_sentences) WITH ORDINALITY AS k(value, position)), '[]'::jsonb)
                      ELSE a.key_sentences END
                FROM picked WHERE a.tenant_id = \(tenant) AND a.call_id = picked.call_id
                """).affectedRows
        }
    }

    /// Leads named in `target` and leads of its calls, as the erased `LeadCreated`: the name (the
    /// schema requires one of name, phone, e-mail) and notes become ``Erased/text``, phone and
    /// e-mail NULL.
    private func eraseLeads(_ target: RedactionTarget) async throws {
        let (tenant, calls, leads, limit, erased) = (target.tenant, target.calls, target.leads, Self.batchSize, Erased.text)
        try await repeatBatches(.leads) { db in
            try db.query("""
                WITH picked AS (
                  SELECT lead_id FROM leads
                  WHERE tenant_id = \(tenant) AND (lead_id = ANY(\(leads)::uuid[]) OR call_id = ANY(\(calls)::uuid[]))
                    AND (name IS DISTINCT FROM \(erased) OR phone IS NOT NULL OR email IS NOT NULL OR (notes <> \(erased) AND notes <> ''))
                  LIMIT \(limit) FOR UPDATE)
                UPDATE leads l SET name = \(erased), phone = NULL, email = NULL,
                                   notes = CASE WHEN l.notes IS NULL OR l.notes = '' THEN l.notes ELSE \(erased) END
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

    /// Interactions of `target`'s contacts or calls: their summary becomes ``Erased/text`` (an empty
    /// one stays empty), as the erased `InteractionLogged`.
    private func eraseInteractions(_ target: RedactionTarget) async throws {
        let (tenant, calls, contacts, limit, erased) = (target.tenant, target.calls, target.contacts, Self.batchSize, Erased.text)
        try await repeatBatches(.interactions) { db in
            try db.query("""
                WITH picked AS (
                  SELECT interaction_id FROM interactions
                  WHERE tenant_id = \(tenant) AND (contact_id = ANY(\(contacts)::uuid[]) OR call_id = ANY(\(calls)::uuid[]))
                    AND summary <> \(erased) AND summary <> ''
                  LIMIT \(limit) FOR UPDATE)
                UPDATE interactions i SET summary = \(erased)
                FROM picked WHERE i.tenant_id = \(tenant) AND i.interaction_id = picked.interaction_id
                """).affectedRows
        }
    }

    /// Entries a projection could not apply keep the entry's fields as they were on the stream
    /// (`projection_failures.fields`): those of `target`'s subjects go (with `types`, only entries
    /// of those types: a retention scope's).
    private func deleteProjectionFailures(_ target: RedactionTarget, types: Set<String>? = nil) async throws {
        let (tenant, subjects, limit) = (target.tenant.description, target.subjects, Self.batchSize)
        let typeList = types.map { Array($0).sorted() }
        try await repeatBatches(.projectionFailures) { db in
            try db.query("""
                DELETE FROM projection_failures WHERE ctid IN (
                  SELECT ctid FROM projection_failures
                  WHERE fields->>'tenantid' = \(tenant) AND fields->>'subject' = ANY(\(subjects)::text[])
                    AND (\(typeList)::text[] IS NULL OR type = ANY(\(typeList)::text[]))
                  LIMIT \(limit) FOR UPDATE)
                """).affectedRows
        }
    }
}
