-- The audit trail: one row per change made through the tenant and admin APIs (and by an operator
-- at the tenant directory), written where the change is made.
--
-- - Admin changes (provisioning, API key rotation, credential changes) are written by the tenant
--   directory in the transaction of the change itself: a change refused or rolled back leaves no
--   row, a committed one leaves exactly one.
-- - Tenant API commands (create a lead, update a contact, change settings) take effect as a command
--   on its stream; the `audit` projection writes their row from that stream, in the transaction of
--   its checkpoint.
-- Either way a row is keyed by the request id the edge gave the request (and answered in
-- `X-Request-Id`), so writing it again (a retried transaction, a command delivered twice) adds
-- nothing. The trail is a record, not a read model: replay never rebuilds it (the archive holds
-- events, not the commands it is written from).
--
-- actor:        'admin' (the admin key), 'operator' (the directory used directly: `voicecore
--               tenants`, `up`'s demo tenant) or 'api_key' (a tenant API key, named by its public
--               key id in api_key_id; the key itself is never stored: the check allows only the
--               16 hex digits of a key id there).
-- action:       what was asked, e.g. 'tenant.provision', 'api_key.rotate', 'lead.create'.
-- target:       what it changed, path-like: 'tenants/<id>', 'api-keys/<key id>', 'leads/<id>',
--               'contacts/<id>', 'settings'.
-- outcome:      'succeeded' (the change is committed with the row) or 'accepted' (a command taken
--               onto its stream; its service applies it).
-- details:      names of what changed, never secrets or a caller's personal data.
ALTER TABLE audit_logs
  ADD COLUMN request_id uuid,
  ADD COLUMN api_key_id text,
  ADD COLUMN target     text,
  ADD COLUMN outcome    text;

-- No code wrote the table before this migration; should a row exist, it keeps a unique id.
UPDATE audit_logs SET request_id = gen_random_uuid() WHERE request_id IS NULL;
UPDATE audit_logs SET target = '' WHERE target IS NULL;
UPDATE audit_logs SET outcome = 'succeeded' WHERE outcome IS NULL;
UPDATE audit_logs SET actor = 'operator' WHERE actor NOT IN ('admin', 'operator', 'api_key');
UPDATE audit_logs SET api_key_id = NULL WHERE actor <> 'api_key';

ALTER TABLE audit_logs
  ALTER COLUMN request_id SET NOT NULL,
  ALTER COLUMN target SET NOT NULL,
  ALTER COLUMN outcome SET NOT NULL,
  ADD CONSTRAINT audit_logs_once_per_request UNIQUE (request_id),
  ADD CONSTRAINT audit_logs_outcome CHECK (outcome IN ('succeeded', 'accepted')),
  ADD CONSTRAINT audit_logs_actor CHECK (actor IN ('admin', 'operator', 'api_key')),
  -- A tenant API key is named by its key id (16 hex digits; NULL for a command from an edge that
  -- did not yet name its key); the other actors have none.
  ADD CONSTRAINT audit_logs_api_key_id CHECK (
    CASE WHEN actor = 'api_key' THEN api_key_id IS NULL OR api_key_id ~ '^[0-9a-f]{16}$' ELSE api_key_id IS NULL END);

-- GET /v1/audit: a tenant's rows newest first, keyset (at, request_id).
DROP INDEX audit_logs_tenant_at;
CREATE INDEX audit_logs_tenant_at ON audit_logs (tenant_id, at DESC, request_id DESC);

-- Row-level security stays (0001); voicecore_tenant keeps SELECT only (0009).
