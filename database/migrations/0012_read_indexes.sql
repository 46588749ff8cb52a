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
