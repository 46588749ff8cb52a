-- CRM contacts: one per phone and per e-mail, in any order of arrival.
--
-- The crm service decides which contact a phone or e-mail belongs to (its contact directory in
-- Redis) and publishes each ContactUpserted with the contact's full current phone and e-mail at a
-- time that increases strictly per contact. Events of one contact can still reach the projection
-- out of that order (the service publishes from several partitions at once), so a row remembers
-- the time of the event its phone and e-mail came from, and an older event fills only what is
-- missing. Rows from before this migration count as older than any event.
ALTER TABLE crm_contacts ADD COLUMN revised_at timestamptz NOT NULL DEFAULT '-infinity';

-- The contact of each lead, as the lead's ContactUpserted names it. LeadCreated and that
-- ContactUpserted sit on different partitions (one is ordered by the lead, the other by the
-- contact), so either may be projected first, by two transactions at once: each writes the
-- lead's row here first (LeadCreated without a contact), so the second waits for the first, and
-- `leads.contact_id` is set by whichever comes second.
CREATE TABLE crm_lead_contacts (
  tenant_id  uuid NOT NULL,
  lead_id    uuid NOT NULL,
  contact_id uuid,
  PRIMARY KEY (tenant_id, lead_id)
);

ALTER TABLE crm_lead_contacts ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON crm_lead_contacts
  USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
  WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);
GRANT SELECT ON crm_lead_contacts TO voicecore_tenant;
