import Foundation
import Logging
import Synchronization
import VoiceCoreBus
import VoiceCoreEvents
import VoiceCorePostgres
import VoiceCoreTenants
import VoiceCoreTime

/// Erases a caller everywhere the platform holds them: a resumable state machine over a row of
/// `privacy_erasures` (migration 0017), stored by ``ErasureRequests`` and advanced here.
///
/// ## API (for the CLI, the edge and `voicecore up`)
/// ```swift
/// let eraser = CallerEraser(postgres: db, streams: streamErasure, publisher: publisher, requests: requests)
/// // One step as far as it goes now (never blocks on a wait): the state it reached.
/// let progress = try await eraser.advance(erasureID)          // .busy when another process runs it
/// // To the end, polling while it waits (the CLI's `voicecore privacy erase`):
/// let done = try await eraser.complete(erasureID, poll: .seconds(1)) { progress in print(progress.state) }
/// ```
/// ``PrivacyService`` advances every open erasure each second and runs ``RetentionJob`` hourly.
///
/// ## States (each saved as it is reached; each step idempotent)
/// 1. `pending`: the caller's set is resolved from the sealed identifier — calls from or to the
///    phone number, contacts and leads by phone, e-mail or contact id, then the leads of those
///    contacts and calls, the contacts of those leads, the calls of those leads and of the
///    contacts' interactions — and stored (`call_ids`, `contact_ids`, `lead_ids`) → `waiting`.
/// 2. `waiting`: until no call of the set is in progress (not ended and started less than 4 h ago)
///    or ended less than 60 s ago; then the heads of the streams the set's entries live on are
///    captured once (`stream_marks`), and it waits until every reader (consumer groups, projection
///    checkpoints) has processed up to them. `waiting_for` says what it waits for → `erasing`.
/// 3. `erasing`: the read models (``ReadModelRedaction``) and the archive (``ArchiveRedaction``)
///    are redacted in batches of at most 500 rows per transaction → `purging`.
/// 4. `purging`: the set's stream entries and dead letters are deleted, its outbound webhook
///    deliveries (queued or failed; counted as `redis_keys` and `dead_letters`), its CRM index claims
///    and per-call service state removed, and Redis rewrites its append-only file (``StreamErasure``);
///    then `CallerErased` is published (its event id derived from the erasure id: a rerun
///    republishes the same event, deduplicated), and one transaction writes the completion audit row
///    (request id derived from the erasure id), sets `completed` and drops the sealed identifier.
///
/// Counts are added in the transaction of the rows they count; a step rerun after a crash finds
/// its rows changed already and counts nothing again. One process at a time runs an erasure: a
/// Postgres advisory lock per erasure, held on the eraser's connection while it runs (a killed
/// process's lock goes with its connection). Every libpq call runs on the connection's own thread.
public final class CallerEraser: Sendable {
    /// How long a call counts as in progress without an end (a lost `CallEnded` must not block an
    /// erasure forever).
    public static let callInProgressLimit: Duration = .seconds(4 * 3600)
    /// How long after a call's end its last events (summary, usage) may still be published.
    public static let settleTime: Duration = .seconds(60)

    let db: PostgresConnection
    let streams: StreamErasure
    let publisher: Publisher
    let requests: ErasureRequests
    let registry: MessageRegistry
    let logger: Logger
    let now: @Sendable () -> Timestamp
    /// Tests only: ``advance(_:)`` returns on reaching this state, as a process killed there would
    /// leave the erasure (its work up to the state saved, nothing after it done).
    let stopsAt: ErasureStatus.State?
    /// Erasures this process runs now (the advisory lock is re-entrant within one session).
    private let running = Mutex<Set<Identifier>>([])

    /// - Parameters:
    ///   - postgres: a connection of the eraser's own (it holds the erasures' advisory locks).
    ///   - streams: the Redis side (``StreamErasure`` of the bus).
    ///   - publisher: publishes `CallerErased`.
    ///   - requests: opens the sealed identifier.
    ///   - now: the clock the in-progress and settle rules read (tests move it).
    public convenience init(postgres: PostgresConnection, streams: StreamErasure, publisher: Publisher, requests: ErasureRequests,
                registry: MessageRegistry = .standard, logger: Logger = Logger(label: "voicecore.privacy.eraser"),
                now: @escaping @Sendable () -> Timestamp = { .now }) {
        self.init(postgres: postgres, streams: streams, publisher: publisher, requests: requests, registry: registry, logger: logger, now: now, stopsAt: nil)
    }

    init(postgres: PostgresConnection, streams: StreamErasure, publisher: Publisher, requests: ErasureRequests,
         registry: MessageRegistry, logger: Logger, now: @escaping @Sendable () -> Timestamp, stopsAt: ErasureStatus.State?) {
        self.stopsAt = stopsAt
        self.db = postgres
        self.streams = streams
        self.publisher = publisher
        self.requests = requests
        self.registry = registry
        self.logger = logger
        self.now = now
    }

    /// Where an erasure stands after ``advance(_:)``.
    public struct Progress: Sendable, Hashable {
        public var erasureID: Identifier
        public var tenantID: Identifier
        public var state: ErasureStatus.State
        public var waitingFor: String?
        public var counts: [String: Int]
        /// False when another process (or task) runs this erasure now: nothing was done here.
        public var ranHere: Bool
    }

    /// Why an erasure cannot go on.
    public struct EraserError: Error, Sendable, CustomStringConvertible {
        public var description: String
    }

    /// Runs `erasure` as far as it can go now: through every state whose work can be done,
    /// stopping at `waiting` while it must wait, or at `completed`. Never waits itself.
    /// - Throws: ``EraserError`` for an unknown erasure or an identifier that cannot be opened;
    ///   Postgres and Redis failures (the state reached so far is saved: advance again).
    @discardableResult
    public func advance(_ erasure: Identifier) async throws -> Progress {
        let claimed = running.withLock { $0.insert(erasure).inserted }
        guard claimed else { return try await progress(erasure, ranHere: false) }
        defer { _ = running.withLock { $0.remove(erasure) } }
        let locked = try await db.query("SELECT pg_try_advisory_lock(hashtextextended(\(Self.lockKey(erasure)), 0)) AS locked")[0].decode(Bool.self, "locked")
        guard locked else { return try await progress(erasure, ranHere: false) }
        do {
            let result = try await run(erasure)
            _ = try? await db.query("SELECT pg_advisory_unlock(hashtextextended(\(Self.lockKey(erasure)), 0))")
            return result
        } catch {
            _ = try? await db.query("""
                UPDATE privacy_erasures SET last_error = \(String(describing: error).prefix(500).description), updated_at = now()
                WHERE erasure_id = \(erasure)
                """)
            _ = try? await db.query("SELECT pg_advisory_unlock(hashtextextended(\(Self.lockKey(erasure)), 0))")
            throw error
        }
    }

    /// Advances `erasure` until it completes, sleeping `poll` between attempts while it waits (or
    /// while another process runs it); `onProgress` sees each state change.
    @discardableResult
    public func complete(_ erasure: Identifier, poll: Duration = .seconds(1),
                         onProgress: @Sendable (Progress) -> Void = { _ in }) async throws -> Progress {
        var last: (ErasureStatus.State, String?)?
        while true {
            let progress = try await advance(erasure)
            if last.map({ $0.0 != progress.state || $0.1 != progress.waitingFor }) ?? true {
                onProgress(progress)
                last = (progress.state, progress.waitingFor)
            }
            if progress.state == .completed { return progress }
            try await Task.sleep(for: poll)
        }
    }

    /// The erasures not completed yet, oldest first (``PrivacyService``'s work list).
    public func openErasures(limit: Int = 100) async throws -> [Identifier] {
        try await db.query("""
            SELECT erasure_id FROM privacy_erasures WHERE state <> 'completed' ORDER BY requested_at, erasure_id LIMIT \(limit)
            """).map { try $0.decode(Identifier.self, "erasure_id") }
    }

    static func lockKey(_ erasure: Identifier) -> String { "voicecore.privacy.erasure.\(erasure)" }

    // MARK: The state machine

    private struct Row: Sendable {
        var tenant: Identifier
        var kind: ErasureIdentifier.Kind
        var hash: String
        var sealed: [UInt8]?
        var state: ErasureStatus.State
        var actor: String
        var apiKeyID: String?
        var target: RedactionTarget
        var marks: [StreamMark]?
    }

    private func run(_ erasure: Identifier) async throws -> Progress {
        while true {
            let row = try await load(erasure)
            if let stopsAt, row.state == stopsAt { return try await progress(erasure, ranHere: true) }
            switch row.state {
            case .pending:
                try await resolve(erasure, row)
            case .waiting:
                if let reason = try await waitReason(erasure, row) {
                    try await db.query("""
                        UPDATE privacy_erasures SET waiting_for = \(reason), updated_at = now() WHERE erasure_id = \(erasure) AND state = 'waiting'
                        """)
                    return try await progress(erasure, ranHere: true)
                }
                try await moveOn(erasure, from: .waiting, to: .erasing)
            case .erasing:
                try await redact(erasure, row)
                try await moveOn(erasure, from: .erasing, to: .purging)
            case .purging:
                try await purge(erasure, row)
                try await finish(erasure, row)
            case .completed:
                return try await progress(erasure, ranHere: true)
            }
        }
    }

    private func load(_ erasure: Identifier) async throws -> Row {
        let rows = try await db.query("""
            SELECT tenant_id, identifier_kind, identifier_hash, identifier_sealed, state, actor, api_key_id,
                   COALESCE(array_to_json(call_ids), '[]')::text AS calls, COALESCE(array_to_json(contact_ids), '[]')::text AS contacts,
                   COALESCE(array_to_json(lead_ids), '[]')::text AS leads, stream_marks::text AS marks
            FROM privacy_erasures WHERE erasure_id = \(erasure)
            """)
        guard let row = rows.first else { throw EraserError(description: "no erasure \(erasure)") }
        let kindText = try row.decode(String.self, "identifier_kind"), stateText = try row.decode(String.self, "state")
        guard let kind = ErasureIdentifier.Kind(rawValue: kindText), let state = ErasureStatus.State(rawValue: stateText) else {
            throw EraserError(description: "erasure \(erasure) has an unknown identifier kind or state (\(kindText), \(stateText))")
        }
        let tenant = try row.decode(Identifier.self, "tenant_id")
        var marks: [StreamMark]?
        if let text = try row.decode(String?.self, "marks") {
            marks = try JSONDecoder().decode([StreamMark].self, from: Data(text.utf8))
        }
        return Row(tenant: tenant, kind: kind, hash: try row.decode(String.self, "identifier_hash"),
                   sealed: try row.decode(PostgresBytes?.self, "identifier_sealed")?.bytes, state: state,
                   actor: try row.decode(String.self, "actor"), apiKeyID: try row.decode(String?.self, "api_key_id"),
                   target: RedactionTarget(tenant: tenant, calls: try Self.ids(row.decode(String.self, "calls")),
                                           contacts: try Self.ids(row.decode(String.self, "contacts")),
                                           leads: try Self.ids(row.decode(String.self, "leads"))),
                   marks: marks)
    }

    private static func ids(_ json: String) throws -> [Identifier] {
        try JSONDecoder().decode([Identifier].self, from: Data(json.utf8))
    }

    private func progress(_ erasure: Identifier, ranHere: Bool) async throws -> Progress {
        let rows = try await db.query("""
            SELECT tenant_id, state, waiting_for, counts::text AS counts FROM privacy_erasures WHERE erasure_id = \(erasure)
            """)
        guard let row = rows.first else { throw EraserError(description: "no erasure \(erasure)") }
        let stateText = try row.decode(String.self, "state")
        guard let state = ErasureStatus.State(rawValue: stateText) else { throw EraserError(description: "erasure \(erasure) has an unknown state \(stateText)") }
        let counts = try JSONDecoder().decode([String: Int].self, from: Data(try row.decode(String.self, "counts").utf8))
        return Progress(erasureID: erasure, tenantID: try row.decode(Identifier.self, "tenant_id"), state: state,
                        waitingFor: try row.decode(String?.self, "waiting_for"), counts: counts, ranHere: ranHere)
    }

    private func moveOn(_ erasure: Identifier, from: ErasureStatus.State, to: ErasureStatus.State) async throws {
        try await db.query("""
            UPDATE privacy_erasures SET state = \(to.rawValue), waiting_for = NULL, last_error = NULL, updated_at = now()
            WHERE erasure_id = \(erasure) AND state = \(from.rawValue)
            """)
        logger.info("caller erasure moved on", metadata: ["erasure": "\(erasure)", "state": "\(to.rawValue)"])
    }

    // MARK: pending → waiting

    private func resolve(_ erasure: Identifier, _ row: Row) async throws {
        guard let sealed = row.sealed else {
            throw EraserError(description: "erasure \(erasure) has no sealed identifier: it cannot be resolved")
        }
        let identifier: ErasureIdentifier
        do {
            identifier = try requests.openIdentifier(sealed, kind: row.kind, tenant: row.tenant)
        } catch {
            throw EraserError(description: "the identifier of erasure \(erasure) does not open with this master key (\(error))")
        }
        let (phone, email, contact): (String?, String?, Identifier?)
        switch identifier {
        case .phone(let value): (phone, email, contact) = (value, nil, nil)
        case .email(let value): (phone, email, contact) = (nil, value, nil)
        case .contact(let value): (phone, email, contact) = (nil, nil, value)
        }
        let tenant = row.tenant
        _ = try await db.withTransaction { db in
            // One statement: the caller's own rows, then one round of what hangs off them.
            try db.query("""
                WITH base_calls AS (
                  SELECT call_id FROM call_sessions WHERE tenant_id = \(tenant) AND \(phone)::text IS NOT NULL AND from_number = \(phone)
                  UNION SELECT call_id FROM call_sessions WHERE tenant_id = \(tenant) AND \(phone)::text IS NOT NULL AND direction = 'outbound' AND to_number = \(phone)),
                base_contacts AS (
                  SELECT contact_id FROM crm_contacts WHERE tenant_id = \(tenant)
                    AND ((\(phone)::text IS NOT NULL AND phone = \(phone)) OR (\(email)::text IS NOT NULL AND email_key = \(email))
                         OR contact_id = \(contact)::uuid)),
                base_leads AS (
                  SELECT lead_id FROM leads WHERE tenant_id = \(tenant)
                    AND ((\(phone)::text IS NOT NULL AND phone = \(phone)) OR (\(email)::text IS NOT NULL AND lower(email) = \(email))
                         OR contact_id = \(contact)::uuid)),
                all_leads AS (
                  SELECT lead_id FROM base_leads
                  UNION SELECT lead_id FROM leads WHERE tenant_id = \(tenant)
                    AND (contact_id IN (SELECT contact_id FROM base_contacts) OR call_id IN (SELECT call_id FROM base_calls))
                  UNION SELECT lead_id FROM crm_lead_contacts WHERE tenant_id = \(tenant) AND contact_id IN (SELECT contact_id FROM base_contacts)),
                all_contacts AS (
                  SELECT contact_id FROM base_contacts
                  UNION SELECT contact_id FROM leads WHERE tenant_id = \(tenant) AND contact_id IS NOT NULL AND lead_id IN (SELECT lead_id FROM all_leads)
                  UNION SELECT contact_id FROM crm_lead_contacts WHERE tenant_id = \(tenant) AND contact_id IS NOT NULL
                    AND lead_id IN (SELECT lead_id FROM all_leads)
                  UNION SELECT contact_id FROM crm_contacts WHERE tenant_id = \(tenant) AND contact_id = \(contact)::uuid),
                all_calls AS (
                  SELECT call_id FROM base_calls
                  UNION SELECT call_id FROM leads WHERE tenant_id = \(tenant) AND call_id IS NOT NULL AND lead_id IN (SELECT lead_id FROM all_leads)
                  UNION SELECT call_id FROM interactions WHERE tenant_id = \(tenant) AND call_id IS NOT NULL
                    AND contact_id IN (SELECT contact_id FROM all_contacts))
                UPDATE privacy_erasures SET
                  call_ids = ARRAY(SELECT call_id FROM all_calls ORDER BY 1),
                  contact_ids = ARRAY(SELECT contact_id FROM all_contacts ORDER BY 1),
                  lead_ids = ARRAY(SELECT lead_id FROM all_leads ORDER BY 1),
                  state = 'waiting', waiting_for = NULL, last_error = NULL, updated_at = now()
                WHERE erasure_id = \(erasure) AND state = 'pending'
                """)
        }
        logger.info("caller erasure resolved", metadata: ["erasure": "\(erasure)", "tenant": "\(tenant)"])
    }

    // MARK: waiting

    /// What the erasure still waits for; nil when it may go on.
    private func waitReason(_ erasure: Identifier, _ row: Row) async throws -> String? {
        let target = row.target
        let now = now()
        let inProgressSince = now.adding(microseconds: -Self.callInProgressLimit.microseconds)
        let settledBefore = now.adding(microseconds: -Self.settleTime.microseconds)
        if !target.calls.isEmpty {
            let busy = try await db.query("""
                SELECT call_id, ended_at IS NULL AS running FROM call_sessions
                WHERE tenant_id = \(target.tenant) AND call_id = ANY(\(target.calls)::uuid[])
                  AND ((ended_at IS NULL AND COALESCE(started_at, updated_at) > \(inProgressSince))
                       OR ended_at > \(settledBefore))
                LIMIT 1
                """)
            if let call = busy.first {
                let id = try call.decode(Identifier.self, "call_id")
                return try call.decode(Bool.self, "running") ? "call \(id) in progress" : "call \(id) ended less than \(Self.settleTime.components.seconds) s ago"
            }
        }
        var marks = row.marks
        if marks == nil {
            let captured = try await streams.heads(of: streamNames(target))
            let json = String(decoding: try JSONEncoder().encode(captured), as: UTF8.self)
            try await db.query("""
                UPDATE privacy_erasures SET stream_marks = \(json)::jsonb, updated_at = now() WHERE erasure_id = \(erasure) AND stream_marks IS NULL
                """)
            marks = captured
        }
        return try await streams.firstReaderBehind(marks ?? [])
    }

    /// The streams the set's entries live on: each call's partition (calls, conversations and
    /// billing, commands and events), each contact's and lead's (crm).
    func streamNames(_ target: RedactionTarget) -> [String] {
        var names: [String] = []
        var seen = Set<String>()
        func add(_ list: [String]) { for name in list where seen.insert(name).inserted { names.append(name) } }
        for call in target.calls {
            add(streams.streams(tenant: target.tenant, subject: call.description, categories: [.calls, .conversations, .billing]))
        }
        for id in target.contacts + target.leads {
            add(streams.streams(tenant: target.tenant, subject: id.description, categories: [.crm]))
        }
        return names
    }

    // MARK: erasing

    private func redact(_ erasure: Identifier, _ row: Row) async throws {
        let ledger = RedactionLedger.erasure(erasure)
        try await ReadModelRedaction(db: db, ledger: ledger).eraseCaller(row.target)
        let archive = try await ArchiveRedaction(db: db, ledger: ledger, registry: registry).eraseCaller(row.target)
        if archive.undecodable > 0 {
            logger.warning("archived events of an erased caller this version cannot decode were left as they are",
                           metadata: ["erasure": "\(erasure)", "events": "\(archive.undecodable)"])
        }
    }

    // MARK: purging → completed

    private func purge(_ erasure: Identifier, _ row: Row) async throws {
        let target = row.target
        let subjects = Set(target.subjects)
        let ledger = RedactionLedger.erasure(erasure)
        // Each count is stored as soon as its deletion returns; a crash in between loses that
        // count (the rerun finds nothing left to delete) rather than counting anything twice.
        if !subjects.isEmpty {
            // Every stream the set's entries can be on (the marks name only those that existed when the wait began).
            let streamNames = Array(Set(streamNames(target) + (row.marks ?? []).map(\.stream))).sorted()
            let entries = try await streams.deleteEntries(tenant: target.tenant, subjects: subjects, streams: streamNames, types: nil, from: nil, to: nil)
            try await db.withTransaction { db in try ledger.add(entries, to: .streamEntries, in: db) }
            let deadLetters = try await streams.deleteDeadLetters(tenant: target.tenant, subjects: subjects)
            try await db.withTransaction { db in try ledger.add(deadLetters, to: .deadLetters, in: db) }
            // Outbound webhook deliveries of the caller's events: by event id, the archived events
            // of the set (those the archive redaction rewrote), and by the ids their data names.
            // Found as the archive redaction found them, through the archive's indexes (migration 0018).
            let tenant = target.tenant
            let events = try await ArchiveRedaction(db: db, ledger: ledger, registry: registry).callerEvents(target, archivedSince: nil).map(\.id)
            let deliveries = try await streams.deleteWebhookDeliveries(tenant: tenant, events: Set(events), subjects: subjects)
            // Queued jobs are Redis state of the caller; failed deliveries are its dead letters.
            try await db.withTransaction { db in
                try ledger.add(deliveries.jobs, to: .redisKeys, in: db)
                try ledger.add(deliveries.failures, to: .deadLetters, in: db)
            }
        }
        var keys = 0
        if !target.contacts.isEmpty { keys += try await streams.forgetContacts(tenant: target.tenant, contacts: Set(target.contacts)) }
        if !target.calls.isEmpty { keys += try await streams.deleteEntityState(tenant: target.tenant, calls: Set(target.calls)) }
        let redisKeys = keys
        try await db.withTransaction { db in try ledger.add(redisKeys, to: .redisKeys, in: db) }
        let persistence = try await streams.rewritePersistence()
        logger.info("caller erasure purged Redis", metadata: ["erasure": "\(erasure)", "persistence": "\(persistence)"])
    }

    private func finish(_ erasure: Identifier, _ row: Row) async throws {
        let counts = try await progress(erasure, ranHere: true).counts
        var complete: [String: Int] = [:]
        for key in CallerErased.Count.allCases { complete[key.rawValue] = counts[key.rawValue] ?? 0 }
        let erasedAt = now()
        let event = CallerErased(
            erasureID: erasure, tenantID: row.tenant, identifierKind: CallerErased.IdentifierKind(rawValue: row.kind.rawValue) ?? .contact,
            identifierHash: row.hash, callIDs: row.target.calls, contactIDs: row.target.contacts, leadIDs: row.target.leads,
            counts: complete, erasedAt: erasedAt)
        let envelope = EventEnvelope(event, tenant: row.tenant, source: Self.source, id: CallerErased.eventID(erasureID: erasure), time: erasedAt)
        // Deduplicated on the erasure: a rerun after a crash between this publish and the commit
        // below answers the first publish (and after the window, the same event id again).
        _ = try await publisher.publish(envelope, category: CallerErased.category, kind: CallerErased.kind,
                                        deduplicationKey: "privacy.caller-erased.\(erasure)", window: .seconds(7 * 86_400))
        let actor: AuditActor
        switch AuditActor.Kind(rawValue: row.actor) {
        case .admin: actor = .admin
        case .platformOperator: actor = .platformOperator
        case .system: actor = .system
        case .apiKey: actor = row.apiKeyID.map(AuditActor.apiKey) ?? .platformOperator
        case nil: throw EraserError(description: "erasure \(erasure) names an unknown actor \(row.actor)")
        }
        let details = JSONObjectWriter.object { json in
            json.field("erasure_id", erasure)
            json.field("identifier_kind", row.kind.rawValue)
            json.field("identifier_hash", row.hash)
            json.field("counts", complete)
        }
        let audit = AuditEntry(tenant: row.tenant, actor: actor, action: .privacyErase, target: "privacy/erasures/\(erasure)",
                               requestID: Self.completionRequestID(erasure), at: erasedAt, outcome: .succeeded, details: details)
        try await db.withTransaction { db in
            try AuditTrail.write([audit], in: db)
            try db.query("""
                UPDATE privacy_erasures SET state = 'completed', completed_at = \(erasedAt), identifier_sealed = NULL, waiting_for = NULL,
                                            last_error = NULL, updated_at = now()
                WHERE erasure_id = \(erasure) AND state = 'purging'
                """)
        }
        logger.info("caller erased", metadata: ["erasure": "\(erasure)", "tenant": "\(row.tenant)", "identifier_hash": "\(row.hash)"])
    }

    /// The envelope source of `CallerErased`.
    public static let source = "/services/privacy"

    /// The request id of an erasure's completion row in the audit trail.
    public static func completionRequestID(_ erasure: Identifier) -> Identifier {
        Identifier.v5(namespace: erasure, name: "privacy.erase.completed")
    }
}

extension Duration {
    /// The whole microseconds of a duration (the precision of ``Timestamp``).
    var microseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1_000_000 + attoseconds / 1_000_000_000_000
    }
}
