import Foundation
import Logging
import VoiceCoreBus
import VoiceCoreEvents
import VoiceCorePostgres
import VoiceCoreTime

/// Erases again what arrives about an erased caller after the erasure completed: an event
/// published late (a backlog replayed after an AI outage, a delayed provider callback, a dead
/// letter retried) is projected and archived as it was published, personal data and all.
///
/// For each erasure completed within ``window`` (the longest a late entry can still be on a stream,
/// see ``defaultWindow``), a sweep asks the archive what was recorded about the erasure's calls,
/// contacts and leads — and about leads and interactions naming its calls — since its last look
/// (`privacy_erasures.late_swept_from`, migration 0018; the index `event_log_subject` answers that
/// from the index alone when nothing came). What it finds is erased in the archive at once
/// (``ArchiveRedaction``, the same typed erasure as the erasure's own). The read models, the
/// stream entries, dead letters and Redis state of the caller are redacted again once every reader
/// of the streams has processed those entries (``StreamErasure/firstReaderBehind(_:)``): before
/// that a projection behind would write them again. Until then the entries wait in
/// `privacy_erasures.late_marks` and the erasure's look is not moved on. Whatever is deleted from
/// Redis is also rewritten out of its persistence (``StreamErasure/rewritePersistence()``). A lead
/// created late for an erased call, and the contact it is linked to, join the erasure's set (as the
/// erasure's resolution takes a lead's contact as the caller's), and the erasure is looked at again
/// at once for their own events.
///
/// Counts go to the erasure's own counts (its status shows them; `CallerErased`, published at
/// completion, does not change). Every step is idempotent: a crash anywhere is finished by the
/// next sweep. One process sweeps at a time (an advisory lock; another skips the sweep).
///
/// ```swift
/// let sweep = LateEventSweep(postgres: db, streams: streamErasure)
/// let outcome = try await sweep.sweep()     // PrivacyService does this every minute
/// ```
public final class LateEventSweep: Sendable {
    let db: PostgresConnection
    let streams: StreamErasure
    let registry: MessageRegistry
    let logger: Logger
    /// Erasures completed longer ago than this are no longer swept.
    public let window: Duration

    /// The longest a late entry can still be on the event streams (their retention after every
    /// reader processed them, 7 days by default) plus the longest a command that causes one can
    /// wait on its stream (1 day): 8 days with the trimmer's defaults (``RetentionConfiguration``).
    public static let defaultWindow: Duration = {
        let defaults = RetentionConfiguration()
        func age(_ retention: StreamRetention?) -> Duration {
            if case .maxAge(let age, _) = retention { return age }
            return .zero
        }
        let events = defaults.eventRetention.values.map(age).max() ?? .zero
        let commands = defaults.commandRetention.values.map(age).max() ?? .zero
        return events + commands
    }()

    /// How far before its last look a sweep looks again: `recorded_at` is the start of the
    /// archiving transaction, which commits a little later.
    public static let margin: Duration = .seconds(300)

    /// - Parameters:
    ///   - postgres: a connection of its own or one it shares with sequential work (it holds an
    ///     advisory lock only while it sweeps).
    ///   - streams: the Redis side (readers' progress, deleting entries).
    ///   - window: erasures completed within it are swept.
    public init(postgres: PostgresConnection, streams: StreamErasure, registry: MessageRegistry = .standard,
                window: Duration = LateEventSweep.defaultWindow, logger: Logger = Logger(label: "voicecore.privacy.late-events")) {
        self.db = postgres
        self.streams = streams
        self.registry = registry
        self.window = window
        self.logger = logger
    }

    /// What one sweep did.
    public struct Outcome: Sendable, Hashable {
        /// Completed erasures looked at.
        public var erasures = 0
        /// Archived events erased now.
        public var lateEvents = 0
        /// Erasures whose late events wait for a reader before their read models are redacted.
        public var waiting = 0
        /// Erasures whose read models and Redis were redacted again.
        public var redone = 0
        /// False when another process was sweeping (nothing was done here).
        public var ranHere = true
    }

    /// A late event erased in the archive whose read models and stream entry wait for the readers.
    struct LateMark: Sendable, Hashable, Codable {
        var stream: String
        var entry: String
        var subject: String
        var type: String
        /// When it was archived (a round that widens the set looks again from the earliest).
        var recordedAt: Timestamp?
        /// The event (its outbound webhook deliveries go too).
        var eventID: Identifier?
    }

    static let lockKey = "voicecore.privacy.late-event-sweep"

    /// One sweep over every erasure completed within ``window``.
    @discardableResult
    public func sweep() async throws -> Outcome {
        let locked = try await db.query("SELECT pg_try_advisory_lock(hashtextextended(\(Self.lockKey), 0)) AS locked")[0].decode(Bool.self, "locked")
        guard locked else { return Outcome(ranHere: false) }
        do {
            let outcome = try await sweepCompleted()
            _ = try? await db.query("SELECT pg_advisory_unlock(hashtextextended(\(Self.lockKey), 0))")
            return outcome
        } catch {
            _ = try? await db.query("SELECT pg_advisory_unlock(hashtextextended(\(Self.lockKey), 0))")
            throw error
        }
    }

    private func sweepCompleted() async throws -> Outcome {
        let windowSeconds = Double(window.components.seconds)
        let erasures = try await db.query("""
            SELECT erasure_id FROM privacy_erasures
            WHERE state = 'completed' AND completed_at > now() - make_interval(secs => \(windowSeconds))
            ORDER BY completed_at, erasure_id
            """).map { try $0.decode(Identifier.self, "erasure_id") }
        var outcome = Outcome()
        for erasure in erasures {
            if Task.isCancelled { break }
            outcome.erasures += 1
            // A round that widened the caller's set (a lead created late, its contact) looks again
            // at once with the wider set; a few rounds reach every link a late event can make.
            for _ in 0..<Self.roundsPerErasure {
                let (step, widened) = try await sweep(erasure)
                outcome.lateEvents += step.lateEvents
                outcome.waiting += step.waiting
                outcome.redone += step.redone
                if !widened { break }
            }
        }
        return outcome
    }

    /// Rounds of one erasure per sweep (a late lead, then its contact's events).
    static let roundsPerErasure = 3

    private static func ids(_ json: String) throws -> [Identifier] {
        try JSONDecoder().decode([Identifier].self, from: Data(json.utf8))
    }

    /// One look at one erasure; `widened` when it added late leads or their contacts to the
    /// erasure's set (their own events are then looked at in the next round).
    private func sweep(_ erasure: Identifier) async throws -> (Outcome, widened: Bool) {
        let margin = Double(Self.margin.components.seconds)
        let rows = try await db.query("""
            SELECT tenant_id, COALESCE(array_to_json(call_ids), '[]')::text AS calls,
                   COALESCE(array_to_json(contact_ids), '[]')::text AS contacts, COALESCE(array_to_json(lead_ids), '[]')::text AS leads,
                   COALESCE(late_swept_from, requested_at) - make_interval(secs => \(margin)) AS since,
                   late_marks::text AS marks, now() - make_interval(secs => \(margin)) AS next_from
            FROM privacy_erasures WHERE erasure_id = \(erasure)
            """)
        guard let row = rows.first else { return (Outcome(), false) }
        let target = RedactionTarget(tenant: try row.decode(Identifier.self, "tenant_id"), calls: try Self.ids(row.decode(String.self, "calls")),
                                     contacts: try Self.ids(row.decode(String.self, "contacts")), leads: try Self.ids(row.decode(String.self, "leads")))
        var stored: [LateMark] = []
        if let text = try row.decode(String?.self, "marks") { stored = try JSONDecoder().decode([LateMark].self, from: Data(text.utf8)) }
        let since = try row.decode(Timestamp.self, "since"), nextFrom = try row.decode(Timestamp.self, "next_from")
        var outcome = Outcome()
        let ledger = RedactionLedger.erasure(erasure)
        let archive = ArchiveRedaction(db: db, ledger: ledger, registry: registry)
        let found = try await archive.callerEvents(target, archivedSince: since)
        if found.isEmpty && stored.isEmpty { return (outcome, false) }

        // Each late event is noted (late_marks) in the transaction that erases it in the archive:
        // a crash after the rewrite still leaves the read models and streams to redo.
        let marksByID = Dictionary(found.map { ($0.id, LateMark(stream: $0.stream, entry: $0.entryID, subject: $0.subject, type: $0.type,
                                                                 recordedAt: $0.recordedAt, eventID: $0.id)) },
                                   uniquingKeysWith: { first, _ in first })
        let erased = try await archive.rewrite(found.map(\.id), scope: .caller) { db, changed in
            let added = changed.compactMap { marksByID[$0] }
            let json = String(decoding: try JSONEncoder().encode(added), as: UTF8.self)
            try db.query("""
                UPDATE privacy_erasures SET late_marks = COALESCE(late_marks, '[]'::jsonb) || \(json)::jsonb WHERE erasure_id = \(erasure)
                """)
        }
        if erased.undecodable > 0 {
            logger.warning("late archived events of an erased caller this version cannot decode were left as they are",
                           metadata: ["erasure": "\(erasure)", "events": "\(erased.undecodable)"])
        }
        outcome.lateEvents = erased.rewritten
        var marks = stored
        for id in erased.rewrittenIDs {
            if let mark = marksByID[id], !marks.contains(mark) { marks.append(mark) }
        }
        if marks.isEmpty {
            // Only events erased before (by the erasure or an earlier sweep): the look moves on.
            try await db.query("UPDATE privacy_erasures SET late_swept_from = \(nextFrom) WHERE erasure_id = \(erasure)")
            return (outcome, false)
        }
        if erased.rewritten > 0 {
            logger.info("events about an erased caller arrived after the erasure; erased in the archive",
                        metadata: ["erasure": "\(erasure)", "events": "\(erased.rewritten)"])
        }
        if let behind = try await streams.firstReaderBehind(marks.map { StreamMark(stream: $0.stream, entry: $0.entry) }) {
            logger.info("late events of an erased caller wait for a reader before the read models are redacted again",
                        metadata: ["erasure": "\(erasure)", "waiting_for": "\(behind)"])
            outcome.waiting = 1
            return (outcome, false)
        }
        let widened = try await redo(erasure, target, marks: marks, ledger: ledger)
        outcome.redone = 1
        let newLeads = widened.leads.filter { !target.leads.contains($0) }, newContacts = widened.contacts.filter { !target.contacts.contains($0) }
        if newLeads.isEmpty && newContacts.isEmpty {
            try await db.query("UPDATE privacy_erasures SET late_marks = NULL, late_swept_from = \(nextFrom) WHERE erasure_id = \(erasure)")
            return (outcome, false)
        }
        // The wider set's own events (a late contact's) were archived alongside these: the next
        // round looks again from the earliest of them.
        let from = marks.compactMap(\.recordedAt).min() ?? since
        try await db.query("""
            UPDATE privacy_erasures
            SET lead_ids = ARRAY(SELECT DISTINCT id FROM unnest(COALESCE(lead_ids, '{}') || \(newLeads)::uuid[]) AS id ORDER BY 1),
                contact_ids = ARRAY(SELECT DISTINCT id FROM unnest(COALESCE(contact_ids, '{}') || \(newContacts)::uuid[]) AS id ORDER BY 1),
                late_marks = NULL, late_swept_from = \(from)
            WHERE erasure_id = \(erasure)
            """)
        logger.info("a late lead of an erased call, and its contact, joined the erasure", metadata: [
            "erasure": "\(erasure)", "leads": "\(newLeads.count)", "contacts": "\(newContacts.count)",
        ])
        return (outcome, true)
    }

    /// The read models and Redis, as the erasure left them, once every reader processed `marks`.
    /// - Returns: the set it redacted: the erasure's, with the leads created late for its calls and
    ///   those leads' contacts (as the erasure's resolve takes a lead's contact as the caller's).
    private func redo(_ erasure: Identifier, _ target: RedactionTarget, marks: [LateMark], ledger: RedactionLedger) async throws -> RedactionTarget {
        var leads = target.leads, contacts = target.contacts
        let lateLeads = Set(marks.filter { $0.type == LeadCreated.type }.compactMap { Identifier($0.subject) }).subtracting(target.leads)
        if !lateLeads.isEmpty {
            leads += lateLeads.sorted()
            let linked = try await db.query("""
                SELECT contact_id FROM crm_lead_contacts WHERE tenant_id = \(target.tenant) AND lead_id = ANY(\(Array(lateLeads))::uuid[]) AND contact_id IS NOT NULL
                UNION SELECT contact_id FROM leads WHERE tenant_id = \(target.tenant) AND lead_id = ANY(\(Array(lateLeads))::uuid[]) AND contact_id IS NOT NULL
                """).map { try $0.decode(Identifier.self, "contact_id") }
            for contact in linked where !contacts.contains(contact) { contacts.append(contact) }
        }
        let widened = RedactionTarget(tenant: target.tenant, calls: target.calls, contacts: contacts, leads: leads)
        try await ReadModelRedaction(db: db, ledger: ledger).eraseCaller(widened)

        // Each late entry where it was published: only its subject and type, between the first and
        // last late entry of its stream (one pass, one compaction per stream).
        var deleted = 0
        for (stream, entries) in Dictionary(grouping: marks, by: \.stream).sorted(by: { $0.key < $1.key }) {
            let times = entries.compactMap { Self.time(ofEntry: $0.entry) }
            guard let first = times.min(), let last = times.max() else { continue }
            deleted += try await streams.deleteEntries(tenant: target.tenant, subjects: Set(entries.map(\.subject)), streams: [stream],
                                                       types: Set(entries.map(\.type)), from: first, to: last)
        }
        let entries = deleted
        try await db.withTransaction { db in try ledger.add(entries, to: .streamEntries, in: db) }
        // A late event may also have been queued for the tenant's webhooks (as the erasure counts them).
        let deliveries = try await streams.deleteWebhookDeliveries(tenant: target.tenant, events: Set(marks.compactMap(\.eventID)),
                                                                   subjects: Set(widened.subjects))
        let deadLetters = try await streams.deleteDeadLetters(tenant: target.tenant, subjects: Set(widened.subjects)) + deliveries.failures
        try await db.withTransaction { db in try ledger.add(deadLetters, to: .deadLetters, in: db) }
        // A late event may have made a service remember the call or the contact again.
        var keys = deliveries.jobs
        if !widened.contacts.isEmpty { keys += try await streams.forgetContacts(tenant: target.tenant, contacts: Set(widened.contacts)) }
        if !widened.calls.isEmpty { keys += try await streams.deleteEntityState(tenant: target.tenant, calls: Set(widened.calls)) }
        let redisKeys = keys
        try await db.withTransaction { db in try ledger.add(redisKeys, to: .redisKeys, in: db) }
        if entries + deadLetters + redisKeys > 0 {
            let persistence = try await streams.rewritePersistence()
            logger.info("late events of an erased caller purged from Redis", metadata: ["erasure": "\(erasure)", "persistence": "\(persistence)"])
        }
        return widened
    }

    /// The time of a stream entry id (`<ms>-<seq>`).
    static func time(ofEntry entry: String) -> Timestamp? {
        guard let milliseconds = entry.split(separator: "-").first.flatMap({ Int64($0) }) else { return nil }
        return Timestamp(microsecondsSinceEpoch: milliseconds * 1000)
    }
}
