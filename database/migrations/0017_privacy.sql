-- Privacy (issue 33): erasing a caller everywhere, and retention per tenant.
--
-- An erasure is a resumable state machine run by the privacy service
-- (VoiceCoreProjections/Privacy/CallerEraser.swift):
--   pending → waiting → erasing → purging → completed
-- pending:  the request is recorded; the caller's calls, contacts and leads are not resolved yet.
-- waiting:  the ids are resolved (call_ids, contact_ids, lead_ids); it waits until no call of the
--           set is in progress and every reader of the streams has processed what was published
--           about them (stream_marks: the stream heads captured when the wait began;
--           waiting_for: what it waits for, e.g. a consumer group or a projection).
-- erasing:  the read models and the archive (event_log) are redacted in batches.
-- purging:  the caller's stream entries, dead letters and Redis state are deleted and Redis
--           rewrites its append-only file.
-- completed: CallerErased is published, the completion audit row written, the sealed identifier
--           dropped. Only the identifier's hash stays (to answer "was this erased?").
--
-- counts holds what each step changed, added in the transaction that changed it, so a crash and a
-- rerun never count a row twice. Keys: calls, transcript_lines, turns, outcomes, leads, contacts,
-- interactions, archived_events, stream_entries, dead_letters, redis_keys.
--
-- identifier_hash: hex HMAC-SHA256 (key derived from the master key) of
-- "<tenant uuid>|<kind>|<normalised identifier>"; the identifier itself is never stored in clear:
-- identifier_sealed is a SecretBox under the master key bound to the tenant and
-- 'privacy.identifier', needed only until the erasure completes.
CREATE TABLE privacy_erasures (
  erasure_id        uuid PRIMARY KEY,
  tenant_id         uuid NOT NULL,
  identifier_kind   text NOT NULL CHECK (identifier_kind IN ('phone', 'email', 'contact')),
  identifier_hash   text NOT NULL CHECK (identifier_hash ~ '^[0-9a-f]{64}$'),
  identifier_sealed bytea,
  state             text NOT NULL DEFAULT 'pending'
                      CHECK (state IN ('pending', 'waiting', 'erasing', 'purging', 'completed')),
  waiting_for       text,
  actor             text NOT NULL CHECK (actor IN ('admin', 'operator', 'api_key', 'system')),
  api_key_id        text CHECK (api_key_id IS NULL OR api_key_id ~ '^[0-9a-f]{16}$'),
  request_id        uuid UNIQUE,
  counts            jsonb NOT NULL DEFAULT '{}'::jsonb,
  call_ids          uuid[],
  contact_ids       uuid[],
  lead_ids          uuid[],
  stream_marks      jsonb,
  -- The last error a step met (the service retries); never personal data.
  last_error        text,
  requested_at      timestamptz NOT NULL DEFAULT now(),
  updated_at        timestamptz NOT NULL DEFAULT now(),
  completed_at      timestamptz,
  CHECK ((state = 'completed') = (completed_at IS NOT NULL))
);
-- One open erasure per identifier of a tenant: asking again returns the open one.
CREATE UNIQUE INDEX privacy_erasures_open_identifier
  ON privacy_erasures (tenant_id, identifier_hash) WHERE state <> 'completed';
-- The service's work list: the open erasures, oldest first.
CREATE INDEX privacy_erasures_open ON privacy_erasures (requested_at, erasure_id) WHERE state <> 'completed';
-- A tenant's erasures, newest first.
CREATE INDEX privacy_erasures_tenant ON privacy_erasures (tenant_id, requested_at DESC, erasure_id DESC);

-- One row per retention run of a tenant. cutoffs: {"transcripts": t, "recordings": t, "calls": t}
-- (what was older than these instants was erased); counts: what the run changed (the count keys
-- above). A run changes only what an earlier run left, so a second run at once records zeros.
CREATE TABLE privacy_retention_runs (
  run_id      uuid PRIMARY KEY,
  tenant_id   uuid NOT NULL,
  started_at  timestamptz NOT NULL,
  finished_at timestamptz,
  cutoffs     jsonb NOT NULL,
  counts      jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX privacy_retention_runs_tenant ON privacy_retention_runs (tenant_id, started_at DESC);

-- The audit trail gains the 'system' actor: retention runs (no one asked for them). An erasure's
-- completion row carries the actor of whoever requested it.
ALTER TABLE audit_logs DROP CONSTRAINT audit_logs_actor;
ALTER TABLE audit_logs ADD CONSTRAINT audit_logs_actor CHECK (actor IN ('admin', 'operator', 'api_key', 'system'));

-- Tenant reads: its own erasures (never the sealed identifier, nor the service's errors) and runs.
DO $$
DECLARE
  t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['privacy_erasures', 'privacy_retention_runs']
  LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format($p$CREATE POLICY tenant_isolation ON %I
                     USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
                     WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)$p$, t);
  END LOOP;
END
$$;
GRANT SELECT (erasure_id, tenant_id, identifier_kind, identifier_hash, state, waiting_for, actor, api_key_id,
              request_id, counts, call_ids, contact_ids, lead_ids, requested_at, updated_at, completed_at)
  ON privacy_erasures TO voicecore_tenant;
GRANT SELECT ON privacy_retention_runs TO voicecore_tenant;
