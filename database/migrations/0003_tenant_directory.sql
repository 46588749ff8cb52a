-- The tenant directory: who may call the edge and with which credentials.
--
-- Secrets never appear in clear here: provider secrets (Twilio auth token, Twilio webhook shared
-- key) are AES-256-GCM sealed boxes under the deployment's master key (VOICECORE_MASTER_KEY),
-- bound to their tenant and field; API keys are stored only as SHA-256 of their secret part.
-- Telnyx public keys are public, stored raw (32 bytes, Ed25519).
--
-- Neither table is granted to voicecore_tenant: a tenant-scoped session reads no credentials,
-- not even its own. The edge and `voicecore tenants` use the owning role.

CREATE TABLE tenant_directory (
  tenant_id           uuid PRIMARY KEY,
  name                text NOT NULL CHECK (name <> ''),
  plan                text NOT NULL,
  time_zone           text NOT NULL,
  twilio_account_sid  text,
  twilio_auth_token   bytea,
  twilio_shared_key   bytea,
  telnyx_public_key   bytea CHECK (telnyx_public_key IS NULL OR octet_length(telnyx_public_key) = 32),
  requests_per_second integer NOT NULL DEFAULT 50 CHECK (requests_per_second > 0),
  created_at          timestamptz NOT NULL DEFAULT now(),
  updated_at          timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE tenant_api_keys (
  key_id        text PRIMARY KEY,
  tenant_id     uuid NOT NULL REFERENCES tenant_directory ON DELETE CASCADE,
  secret_sha256 bytea NOT NULL CHECK (octet_length(secret_sha256) = 32),
  created_at    timestamptz NOT NULL DEFAULT now(),
  revoked_at    timestamptz
);
CREATE INDEX tenant_api_keys_by_tenant ON tenant_api_keys (tenant_id);
