-- The console's *Now* page lists a tenant's calls in progress (status `initiated` or
-- `in-progress`), newest first, through the calls list of the read API (CallQueries.list with a
-- status filter). With call_sessions_recent alone that walk reads every ended call of the tenant
-- to find the few still running (100,000 calls: the whole history on every page load). This
-- partial index holds only the running calls, in the list's order, so each status is one short
-- index range whatever the history; a call leaves it when it ends.
CREATE INDEX call_sessions_in_progress
  ON call_sessions (tenant_id, (COALESCE(started_at, '-infinity'::timestamptz)) DESC, call_id DESC)
  WHERE status IN ('initiated', 'in-progress');
