-- The tenant directory's outbox: each event the directory announces (TenantProvisioned,
-- TenantSettingsChanged) is written here in the same transaction as the change it announces, so
-- the two commit together or not at all. An outbox relay (VoiceCoreBus.OutboxRelay; run by
-- `voicecore up`, `voicecore consume tenants` and an edge with the admin API) publishes each row
-- to its stream, deduplicated on deduplication_key, and then deletes it: a crash at any point
-- neither loses the event nor appends it twice.
--
-- position is the relay order. A writer takes its tenant's row lock (tenant_directory) before
-- inserting here, so one tenant's rows get positions in the order their transactions commit.
-- The columns are the envelope's attributes (the wire contract); data keeps the payload's exact
-- bytes. Not granted to voicecore_tenant.

CREATE TABLE tenant_outbox (
  position          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  event_id          uuid NOT NULL UNIQUE,
  tenant_id         uuid NOT NULL,
  category          text NOT NULL,
  kind              text NOT NULL CHECK (kind IN ('event', 'command')),
  deduplication_key text NOT NULL CHECK (deduplication_key <> ''),
  source            text NOT NULL,
  type              text NOT NULL,
  time              timestamptz NOT NULL,
  subject           text NOT NULL,
  dataschema        text NOT NULL,
  correlation_id    uuid NOT NULL,
  causation_id      uuid,
  data              bytea NOT NULL,
  written_at        timestamptz NOT NULL DEFAULT now()
);
