-- The tenant-scoped role reads, and only reads.
--
-- 0001 granted voicecore_tenant INSERT, UPDATE and DELETE on every tenant table, so a session in
-- that role (the edge's read API runs every tenant read as it) could rewrite its own bills, its
-- archive and its audit trail. Read models are written by the projectors, which run as the
-- owning role; the role of tenant reads keeps SELECT, under row-level security.
DO $$
DECLARE
  t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['tenants', 'call_sessions', 'transcripts', 'crm_contacts', 'leads', 'interactions',
                           'call_analytics', 'business_metrics', 'billing_usage', 'event_log', 'audit_logs',
                           'billing_usage_items', 'business_metrics_leads']
  LOOP
    EXECUTE format('REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON %I FROM voicecore_tenant', t);
    EXECUTE format('GRANT SELECT ON %I TO voicecore_tenant', t);
  END LOOP;
END
$$;
REVOKE USAGE ON SEQUENCE audit_logs_audit_id_seq FROM voicecore_tenant;
