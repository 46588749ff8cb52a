-- Telnyx Call Control: the tenant's Telnyx API key (API v2), with which the telephony service
-- answers the tenant's Telnyx calls and steers their conversations (answer, gather, speak,
-- transfer, record, hang up).
--
-- A secret like the Twilio auth token: an AES-256-GCM sealed box under the deployment's master
-- key (VOICECORE_MASTER_KEY), bound to its tenant and the field `telnyx_api_key`, never in clear.
-- Write-only through the admin API and `voicecore tenants`; summaries say only whether it is set.
ALTER TABLE tenant_directory ADD COLUMN telnyx_api_key bytea;
