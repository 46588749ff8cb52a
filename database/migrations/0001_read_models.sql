-- VoiceCore read models. Applied by `voicecore migrate up` inside one transaction.
--
-- Every tenant table carries tenant_id and row-level security: a session in the role
-- voicecore_tenant sees and changes only rows of the tenant in `app.tenant_id`
--   SET ROLE voicecore_tenant; SET app.tenant_id = '<tenant uuid>';
-- The owner of the tables (the role that runs migrations and projectors) is not subject to the
-- policies, so projectors write every tenant's rows.

-- Roles belong to the whole cluster, so migrations of several databases or schemas may create
-- it at the same moment: a concurrent creator is not an error.
DO $$
BEGIN
  CREATE ROLE voicecore_tenant NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
  NULL;
END
$$;
-- The migrating role may switch to the tenant role (for tenant-scoped sessions and tests).
DO $$
BEGIN
  EXECUTE format('GRANT voicecore_tenant TO %I', current_user);
EXCEPTION WHEN duplicate_object OR unique_violation THEN
  NULL;
END
$$;

CREATE TABLE tenants (
  tenant_id      uuid PRIMARY KEY,
  name           text NOT NULL,
  plan           text NOT NULL CHECK (plan IN ('starter', 'growth', 'enterprise')),
  time_zone      text NOT NULL,
  settings       jsonb,
  created_at     timestamptz NOT NULL,
  updated_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE call_sessions (
  tenant_id        uuid NOT NULL,
  call_id          uuid NOT NULL,
  provider         text NOT NULL,
  provider_call_id text NOT NULL,
  direction        text NOT NULL CHECK (direction IN ('inbound', 'outbound')),
  from_number      text NOT NULL,
  to_number        text NOT NULL,
  status           text NOT NULL,
  started_at       timestamptz,
  answered_at      timestamptz,
  ended_at         timestamptz,
  duration_seconds integer CHECK (duration_seconds >= 0),
  end_status       text CHECK (end_status IN ('completed', 'busy', 'failed', 'no-answer', 'canceled')),
  hung_up_by       text,
  updated_at       timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, call_id)
);
CREATE INDEX call_sessions_started ON call_sessions (tenant_id, started_at);

CREATE TABLE transcripts (
  tenant_id       uuid NOT NULL,
  call_id         uuid NOT NULL,
  track           text NOT NULL CHECK (track IN ('inbound', 'outbound')),
  sequence        integer NOT NULL CHECK (sequence >= 0),
  text            text NOT NULL,
  confidence      double precision NOT NULL,
  start_offset_ms integer NOT NULL,
  end_offset_ms   integer NOT NULL,
  language        text,
  PRIMARY KEY (tenant_id, call_id, track, sequence)
);

CREATE TABLE crm_contacts (
  tenant_id     uuid NOT NULL,
  contact_id    uuid NOT NULL,
  name          text,
  phone         text,
  email         text,
  first_seen_at timestamptz NOT NULL,
  last_seen_at  timestamptz NOT NULL,
  PRIMARY KEY (tenant_id, contact_id)
);
-- Contacts are deduplicated by phone or email within a tenant.
CREATE UNIQUE INDEX crm_contacts_phone ON crm_contacts (tenant_id, phone) WHERE phone IS NOT NULL;
CREATE UNIQUE INDEX crm_contacts_email ON crm_contacts (tenant_id, lower(email)) WHERE email IS NOT NULL;

CREATE TABLE leads (
  tenant_id  uuid NOT NULL,
  lead_id    uuid NOT NULL,
  call_id    uuid,
  contact_id uuid,
  name       text,
  phone      text,
  email      text,
  intent     text NOT NULL,
  source     text NOT NULL CHECK (source IN ('call', 'api')),
  notes      text,
  created_at timestamptz NOT NULL,
  PRIMARY KEY (tenant_id, lead_id)
);

CREATE TABLE interactions (
  tenant_id        uuid NOT NULL,
  interaction_id   uuid NOT NULL,
  contact_id       uuid NOT NULL,
  call_id          uuid,
  channel          text NOT NULL CHECK (channel IN ('call', 'sms', 'email', 'api')),
  summary          text,
  duration_seconds integer,
  occurred_at      timestamptz NOT NULL,
  PRIMARY KEY (tenant_id, interaction_id)
);

CREATE TABLE call_analytics (
  tenant_id        uuid NOT NULL,
  call_id          uuid NOT NULL,
  duration_seconds integer,
  outcome          text,
  intent           text,
  sentiment        text,
  sentiment_score  double precision,
  word_count       integer,
  updated_at       timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, call_id)
);

-- Per tenant and day (in the tenant's time zone, decided by the projection).
CREATE TABLE business_metrics (
  tenant_id           uuid NOT NULL,
  day                 date NOT NULL,
  calls               integer NOT NULL DEFAULT 0,
  answered            integer NOT NULL DEFAULT 0,
  missed              integer NOT NULL DEFAULT 0,
  handle_seconds      bigint NOT NULL DEFAULT 0,
  leads               integer NOT NULL DEFAULT 0,
  average_handle_seconds double precision GENERATED ALWAYS AS (CASE WHEN answered > 0 THEN handle_seconds::double precision / answered END) STORED,
  conversion_rate     double precision GENERATED ALWAYS AS (CASE WHEN calls > 0 THEN leads::double precision / calls END) STORED,
  PRIMARY KEY (tenant_id, day)
);

CREATE TABLE billing_usage (
  tenant_id uuid NOT NULL,
  day       date NOT NULL,
  meter     text NOT NULL CHECK (meter IN ('call_minutes', 'transcription_seconds', 'ai_requests')),
  quantity  numeric NOT NULL DEFAULT 0,
  unit      text NOT NULL,
  PRIMARY KEY (tenant_id, day, meter)
);

-- The archive of every event, for replay. event_id is unique: an event is archived once.
CREATE TABLE event_log (
  event_id    uuid PRIMARY KEY,
  stream      text NOT NULL,
  entry_id    text NOT NULL,
  type        text NOT NULL,
  version     integer NOT NULL,
  tenant_id   uuid NOT NULL,
  subject     text NOT NULL,
  time        timestamptz NOT NULL,
  payload     jsonb NOT NULL,
  recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX event_log_time ON event_log (time);
CREATE INDEX event_log_tenant_time ON event_log (tenant_id, time);

CREATE TABLE audit_logs (
  audit_id  bigserial PRIMARY KEY,
  tenant_id uuid NOT NULL,
  actor     text NOT NULL,
  action    text NOT NULL,
  details   jsonb,
  at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_logs_tenant_at ON audit_logs (tenant_id, at);

-- Where each projection stands in each stream (written in the same transaction as its rows).
CREATE TABLE projection_checkpoints (
  projection    text NOT NULL,
  stream        text NOT NULL,
  last_entry_id text NOT NULL,
  updated_at    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (projection, stream)
);

-- Row-level security on every tenant table.
DO $$
DECLARE
  t text;
BEGIN
  EXECUTE format('GRANT USAGE ON SCHEMA %I TO voicecore_tenant', current_schema());
  FOREACH t IN ARRAY ARRAY['tenants', 'call_sessions', 'transcripts', 'crm_contacts', 'leads', 'interactions',
                           'call_analytics', 'business_metrics', 'billing_usage', 'event_log', 'audit_logs']
  LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format($p$CREATE POLICY tenant_isolation ON %I
                     USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
                     WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)$p$, t);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO voicecore_tenant', t);
  END LOOP;
END
$$;
GRANT USAGE ON SEQUENCE audit_logs_audit_id_seq TO voicecore_tenant;
