-- Privacy (issue 33), second part: finding a caller's archived events without reading the
-- tenant's whole archive, events that arrive after an erasure completed, and retention runs that
-- miss nothing archived late and go on past a failing tenant.
--
-- The indexes are built inside the migration's transaction (the migrator runs every file in one,
-- so CREATE INDEX CONCURRENTLY is not possible): the archive projector's inserts into event_log
-- wait while they are built. On a large archive run this migration in a quiet hour, or build the
-- three indexes beforehand by hand with CREATE INDEX CONCURRENTLY under these names (then this
-- file's IF NOT EXISTS skips them).

-- A caller's archived events by subject (a call's, a contact's or a lead's id). Without it an
-- erasure read every archived event of the tenant (event_log_tenant_time) to find a caller's
-- few; the late-event sweep (LateEventSweep) asks, for each completed erasure, whether anything
-- was archived about its subjects since its last look: recorded_at last, so that question is one
-- short range of this index per subject, answered from the index alone when the answer is no.
CREATE INDEX IF NOT EXISTS event_log_subject ON event_log (tenant_id, subject, recorded_at);

-- Leads and interactions are archived under their own subject (the lead, the contact) but name a
-- call in their payload: an erased call's LeadCreated and InteractionLogged are found by it.
-- Partial, so the archive's other events (nearly all of them) cost nothing here; the queries
-- that use it spell the same two types as literals (a bound array would not let the planner
-- prove the predicate).
CREATE INDEX IF NOT EXISTS event_log_crm_call ON event_log (tenant_id, (payload->>'call_id'))
  WHERE type IN ('voicecore.crm.lead-created', 'voicecore.crm.interaction-logged');

-- What was archived since a time, whatever the event's own time: a backlog published late (an AI
-- outage, a retried dead letter) carries old event times but a recent recorded_at. Rows arrive in
-- recorded_at order, so a block range index narrows that to the newest pages for next to nothing.
CREATE INDEX IF NOT EXISTS event_log_recorded ON event_log USING brin (recorded_at);

-- The late-event sweep's progress per completed erasure:
--   late_swept_from: archived rows recorded at or after it (less a margin: recorded_at is the
--                    archiving transaction's start, it commits later) are still to be looked at;
--                    NULL: from the erasure's request.
--   late_marks:      late events already erased in the archive whose read models and stream
--                    entries wait until every reader has processed them ([{stream, entry}]).
ALTER TABLE privacy_erasures ADD COLUMN late_swept_from timestamptz;
ALTER TABLE privacy_erasures ADD COLUMN late_marks jsonb;

-- Retention runs:
--   late_from: the next run of the tenant looks again at everything archived since then with an
--              event time older than its cutoffs (late arrivals the time windows alone miss);
--   error:     why the run stopped (the other tenants' runs go on); never personal data.
ALTER TABLE privacy_retention_runs ADD COLUMN late_from timestamptz;
ALTER TABLE privacy_retention_runs ADD COLUMN error text;
