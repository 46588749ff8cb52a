-- What the platform's services read about a tenant beyond its edge credentials.
--
-- ai_settings: the receptionist's settings (greeting, intents and their phrases, business hours),
-- written by the tenants service when it accepts a ChangeSettings command, read by the AI service.
-- NULL means the built-in defaults.
--
-- tenant_webhooks: outbound webhooks the integrations service delivers to. The signing secret is
-- sealed like the provider secrets (AES-256-GCM under VOICECORE_MASTER_KEY, bound to tenant and
-- field); receivers verify X-VoiceCore-Signature with it.

ALTER TABLE tenant_directory ADD COLUMN ai_settings jsonb;

CREATE TABLE tenant_webhooks (
  webhook_id     uuid PRIMARY KEY,
  tenant_id      uuid NOT NULL REFERENCES tenant_directory ON DELETE CASCADE,
  url            text NOT NULL CHECK (url ~ '^https?://'),
  format         text NOT NULL DEFAULT 'json' CHECK (format IN ('json', 'slack')),
  event_types    text[] NOT NULL CHECK (cardinality(event_types) > 0),
  signing_secret bytea NOT NULL,
  created_at     timestamptz NOT NULL DEFAULT now(),
  disabled_at    timestamptz
);
CREATE INDEX tenant_webhooks_by_tenant ON tenant_webhooks (tenant_id) WHERE disabled_at IS NULL;
