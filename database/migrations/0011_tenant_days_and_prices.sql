-- Analytics in the tenant's time zone, and the price list of the invoice preview.
--
-- 1. effective_time_zone(zone): the zone business days are counted in. The tenant directory is
--    the authority on a tenant's zone (provisioning writes it, refusing any name Postgres does not
--    list in pg_timezone_names; nothing changes it afterwards, and replay never rebuilds it). A
--    tenant without a directory row, or with a name Postgres does not recognise (a row written
--    before provisioning checked names), counts in UTC: the analytics projection never fails on
--    a zone. Deterministic for a given server's time zone data, so a replay computes the days the
--    live projection did.
-- 2. tenant_profile: the tenant-scoped role's window on its own directory row (plan and time zone
--    only; no credential), so the read side bills and dates by the same authority as the services
--    and the projection. The view filters by app.tenant_id and runs with its owner's rights;
--    tenant_directory itself stays ungranted.
-- 3. billing_prices: the price list, one row per plan and meter (see docs/edge.md, "Usage").
-- 4. business_metrics re-bucketed: rows counted in UTC days move to the tenant's days (calls by
--    the end time of their first CallEnded, leads by the creation time of their first LeadCreated,
--    both as archived in event_log, which is what a replay reads).

CREATE FUNCTION effective_time_zone(zone text) RETURNS text
LANGUAGE plpgsql STABLE AS $$
BEGIN
  IF zone IS NULL THEN
    RETURN 'UTC';
  END IF;
  -- Postgres raises invalid_parameter_value for a zone it does not recognise.
  PERFORM now() AT TIME ZONE zone;
  RETURN zone;
EXCEPTION WHEN invalid_parameter_value THEN
  RETURN 'UTC';
END
$$;

CREATE VIEW tenant_profile WITH (security_barrier) AS
  SELECT tenant_id, plan, time_zone FROM tenant_directory
  WHERE tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid;
GRANT SELECT ON tenant_profile TO voicecore_tenant;

-- Unit prices in minor units of the currency (US cents), fractions allowed (1.5 cents a minute).
-- A meter's amount on an invoice is round(quantity × unit_price_minor), half up, per meter and
-- month; the total is the sum of the meters' amounts. One currency for every price: a second one
-- would need invoices split by currency first.
CREATE TABLE billing_prices (
  plan             text NOT NULL CHECK (plan IN ('starter', 'growth', 'enterprise')),
  meter            text NOT NULL CHECK (meter IN ('call_minutes', 'transcription_seconds', 'ai_requests')),
  unit             text NOT NULL CHECK (unit IN ('minute', 'second', 'request')),
  unit_price_minor numeric NOT NULL CHECK (unit_price_minor >= 0),
  currency         text NOT NULL DEFAULT 'USD' CHECK (currency = 'USD'),
  PRIMARY KEY (plan, meter)
);
INSERT INTO billing_prices (plan, meter, unit, unit_price_minor) VALUES
  ('starter',    'call_minutes',          'minute',  2.5),
  ('starter',    'transcription_seconds', 'second',  0.04),
  ('starter',    'ai_requests',           'request', 0.5),
  ('growth',     'call_minutes',          'minute',  1.5),
  ('growth',     'transcription_seconds', 'second',  0.03),
  ('growth',     'ai_requests',           'request', 0.4),
  ('enterprise', 'call_minutes',          'minute',  1.0),
  ('enterprise', 'transcription_seconds', 'second',  0.02),
  ('enterprise', 'ai_requests',           'request', 0.25);
-- The price list is the same for every tenant: no tenant column, no row-level security.
GRANT SELECT ON billing_prices TO voicecore_tenant;

-- The invoice preview's line items: a tenant's items of a month, newest first.
CREATE INDEX billing_usage_items_by_time ON billing_usage_items (tenant_id, occurred_at, usage_id);

-- Re-bucketing. Only tenants whose zone is not UTC can have rows on the wrong day.
CREATE TEMPORARY TABLE rebucket_zones ON COMMIT DROP AS
  SELECT tenant_id, effective_time_zone(time_zone) AS zone FROM tenant_directory;
DELETE FROM rebucket_zones WHERE zone = 'UTC';

-- Each counted call whose day changes, with what it added to its day.
CREATE TEMPORARY TABLE rebucket_calls ON COMMIT DROP AS
  SELECT a.tenant_id, a.call_id, a.counted_day AS old_day, e.new_day, e.answered, e.duration_seconds
  FROM call_analytics a
  JOIN (SELECT DISTINCT ON (l.tenant_id, l.payload->>'call_id')
               l.tenant_id, (l.payload->>'call_id')::uuid AS call_id,
               ((l.payload->>'ended_at')::timestamptz AT TIME ZONE z.zone)::date AS new_day,
               (l.payload->>'answered')::boolean AS answered, (l.payload->>'duration_seconds')::bigint AS duration_seconds
        FROM event_log l JOIN rebucket_zones z USING (tenant_id)
        WHERE l.type = 'voicecore.call.ended'
        ORDER BY l.tenant_id, l.payload->>'call_id', split_part(l.entry_id, '-', 1)::bigint, split_part(l.entry_id, '-', 2)::bigint) e
    USING (tenant_id, call_id)
  WHERE a.counted_day IS NOT NULL AND a.counted_day <> e.new_day;

-- Each counted lead whose day changes.
CREATE TEMPORARY TABLE rebucket_leads ON COMMIT DROP AS
  SELECT b.tenant_id, b.lead_id, b.day AS old_day, e.new_day
  FROM business_metrics_leads b
  JOIN (SELECT DISTINCT ON (l.tenant_id, l.payload->>'lead_id')
               l.tenant_id, (l.payload->>'lead_id')::uuid AS lead_id,
               ((l.payload->>'created_at')::timestamptz AT TIME ZONE z.zone)::date AS new_day
        FROM event_log l JOIN rebucket_zones z USING (tenant_id)
        WHERE l.type = 'voicecore.crm.lead-created'
        ORDER BY l.tenant_id, l.payload->>'lead_id', split_part(l.entry_id, '-', 1)::bigint, split_part(l.entry_id, '-', 2)::bigint) e
    USING (tenant_id, lead_id)
  WHERE b.day <> e.new_day;

-- What moves, per tenant and day: negative on the day it leaves, positive on the day it joins.
CREATE TEMPORARY TABLE rebucket_deltas ON COMMIT DROP AS
  SELECT tenant_id, day, sum(calls)::integer AS calls, sum(answered)::integer AS answered, sum(missed)::integer AS missed,
         sum(handle_seconds)::bigint AS handle_seconds, sum(leads)::integer AS leads
  FROM (
    SELECT tenant_id, old_day AS day, -1 AS calls, -(answered::int) AS answered, -((NOT answered)::int) AS missed,
           -(CASE WHEN answered THEN duration_seconds ELSE 0 END) AS handle_seconds, 0 AS leads
    FROM rebucket_calls
    UNION ALL
    SELECT tenant_id, new_day, 1, answered::int, (NOT answered)::int, CASE WHEN answered THEN duration_seconds ELSE 0 END, 0
    FROM rebucket_calls
    UNION ALL
    SELECT tenant_id, old_day, 0, 0, 0, 0, -1 FROM rebucket_leads
    UNION ALL
    SELECT tenant_id, new_day, 0, 0, 0, 0, 1 FROM rebucket_leads
  ) moves
  GROUP BY tenant_id, day;

INSERT INTO business_metrics AS m (tenant_id, day, calls, answered, missed, handle_seconds, leads)
SELECT tenant_id, day, calls, answered, missed, handle_seconds, leads FROM rebucket_deltas ORDER BY 1, 2
ON CONFLICT (tenant_id, day) DO UPDATE SET
  calls = m.calls + EXCLUDED.calls, answered = m.answered + EXCLUDED.answered, missed = m.missed + EXCLUDED.missed,
  handle_seconds = m.handle_seconds + EXCLUDED.handle_seconds, leads = m.leads + EXCLUDED.leads;

-- A day everything left is no day at all (the projection never writes an empty one).
DELETE FROM business_metrics m USING rebucket_deltas d
WHERE m.tenant_id = d.tenant_id AND m.day = d.day
  AND m.calls = 0 AND m.answered = 0 AND m.missed = 0 AND m.handle_seconds = 0 AND m.leads = 0;

UPDATE call_analytics a SET counted_day = c.new_day
FROM rebucket_calls c WHERE a.tenant_id = c.tenant_id AND a.call_id = c.call_id;

UPDATE business_metrics_leads b SET day = l.new_day
FROM rebucket_leads l WHERE b.tenant_id = l.tenant_id AND b.lead_id = l.lead_id;
