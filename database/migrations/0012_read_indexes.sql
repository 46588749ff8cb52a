-- What the read API (GET /v1/…) needs of the read models: indexes for its statements, each
-- checked with EXPLAIN on 100,000 calls over 20 tenants, and the AI's summary of a call.

-- Calls (VoiceCoreQueries/CallQueries.swift) ------------------------------------------------

-- GET /v1/calls lists a tenant's calls newest first by start, tie-broken by id, and pages by
-- keyset: (start, id) < (the last item's). A call whose CallStarted is not projected yet has no
-- start; it sorts as the oldest (-infinity) until it has one, so the key is never NULL and the
-- whole order is one index range: an index scan that stops after `limit + 1` rows on any page.
CREATE INDEX call_sessions_recent
  ON call_sessions (tenant_id, (COALESCE(started_at, '-infinity'::timestamptz)) DESC, call_id DESC);
-- The `number` filter (caller OR callee): two index ranges, OR'ed in a bitmap.
CREATE INDEX call_sessions_from_number ON call_sessions (tenant_id, from_number);
CREATE INDEX call_sessions_to_number ON call_sessions (tenant_id, to_number);

-- A call's lead (has_lead of every listed call, and the call's detail), interaction and usage items.
CREATE INDEX leads_call ON leads (tenant_id, call_id) WHERE call_id IS NOT NULL;
CREATE INDEX interactions_call ON interactions (tenant_id, call_id) WHERE call_id IS NOT NULL;
CREATE INDEX billing_usage_items_call ON billing_usage_items (tenant_id, call_id) WHERE call_id IS NOT NULL;

-- The AI's summary of a call (CallSummarized: its text, key sentences and time) was archived in
-- event_log only; the analytics projection keeps the latest beside the sentiment it already
-- keeps, so GET /v1/calls/{call} reads it with the call. Calls summarized before this migration
-- get theirs when the analytics projection is replayed (`voicecore replay analytics`).
ALTER TABLE call_analytics ADD COLUMN summary text;
ALTER TABLE call_analytics ADD COLUMN key_sentences jsonb;
ALTER TABLE call_analytics ADD COLUMN summarized_at timestamptz;

-- CRM (VoiceCoreQueries/CRMQueries.swift) ---------------------------------------------------

-- GET /v1/leads: newest first by creation, tie-broken by id, paged by keyset; `from`/`to` are a
-- range of the same index. `intent` and `source` (a handful of values each) filter that walk.
CREATE INDEX leads_recent ON leads (tenant_id, created_at DESC, lead_id DESC);
-- A contact's leads (`contact_id`, and the contact's detail), in the same order.
CREATE INDEX leads_contact ON leads (tenant_id, contact_id, created_at DESC, lead_id DESC) WHERE contact_id IS NOT NULL;
-- GET /v1/contacts: most recently seen first, tie-broken by id (phone and e-mail searches use the
-- unique indexes of 0001).
CREATE INDEX crm_contacts_recent ON crm_contacts (tenant_id, last_seen_at DESC, contact_id DESC);
-- A contact's interactions, newest first.
CREATE INDEX interactions_contact ON interactions (tenant_id, contact_id, occurred_at DESC, interaction_id DESC);
-- Contacts by e-mail without regard to case. Under row-level security only leakproof
-- expressions over a row may be index conditions, and lower() is not leakproof, so the unique
-- index on lower(email) (0001) cannot serve `lower(email) = lower($1)` for the tenant role (it
-- would read every contact of the tenant): the lower-cased e-mail is a column of its own,
-- compared with = (leakproof).
ALTER TABLE crm_contacts ADD COLUMN email_key text GENERATED ALWAYS AS (lower(email)) STORED;
CREATE INDEX crm_contacts_email_key ON crm_contacts (tenant_id, email_key) WHERE email_key IS NOT NULL;
