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
/// Each run is a row of `privacy_retention_runs` (cutoffs, counts added as batches commit) and one
/// audit row (actor `system`, action `privacy.retention`). A run only changes what an earlier run
/// left: the read models by what they still hold, the archive from where the tenant's last
/// finished run stopped. So a second run at once records zeros, and a run cut short is finished by
/// the next one.
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
    }

    /// Runs every tenant of the directory, one after the other.
    @discardableResult
    public func run() async throws -> [Run] {
        let tenants = try await db.query("SELECT tenant_id FROM tenant_directory ORDER BY tenant_id").map { try $0.decode(Identifier.self, "tenant_id") }
        var runs: [Run] = []
        for tenant in tenants { runs.append(try await run(tenant: tenant)) }
        return runs
    }

    /// Runs one tenant, with the retention settings it has now.
    /// - Throws: ``CallerEraser/EraserError`` for a tenant the directory does not hold.
    @discardableResult
    public func run(tenant: Identifier) async throws -> Run {
        let rows = try await db.query("SELECT ai_settings::text AS settings FROM tenant_directory WHERE tenant_id = \(tenant)")
        guard let row = rows.first else { throw CallerEraser.EraserError(description: "no tenant \(tenant) in the directory") }
        var policy = RetentionPolicy()
        if let text = try row.decode(String?.self, "settings") {
            policy = try AISettings(json: try JSONObject.parse(Array(text.utf8), path: "ai_settings")).retention ?? RetentionPolicy()
        }
        return try await run(tenant: tenant, policy: policy)
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
        // Where the tenant's last finished runs stopped: the archive is read from there on.
        let previous = try await db.query("""
            SELECT max((cutoffs->>'transcripts')::timestamptz) AS transcripts, max((cutoffs->>'recordings')::timestamptz) AS recordings,
                   max((cutoffs->>'calls')::timestamptz) AS calls
            FROM privacy_retention_runs WHERE tenant_id = \(tenant) AND finished_at IS NOT NULL
            """)[0]
        let since = (transcripts: try previous.decode(Timestamp?.self, "transcripts"), recordings: try previous.decode(Timestamp?.self, "recordings"),
                     calls: try previous.decode(Timestamp?.self, "calls"))
        try await db.query("""
            INSERT INTO privacy_retention_runs (run_id, tenant_id, started_at, cutoffs) VALUES (\(runID), \(tenant), \(started), \(PostgresJSON(rawJSON: cutoffs)))
            """)
        let ledger = RedactionLedger.retentionRun(runID)
        let readModels = ReadModelRedaction(db: db, ledger: ledger)
        let archive = ArchiveRedaction(db: db, ledger: ledger, registry: registry)

        try await forEachCallPage(tenant: tenant, from: since.calls, before: calls) { page in
            let target = RedactionTarget(tenant: tenant, calls: page, contacts: [], leads: [])
            try await readModels.eraseCaller(target)
            try await self.deleteStreamEntries(target, types: nil, before: calls, ledger: ledger)
        }
        try await forEachCallPage(tenant: tenant, from: since.transcripts, before: transcripts) { page in
            let target = RedactionTarget(tenant: tenant, calls: page, contacts: [], leads: [])
            try await readModels.eraseWords(target)
            try await self.deleteStreamEntries(target, types: Self.wordTypes, before: transcripts, ledger: ledger)
        }
        try await forEachCallPage(tenant: tenant, from: since.recordings, before: recordings) { page in
            let target = RedactionTarget(tenant: tenant, calls: page, contacts: [], leads: [])
            try await readModels.eraseRecordings(target)
            try await self.deleteStreamEntries(target, types: Self.recordingTypes, before: recordings, ledger: ledger)
        }
        var undecodable = 0
        undecodable += try await archive.eraseCallEvents(tenant: tenant, from: since.calls, before: calls, scope: .caller).undecodable
        undecodable += try await archive.eraseCallEvents(tenant: tenant, from: since.transcripts, before: transcripts, scope: .transcripts).undecodable
        undecodable += try await archive.eraseCallEvents(tenant: tenant, from: since.recordings, before: recordings, scope: .recordings).undecodable
        if undecodable > 0 {
            logger.warning("archived events this version cannot decode were left as they are", metadata: ["tenant": "\(tenant)", "events": "\(undecodable)"])
        }

        let finished = now()
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
            try db.query("UPDATE privacy_retention_runs SET finished_at = \(finished), counts = \(PostgresJSON(counts)) WHERE run_id = \(runID)")
            return counts
        }
        logger.info("retention run finished", metadata: ["tenant": "\(tenant)", "run": "\(runID)", "counts": "\(counts)"])
        return Run(runID: runID, tenantID: tenant, transcriptsCutoff: transcripts, recordingsCutoff: recordings, callsCutoff: calls, counts: counts)
    }

    /// The calls of `tenant` started in `[from, before)`, in pages of 500 (keyset on start and id).
    private func forEachCallPage(tenant: Identifier, from: Timestamp?, before: Timestamp,
                                 _ body: @Sendable ([Identifier]) async throws -> Void) async throws {
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

    private func deleteStreamEntries(_ target: RedactionTarget, types: Set<String>?, before: Timestamp, ledger: RedactionLedger) async throws {
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
