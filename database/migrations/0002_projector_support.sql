-- What the projectors need beyond the read models of 0001.

-- Events may arrive for a call whose CallStarted has not been projected yet (a late or reordered
-- event): the session row is created from whatever is known and completed later.
ALTER TABLE call_sessions ALTER COLUMN provider DROP NOT NULL;
ALTER TABLE call_sessions ALTER COLUMN provider_call_id DROP NOT NULL;
ALTER TABLE call_sessions ALTER COLUMN direction DROP NOT NULL;
ALTER TABLE call_sessions ALTER COLUMN from_number DROP NOT NULL;
ALTER TABLE call_sessions ALTER COLUMN to_number DROP NOT NULL;

-- The strongest intent seen on a call wins, whatever order the detections arrive in.
ALTER TABLE call_analytics ADD COLUMN intent_confidence double precision;
-- The day a call counted in business_metrics (set once, so a duplicated CallEnded counts once).
ALTER TABLE call_analytics ADD COLUMN counted_day date;

-- Usage line items: one row per usage id, so a redelivered or republished UsageRecorded bills
-- once. billing_usage holds the per tenant × day × meter sums of these rows.
CREATE TABLE billing_usage_items (
  tenant_id       uuid NOT NULL,
  usage_id        uuid NOT NULL,
  day             date NOT NULL,
  meter           text NOT NULL,
  quantity        numeric NOT NULL,
  unit            text NOT NULL,
  call_id         uuid,
  source_event_id uuid NOT NULL,
  occurred_at     timestamptz NOT NULL,
  PRIMARY KEY (tenant_id, usage_id)
);

-- Leads counted in business_metrics (a duplicated LeadCreated counts once).
CREATE TABLE business_metrics_leads (
  tenant_id uuid NOT NULL,
  lead_id   uuid NOT NULL,
  day       date NOT NULL,
  PRIMARY KEY (tenant_id, lead_id)
);

-- Entries a projection could not apply (undecodable, or rejected by the database), recorded in
-- the same transaction as the checkpoint that passes them: nothing is skipped silently.
CREATE TABLE projection_failures (
  projection text NOT NULL,
  stream     text NOT NULL,
  entry_id   text NOT NULL,
  event_id   uuid,
  type       text,
  error      text NOT NULL,
  fields     jsonb NOT NULL,
  failed_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (projection, stream, entry_id)
);

DO $$
DECLARE
  t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['billing_usage_items', 'business_metrics_leads']
  LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format($p$CREATE POLICY tenant_isolation ON %I
                     USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
                     WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)$p$, t);
    EXECUTE format('GRANT SELECT ON %I TO voicecore_tenant', t);
  END LOOP;
END
$$;
