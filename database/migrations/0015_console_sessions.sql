-- The console's sign-in sessions (`/app`): a browser's session cookie holds a 256-bit random
-- token; this table holds only its SHA-256, so reading it signs nobody in.
--
-- A tenant session (tenant_id and key_id set) is bound to the API key it signed in with: it is
-- live only while that key is (the edge joins tenant_api_keys ... revoked_at IS NULL), and goes
-- with the key and the tenant when they are deleted. An operator session (tenant_id NULL) keeps
-- admin_key_mac, an HMAC-SHA256 under the admin key of the session's digest: it dies when the
-- admin key changes, and says nothing about that key. Sessions last 12 hours; sign-out sets
-- revoked_at, which every edge process sees at the next request.
--
-- Not granted to voicecore_tenant: a tenant-scoped session reads no one's sessions.

CREATE TABLE console_sessions (
  session_sha256 bytea PRIMARY KEY CHECK (octet_length(session_sha256) = 32),
  tenant_id      uuid REFERENCES tenant_directory ON DELETE CASCADE,
  key_id         text REFERENCES tenant_api_keys ON DELETE CASCADE,
  admin_key_mac  bytea CHECK (admin_key_mac IS NULL OR octet_length(admin_key_mac) = 32),
  csrf_token     text NOT NULL CHECK (csrf_token <> ''),
  created_at     timestamptz NOT NULL DEFAULT now(),
  expires_at     timestamptz NOT NULL,
  revoked_at     timestamptz,
  CHECK ((tenant_id IS NOT NULL AND key_id IS NOT NULL AND admin_key_mac IS NULL)
      OR (tenant_id IS NULL AND key_id IS NULL AND admin_key_mac IS NOT NULL))
);
CREATE INDEX console_sessions_by_expiry ON console_sessions (expires_at);
CREATE INDEX console_sessions_by_key ON console_sessions (key_id) WHERE key_id IS NOT NULL;

REVOKE ALL ON console_sessions FROM voicecore_tenant;
