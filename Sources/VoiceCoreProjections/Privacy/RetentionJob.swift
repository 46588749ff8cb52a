import Foundation
import Logging
import VoiceCoreBus
import VoiceCoreEvents
import VoiceCorePostgres
import VoiceCoreTenants
import VoiceCoreTime

/// Erases what a tenant keeps no longer: per tenant, what is older than its retention settings
/// (`retention.transcripts_days`, `recordings_days`, `calls_days` of its AI settings; the defaults
/// of ``RetentionPolicy`` when absent).
///
/// - Calls started before the calls cutoff: everything personal of the call, as a caller's erasure
///   erases it (numbers, transcript, turns, outcomes, summary, the call's leads and interactions);
///   contacts stay (a contact outlives its old calls).
/// - Calls started before the transcripts cutoff: what was said (transcript lines, the turns'
///   words, the summary, messages taken).
/// - Calls started before the recordings cutoff: the recordings' addresses.
/// The archive's events of those calls are rewritten in the same scopes, and their entries still on
/// the streams deleted. Batches of at most 500 rows per transaction, as ``CallerEraser``.
///
/// Dead letters of those calls go with the calls' and the transcripts' retention (a dead letter is
/// the entry as it was published, words and numbers included).
///
/// Each run is a row of `privacy_retention_runs` (cutoffs, counts added as batches commit) and one
/// audit row (actor `system`, action `privacy.retention`). A run only changes what an earlier run
/// left: the read models by what they still hold, the archive from where the tenant's last
/// finished run stopped. So a second run at once records zeros, and a run cut short is finished by
/// the next one.
///
/// What is old is decided by time, not by archive order: an event published late (a backlog after
/// an AI outage, a retried dead letter) is archived after the run whose window its time fell in.
/// So each run also looks at everything archived since the previous run began (less a margin,
/// ``lateArchiveMargin``: a row's `recorded_at` is its transaction's start) with a time before the
/// previous cutoffs, erases those events and — once every reader of the streams has processed
/// them (``StreamErasure/firstReaderBehind(_:)``), so no projection writes them again afterwards —
/// their calls' read models and stream entries. Until then the run records the same starting
/// point for the next (`late_from`), which looks again.
///
/// A tenant whose run fails (its settings unreadable, a database error) does not stop the others:
/// the failure is logged and recorded in its run's `error`, and the next interval tries again.
///
/// ```swift
/// let job = RetentionJob(postgres: db, streams: streamErasure)
/// let runs = try await job.run()                   // every tenant of the directory
/// let run = try await job.run(tenant: tenantID)    // one tenant (`voicecore privacy retention run --tenant`)
/// ```
public final class RetentionJob: Sendable {
    let db: PostgresConnection
    let streams: StreamErasure?
    let registry: MessageRegistry
    let logger: Logger
    let now: @Sendable () -> Timestamp

    /// - Parameters:
    ///   - postgres: a connection of the job's own.
    ///   - streams: deletes the calls' entries still on the streams (nil: the read models and the
    ///     archive only).
    ///   - now: the clock the cutoffs are computed from.
    public init(postgres: PostgresConnection, streams: StreamErasure?, registry: MessageRegistry = .standard,
                logger: Logger = Logger(label: "voicecore.privacy.retention"), now: @escaping @Sendable () -> Timestamp = { .now }) {
        self.db = postgres
        self.streams = streams
        self.registry = registry
        self.logger = logger
        self.now = now
    }

    /// What one run did for one tenant.
    public struct Run: Sendable, Hashable {
        public var runID: Identifier
        public var tenantID: Identifier
        /// What was older than these instants was erased.
        public var transcriptsCutoff: Timestamp
        public var recordingsCutoff: Timestamp
        public var callsCutoff: Timestamp
        /// By the count keys of ``CallerErased/Count`` (every key present).
        public var counts: [String: Int]
        /// Why the run stopped (nil: it finished); also in `privacy_retention_runs.error`.
        public var error: String?
    }

    /// How far before the previous run's start a run looks again for late arrivals: `recorded_at`
    /// is the start of the archiving transaction, which commits a little later.
    public static let lateArchiveMargin: Duration = .seconds(300)

    /// Runs every tenant of the directory, one after the other. A tenant whose run fails is
    /// logged, recorded (its run's `error`) and returned with ``Run/error`` set; the others run.
    /// - Throws: only when the directory cannot be read.
    @discardableResult
    public func run() async throws -> [Run] {
        let tenants = try await db.query("SELECT tenant_id FROM tenant_directory ORDER BY tenant_id").map { try $0.decode(Identifier.self, "tenant_id") }
        var runs: [Run] = []
        for tenant in tenants {
            if Task.isCancelled { break }
            do {
                runs.append(try await run(tenant: tenant))
            } catch {
                runs.append(await recordFailure(tenant: tenant, error))
            }
        }
        return runs
    }

    /// Runs one tenant, with the retention settings it has now.
    /// - Throws: ``CallerEraser/EraserError`` for a tenant the directory does not hold; what its
    ///   run met (recorded in the run's `error` when the run had begun).
    @discardableResult
    public func run(tenant: Identifier) async throws -> Run {
        let rows = try await db.query("SELECT ai_settings::text AS settings FROM tenant_directory WHERE tenant_id = \(tenant)")
        guard let row = rows.first else { throw CallerEraser.EraserError(description: "no tenant \(tenant) in the directory") }
        var policy = RetentionPolicy()
        if let text = try row.decode(String?.self, "settings") {
            do {
                policy = try AISettings(json: try JSONObject.parse(Array(text.utf8), path: "ai_settings")).retention ?? RetentionPolicy()
            } catch {
                throw CallerEraser.EraserError(description: "the retention settings of tenant \(tenant) cannot be read (\(error))")
            }
        }
        return try await run(tenant: tenant, policy: policy)
    }

    /// Logs and records a tenant's failed run (a row of its own when the run had not begun).
    private func recordFailure(tenant: Identifier, _ error: any Error) async -> Run {
        // The error's description: Postgres errors leave binds and secrets out of it, ours name ids only.
        let reason = String(String(describing: error).prefix(500))
        logger.error("retention run of a tenant failed; the other tenants go on, it is tried again at the next interval",
                     metadata: ["tenant": "\(tenant)", "error": "\(reason)"])
        let at = now()
        var run = Run(runID: Identifier.v7(at: at), tenantID: tenant, transcriptsCutoff: at, recordingsCutoff: at, callsCutoff: at,
                      counts: Dictionary(uniqueKeysWithValues: CallerErased.Count.allCases.map { ($0.rawValue, 0) }), error: reason)
        if let failed = error as? RunFailed {
            run.runID = failed.runID
            run.error = failed.reason
            return run
        }
        do {
            try await db.query("""
                INSERT INTO privacy_retention_runs (run_id, tenant_id, started_at, cutoffs, error) VALUES (\(run.runID), \(tenant), \(at), '{}'::jsonb, \(reason))
                """)
        } catch {
            logger.error("a failed retention run could not be recorded", metadata: ["tenant": "\(tenant)", "error": "\(error)"])
        }
        return run
    }

    /// A run that began (its row exists) and failed: its error is recorded on its row.
    struct RunFailed: Error, CustomStringConvertible {
        var runID: Identifier
        var reason: String
        var description: String { reason }
    }

    /// Runs one tenant with `policy`.
    @discardableResult
    public func run(tenant: Identifier, policy: RetentionPolicy) async throws -> Run {
        let started = now()
        func cutoff(_ days: Int) -> Timestamp { started.adding(microseconds: -Int64(days) * 86_400 * 1_000_000) }
        let transcripts = cutoff(policy.effectiveTranscriptsDays), recordings = cutoff(policy.effectiveRecordingsDays)
        let calls = cutoff(policy.effectiveCallsDays)
        let runID = Identifier.v7(at: started)
        let cutoffs = JSONObjectWriter.object { json in
            json.field("transcripts", transcripts)
            json.field("recordings", recordings)
            json.field("calls", calls)
        }
        // Where the tenant's last finished runs stopped: the archive is read from there on by time,
        // and from the last run's late_from on by archive order (late arrivals).
        let previous = try await db.query("""
            SELECT max((cutoffs->>'transcripts')::timestamptz) AS transcripts, max((cutoffs->>'recordings')::timestamptz) AS recordings,
                   max((cutoffs->>'calls')::timestamptz) AS calls,
                   (SELECT late_from FROM privacy_retention_runs WHERE tenant_id = \(tenant) AND finished_at IS NOT NULL
                    ORDER BY started_at DESC, run_id DESC LIMIT 1) AS late_from,
                   now() - make_interval(secs => \(Double(Self.lateArchiveMargin.components.seconds))) AS next_late_from
            FROM privacy_retention_runs WHERE tenant_id = \(tenant) AND finished_at IS NOT NULL AND error IS NULL
            """)[0]
        let since = (transcripts: try previous.decode(Timestamp?.self, "transcripts"), recordings: try previous.decode(Timestamp?.self, "recordings"),
                     calls: try previous.decode(Timestamp?.self, "calls"))
        // A run from before migration 0018 recorded no late_from: from its cutoffs' time on is all it can say.
        let lateSince = try previous.decode(Timestamp?.self, "late_from")
        var nextLateFrom = try previous.decode(Timestamp.self, "next_late_from")
        try await db.query("""
            INSERT INTO privacy_retention_runs (run_id, tenant_id, started_at, cutoffs) VALUES (\(runID), \(tenant), \(started), \(PostgresJSON(rawJSON: cutoffs)))
            """)
        do {
            let ledger = RedactionLedger.retentionRun(runID)
            let scopes: [(scope: ErasureScope, from: Timestamp?, before: Timestamp, types: Set<String>?)] = [
                (.caller, since.calls, calls, nil), (.transcripts, since.transcripts, transcripts, Self.wordTypes),
                (.recordings, since.recordings, recordings, Self.recordingTypes),
            ]
            for (scope, from, before, types) in scopes {
                var deadLetterCalls = Set<String>()
                try await forEachCallPage(tenant: tenant, from: from, before: before) { page in
                    let target = RedactionTarget(tenant: tenant, calls: page, contacts: [], leads: [])
                    try await self.redactReadModels(target, scope: scope, ledger: ledger)
                    try await self.deleteStreamEntries(target, types: types, before: before, ledger: ledger)
                    if scope != .recordings {
                        deadLetterCalls.formUnion(page.map(\.description))
                        if deadLetterCalls.count >= Self.deadLetterSubjectsPerScan {
                            try await self.deleteDeadLetters(tenant: tenant, calls: deadLetterCalls, ledger: ledger)
                            deadLetterCalls = []
                        }
                    }
                }
                try await deleteDeadLetters(tenant: tenant, calls: deadLetterCalls, ledger: ledger)
                let archive = try await ArchiveRedaction(db: db, ledger: ledger, registry: registry)
                    .eraseCallEvents(tenant: tenant, from: from, before: before, archivedSince: lateSince, scope: scope)
                if archive.outcome.undecodable > 0 {
                    logger.warning("archived events this version cannot decode were left as they are",
                                   metadata: ["tenant": "\(tenant)", "events": "\(archive.outcome.undecodable)"])
                }
                if let lateSince, !archive.late.isEmpty,
                   !(try await redactLateArrivals(tenant: tenant, archive.late, scope: scope, types: types, ledger: ledger)) {
                    // A reader has not processed them yet: the next run looks at them again.
                    nextLateFrom = min(nextLateFrom, lateSince)
                }
            }
            let finished = now()
            let lateFrom = nextLateFrom
            let counts = try await db.withTransaction { db -> [String: Int] in
                let text = try db.query("SELECT counts::text AS counts FROM privacy_retention_runs WHERE run_id = \(runID)")[0].decode(String.self, "counts")
                let stored = try JSONDecoder().decode([String: Int].self, from: Data(text.utf8))
                var counts: [String: Int] = [:]
                for key in CallerErased.Count.allCases { counts[key.rawValue] = stored[key.rawValue] ?? 0 }
                let details = JSONObjectWriter.object { json in
                    json.field("run_id", runID)
                    json.field("cutoffs", RetentionCutoffsJSON(transcripts: transcripts, recordings: recordings, calls: calls))
                    json.field("counts", counts)
                }
                try AuditTrail.write([AuditEntry(tenant: tenant, actor: .system, action: .privacyRetention, target: "privacy/retention-runs/\(runID)",
                                                 requestID: Identifier.v5(namespace: runID, name: "privacy.retention"), at: finished,
                                                 outcome: .succeeded, details: details)], in: db)
                try db.query("""
                    UPDATE privacy_retention_runs SET finished_at = \(finished), counts = \(PostgresJSON(counts)), late_from = \(lateFrom)
                    WHERE run_id = \(runID)
                    """)
                return counts
            }
            logger.info("retention run finished", metadata: ["tenant": "\(tenant)", "run": "\(runID)", "counts": "\(counts)"])
            return Run(runID: runID, tenantID: tenant, transcriptsCutoff: transcripts, recordingsCutoff: recordings, callsCutoff: calls, counts: counts)
        } catch {
            let reason = String(String(describing: error).prefix(500))
            _ = try? await db.query("UPDATE privacy_retention_runs SET error = \(reason) WHERE run_id = \(runID)")
            throw RunFailed(runID: runID, reason: reason)
        }
    }

    /// Calls per scan of the dead-letter streams (each scan reads every dead letter of the deployment).
    static let deadLetterSubjectsPerScan = 10_000

    private func redactReadModels(_ target: RedactionTarget, scope: ErasureScope, ledger: RedactionLedger) async throws {
        let readModels = ReadModelRedaction(db: db, ledger: ledger)
        switch scope {
        case .caller: try await readModels.eraseCaller(target)
        case .transcripts: try await readModels.eraseWords(target)
        case .recordings: try await readModels.eraseRecordings(target)
        }
    }

    /// The read models and stream entries of calls whose events arrived late, once every reader
    /// has processed those events (a projection behind would write them again afterwards).
    /// - Returns: false when a reader is behind (nothing done; the next run tries again).
    private func redactLateArrivals(tenant: Identifier, _ late: [(event: ArchiveRedaction.ArchivedEvent, call: Identifier)], scope: ErasureScope,
                                    types: Set<String>?, ledger: RedactionLedger) async throws -> Bool {
        if let streams {
            let marks = late.map { StreamMark(stream: $0.event.stream, entry: $0.event.entryID) }
            if let behind = try await streams.firstReaderBehind(marks) {
                logger.info("late arrivals wait for a reader before their read models are redacted",
                            metadata: ["tenant": "\(tenant)", "waiting_for": "\(behind)", "events": "\(late.count)"])
                return false
            }
        }
        let calls = Array(Set(late.map(\.call))).sorted()
        var start = 0
        while start < calls.count {
            let page = Array(calls[start..<min(calls.count, start + ReadModelRedaction.batchSize)])
            start += page.count
            let target = RedactionTarget(tenant: tenant, calls: page, contacts: [], leads: [])
            try await redactReadModels(target, scope: scope, ledger: ledger)
            try await deleteStreamEntries(target, types: types, before: nil, ledger: ledger)
        }
        return true
    }

    private func deleteDeadLetters(tenant: Identifier, calls: Set<String>, ledger: RedactionLedger) async throws {
        guard let streams, !calls.isEmpty else { return }
        let deleted = try await streams.deleteDeadLetters(tenant: tenant, subjects: calls)
        try await db.withTransaction { db in try ledger.add(deleted, to: .deadLetters, in: db) }
    }

    /// The calls of `tenant` started in `[from, before)`, in pages of 500 (keyset on start and id).
    private func forEachCallPage(tenant: Identifier, from: Timestamp?, before: Timestamp,
                                 _ body: ([Identifier]) async throws -> Void) async throws {
        if let from, from >= before { return }
        var after: (Timestamp, Identifier)?
        let limit = ReadModelRedaction.batchSize
        while true {
            let rows = try await db.query("""
                SELECT call_id, started_at FROM call_sessions
                WHERE tenant_id = \(tenant) AND started_at < \(before) AND (\(from)::timestamptz IS NULL OR started_at >= \(from))
                  AND (\(after?.0)::timestamptz IS NULL OR (started_at, call_id) > (\(after?.0)::timestamptz, \(after?.1)::uuid))
                ORDER BY started_at, call_id LIMIT \(limit)
                """)
            guard let last = rows.last else { return }
            try await body(try rows.map { try $0.decode(Identifier.self, "call_id") })
            after = (try last.decode(Timestamp.self, "started_at"), try last.decode(Identifier.self, "call_id"))
            if rows.count < limit { return }
        }
    }

    /// Types whose entries hold what was said on a call.
    static let wordTypes: Set<String> = [TranscriptChunk.type, ReportTranscriptSegment.type, ReportCallerTurn.type, ReceptionistReplied.type,
                                         CallSummarized.type, IntentDetected.type, MessageTaken.type]
    /// Types whose entries hold a recording's address.
    static let recordingTypes: Set<String> = [VoicemailRecorded.type, ReportRecording.type]

    private func deleteStreamEntries(_ target: RedactionTarget, types: Set<String>?, before: Timestamp?, ledger: RedactionLedger) async throws {
        guard let streams, !target.calls.isEmpty else { return }
        var names: [String] = []
        for call in target.calls {
            names += streams.streams(tenant: target.tenant, subject: call.description, categories: [.calls, .conversations, .billing])
        }
        let deleted = try await streams.deleteEntries(tenant: target.tenant, subjects: Set(target.subjects), streams: Array(Set(names)).sorted(),
                                                      types: types, from: nil, to: before)
        try await db.withTransaction { db in try ledger.add(deleted, to: .streamEntries, in: db) }
    }
}

/// A retention run's cutoffs as a JSON object.
struct RetentionCutoffsJSON: JSONObjectCodable {
    var transcripts: Timestamp
    var recordings: Timestamp
    var calls: Timestamp

    init(transcripts: Timestamp, recordings: Timestamp, calls: Timestamp) {
        self.transcripts = transcripts
        self.recordings = recordings
        self.calls = calls
    }

    func writeJSON(to object: inout JSONObjectWriter) {
        object.field("transcripts", transcripts)
        object.field("recordings", recordings)
        object.field("calls", calls)
    }

    init(json object: JSONObject) throws(MessageDecodingError) {
        transcripts = try object.timestamp("transcripts")
        recordings = try object.timestamp("recordings")
        calls = try object.timestamp("calls")
    }
}
