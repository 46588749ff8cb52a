import VoiceCoreEvents
import VoiceCorePostgres

/// analytics → `call_analytics` (per call: duration, outcome, intent, sentiment, word count) and
/// `business_metrics` (per tenant × day in the tenant's time zone: calls, answered, missed, handle
/// time, leads, and the generated average handle time and conversion rate).
///
/// Counting is exactly once per call and per lead, whatever the stream delivers twice: a call is
/// counted on the day its first CallEnded ends it (`call_analytics.counted_day` is set once), a
/// lead once per lead id (`business_metrics_leads`). The strongest intent of a call wins; the
/// latest summary sets sentiment, word count and the summary itself (text, key sentences, time).
///
/// Days are the tenant's days: a call counts on the local date its first CallEnded ends it, a lead
/// on the local date it was created, in the zone of the tenant's row in `tenant_directory`
/// (`effective_time_zone`, migration 0011; UTC for a tenant without a row or with a zone Postgres
/// does not know). The directory, not the `tenants` read model, because the zone must not depend
/// on how far another stream's projection has come: the directory row is committed before the
/// edge accepts any of the tenant's calls, nothing changes its zone afterwards, and replay reads
/// the same live table (it rebuilds only this projection's tables), so a replay counts every
/// call on the day the live projection did.
public struct AnalyticsProjection: Projection {
    public init() {}
    public var name: String { "analytics" }
    public var summary: String { "call_analytics per call; business_metrics per tenant-day" }
    public var categories: [StreamCategory] { [.calls, .crm] }
    public var eventTypes: Set<String>? { [CallEnded.type, IntentDetected.type, CallSummarized.type, LeadCreated.type] }
    public var tables: [String] { ["call_analytics", "business_metrics", "business_metrics_leads"] }

    public func apply(_ events: [ProjectedEvent], in db: isolated PostgresConnection) throws {
        // Per call of this batch: its strongest detection (the first of equals) and its latest
        // summary (stream order), written with one upsert. Against the row, a detection wins
        // when it is stronger; a summary always does.
        var perCall = PerCall<(tenant: Identifier, call: Identifier, intent: IntentDetected?, summary: CallSummarized?)>()
        for event in events {
            let tenant = event.envelope.tenantID
            switch event.message {
            case let detected as IntentDetected:
                perCall.fold(CallKey(tenant, detected.callID), initial: { (tenant, detected.callID, nil, nil) }) { call in
                    if call.intent.map({ detected.confidence > $0.confidence }) ?? true { call.intent = detected }
                }
            case let summarized as CallSummarized:
                perCall.fold(CallKey(tenant, summarized.callID), initial: { (tenant, summarized.callID, nil, nil) }) { $0.summary = summarized }
            default:
                continue
            }
        }
        let calls = perCall.values
        if !calls.isEmpty {
            try db.write("""
                INSERT INTO call_analytics AS a (tenant_id, call_id, intent, intent_confidence, sentiment, sentiment_score, word_count,
                                                 summary, key_sentences, summarized_at)
                SELECT * FROM unnest(\(calls.map(\.tenant))::uuid[], \(calls.map(\.call))::uuid[],
                                     \(calls.map { $0.intent?.intent.rawValue })::text[], \(calls.map { $0.intent?.confidence })::float8[],
                                     \(calls.map { $0.summary?.sentiment.rawValue })::text[], \(calls.map { $0.summary?.sentimentScore })::float8[],
                                     \(calls.map { $0.summary?.wordCount })::int8[], \(calls.map { $0.summary?.summary })::text[],
                                     \(try calls.map { try $0.summary.map { try PostgresJSON($0.keySentences) } })::jsonb[],
                                     \(calls.map { $0.summary?.summarizedAt })::timestamptz[])
                ORDER BY 1, 2
                ON CONFLICT (tenant_id, call_id) DO UPDATE SET
                  intent = CASE WHEN EXCLUDED.intent_confidence > a.intent_confidence OR a.intent_confidence IS NULL
                                THEN COALESCE(EXCLUDED.intent, a.intent) ELSE a.intent END,
                  intent_confidence = CASE WHEN EXCLUDED.intent_confidence > a.intent_confidence OR a.intent_confidence IS NULL
                                           THEN COALESCE(EXCLUDED.intent_confidence, a.intent_confidence) ELSE a.intent_confidence END,
                  sentiment = CASE WHEN EXCLUDED.sentiment IS NOT NULL THEN EXCLUDED.sentiment ELSE a.sentiment END,
                  sentiment_score = CASE WHEN EXCLUDED.sentiment IS NOT NULL THEN EXCLUDED.sentiment_score ELSE a.sentiment_score END,
                  word_count = CASE WHEN EXCLUDED.sentiment IS NOT NULL THEN EXCLUDED.word_count ELSE a.word_count END,
                  summary = CASE WHEN EXCLUDED.sentiment IS NOT NULL THEN EXCLUDED.summary ELSE a.summary END,
                  key_sentences = CASE WHEN EXCLUDED.sentiment IS NOT NULL THEN EXCLUDED.key_sentences ELSE a.key_sentences END,
                  summarized_at = CASE WHEN EXCLUDED.sentiment IS NOT NULL THEN EXCLUDED.summarized_at ELSE a.summarized_at END,
                  updated_at = now()
                WHERE EXCLUDED.intent_confidence > a.intent_confidence OR (a.intent_confidence IS NULL AND EXCLUDED.intent_confidence IS NOT NULL)
                   OR EXCLUDED.sentiment IS NOT NULL
                """)
        }

        // Last, in ONE statement: the calls ended and the leads created, counted into
        // `business_metrics`. Its rows (tenant × day) are shared by every partition, so the
        // projector's workers meet on them: one upsert per transaction, in key order, takes their
        // locks in the same order in every transaction, and as late as possible. (Two statements,
        // calls then leads, deadlocked two workers now and then, twice in the dev server's log on
        // 2026-12-04 under `voicecore bench project`: Postgres finds a deadlock only after
        // `deadlock_timeout`, 1 s, and then one worker's whole batch is applied again.)
        let ended = events.messages(CallEnded.self).uniqued { CallKey($0.event.tenantID, $0.message.callID) }
        let leads = events.messages(LeadCreated.self).uniqued { CallKey($0.event.tenantID, $0.message.leadID) }
        if !ended.isEmpty || !leads.isEmpty {
            try db.write("""
                WITH ended AS (
                  SELECT * FROM unnest(\(ended.map(\.event.tenantID))::uuid[], \(ended.map(\.message.callID))::uuid[],
                                       \(ended.map(\.message.durationSeconds))::int8[], \(ended.map(\.message.status.rawValue))::text[],
                                       \(ended.map(\.message.answered))::bool[], \(ended.map(\.message.endedAt))::timestamptz[])
                         AS u(tenant_id, call_id, duration_seconds, outcome, answered, ended_at)),
                created AS (
                  SELECT * FROM unnest(\(leads.map(\.event.tenantID))::uuid[], \(leads.map(\.message.leadID))::uuid[],
                                       \(leads.map(\.message.createdAt))::timestamptz[]) AS u(tenant_id, lead_id, created_at)),
                zones AS MATERIALIZED (
                  SELECT t.tenant_id, effective_time_zone(d.time_zone) AS zone
                  FROM (SELECT tenant_id FROM ended UNION SELECT tenant_id FROM created) t
                  LEFT JOIN tenant_directory d USING (tenant_id)),
                counted AS (
                  INSERT INTO call_analytics AS a (tenant_id, call_id, duration_seconds, outcome, counted_day)
                  SELECT e.tenant_id, e.call_id, e.duration_seconds, e.outcome, (e.ended_at AT TIME ZONE z.zone)::date
                  FROM ended e JOIN zones z USING (tenant_id) ORDER BY 1, 2
                  ON CONFLICT (tenant_id, call_id) DO UPDATE SET
                    duration_seconds = EXCLUDED.duration_seconds, outcome = EXCLUDED.outcome,
                    counted_day = EXCLUDED.counted_day, updated_at = now()
                  WHERE a.counted_day IS NULL
                  RETURNING tenant_id, call_id, counted_day),
                new_leads AS (
                  INSERT INTO business_metrics_leads (tenant_id, lead_id, day)
                  SELECT c.tenant_id, c.lead_id, (c.created_at AT TIME ZONE z.zone)::date
                  FROM created c JOIN zones z USING (tenant_id)
                  ON CONFLICT (tenant_id, lead_id) DO NOTHING
                  RETURNING tenant_id, day),
                deltas (tenant_id, day, calls, answered, missed, handle_seconds, leads) AS (
                  SELECT c.tenant_id, c.counted_day, 1, e.answered::int, (NOT e.answered)::int,
                         CASE WHEN e.answered THEN e.duration_seconds ELSE 0 END, 0
                  FROM counted c JOIN ended e USING (tenant_id, call_id)
                  UNION ALL
                  SELECT tenant_id, day, 0, 0, 0, 0, 1 FROM new_leads)
                INSERT INTO business_metrics AS m (tenant_id, day, calls, answered, missed, handle_seconds, leads)
                SELECT tenant_id, day, sum(calls), sum(answered), sum(missed), sum(handle_seconds), sum(leads)
                FROM deltas GROUP BY 1, 2 ORDER BY 1, 2
                ON CONFLICT (tenant_id, day) DO UPDATE SET
                  calls = m.calls + EXCLUDED.calls, answered = m.answered + EXCLUDED.answered,
                  missed = m.missed + EXCLUDED.missed, handle_seconds = m.handle_seconds + EXCLUDED.handle_seconds,
                  leads = m.leads + EXCLUDED.leads
                """)
        }
    }
}

/// Every projection VoiceCore ships, in the order `voicecore project` lists them.
public enum StandardProjections {
    public static let all: [any Projection] = [
        ArchiveProjection(), TenantsProjection(), CallsProjection(), TranscriptsProjection(), ConversationsProjection(),
        CRMProjection(), AnalyticsProjection(), BillingProjection(), AuditProjection(),
    ]

    /// The projections named, or all of them; an unknown name is an error naming the known ones.
    public static func named(_ names: [String]) throws -> [any Projection] {
        if names.isEmpty { return all }
        return try names.map { name in
            guard let projection = all.first(where: { $0.name == name }) else {
                throw ProjectorError("unknown projection '\(name)': known are \(all.map(\.name).joined(separator: ", "))")
            }
            return projection
        }
    }
}
