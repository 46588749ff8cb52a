import VoiceCoreEvents
import VoiceCorePostgres

/// The reads of the operator's console that span every tenant: each tenant with its calls of
/// today, today being the tenant's own day (its directory time zone, `effective_time_zone`,
/// migration 0011). One SQL statement; Postgres builds the JSON.
///
/// These reads see every tenant, so they run through ``TenantReads/readAsPlatform(_:)`` (the
/// pool's own role, read-only, with the statement timeout), never on a tenant's behalf.
///
/// ```swift
/// let json = try await reads.readAsPlatform { db in try OperatorQueries.tenantsToday(db, limit: 500) }
/// ```
public enum OperatorQueries {
    /// The most tenants one answer lists (the busiest first).
    public static let maximumTenants = 1_000

    /// Parameters: `$1` the most tenants listed. The JSON: `tenants` (busiest today first, then by
    /// name), each with `tenant_id`, `name`, `plan`, `time_zone` (the zone its day is counted in),
    /// `today` (that day, `YYYY-MM-DD`), `calls_today` (calls started that day), `answered_today`,
    /// `in_progress` (of those, still initiated or in progress); `total` (tenants in the directory) and `calls_today`
    /// (summed over every tenant). The day's calls are counted on `call_sessions_started`
    /// (tenant, started_at): one index range per tenant.
    public static let tenantsTodaySQL = """
        WITH days AS (
          SELECT d.tenant_id, d.name, d.plan, effective_time_zone(d.time_zone) AS zone
          FROM tenant_directory d),
        bounds AS (
          SELECT days.*, (now() AT TIME ZONE zone)::date AS today FROM days),
        counted AS (
          SELECT b.tenant_id, b.name, b.plan, b.zone, b.today, c.calls, c.answered, c.in_progress
          FROM bounds b
          CROSS JOIN LATERAL (
            SELECT count(*) AS calls, count(s.answered_at) AS answered, count(*) FILTER (WHERE s.status IN ('initiated', 'in-progress')) AS in_progress
            FROM call_sessions s
            WHERE s.tenant_id = b.tenant_id
              AND s.started_at >= (b.today::timestamp AT TIME ZONE b.zone)
              AND s.started_at < ((b.today + 1)::timestamp AT TIME ZONE b.zone)) c),
        listed AS (
          SELECT * FROM counted ORDER BY calls DESC, name, tenant_id LIMIT $1::int)
        SELECT json_build_object(
          'tenants', COALESCE((SELECT json_agg(json_build_object(
              'tenant_id', l.tenant_id, 'name', l.name, 'plan', l.plan, 'time_zone', l.zone, 'today', l.today::text,
              'calls_today', l.calls, 'answered_today', l.answered, 'in_progress', l.in_progress)
            ORDER BY l.calls DESC, l.name, l.tenant_id) FROM listed l), '[]'::json),
          'total', (SELECT count(*) FROM counted),
          'calls_today', (SELECT COALESCE(sum(calls), 0) FROM counted))::text AS body
        """

    /// The JSON of every tenant's calls today (see ``tenantsTodaySQL``), at most `limit` tenants.
    public static func tenantsToday(_ db: isolated PostgresConnection, limit: Int = maximumTenants) throws -> [UInt8] {
        let rows = try db.query(PostgresQuery(unsafeSQL: tenantsTodaySQL, binds: [PostgresBind(max(1, min(limit, maximumTenants)))]))
        guard let body = rows.first?.raw("body") else { return Array(#"{"tenants":[],"total":0,"calls_today":0}"#.utf8) }
        return body
    }
}

extension TenantReads {
    /// Runs `body` in a read-only transaction as the pool's own role, for the platform's operator:
    /// row-level security does not narrow it to a tenant (the owning role is not subject to it),
    /// so only reads meant to span tenants belong here. The statement timeout and the errors are
    /// those of ``read(tenant:_:)``.
    /// - Throws: ``ReadUnavailable`` when Postgres is unreachable, overloaded or too slow; any other
    ///   error of `body` as it is.
    public func readAsPlatform<Result: Sendable>(_ body: @Sendable (isolated PostgresConnection) throws -> Result) async throws -> Result {
        try await readOnly(as: nil, body)
    }
}
