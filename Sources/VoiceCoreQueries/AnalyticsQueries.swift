import VoiceCoreEvents
import VoiceCorePostgres

/// The read behind `GET /v1/analytics/daily`: the tenant's business days (`business_metrics`,
/// counted by the analytics projection in the tenant's time zone) over a range of dates, every
/// day of the range present — a day without calls or leads is a day of zeros, so a chart needs no
/// gap filling — with the range's totals. One SQL statement; Postgres builds the JSON.
///
/// The range is of the tenant's dates, in the zone the projection counts in (the directory's, read
/// through `tenant_profile`, and `effective_time_zone`, migration 0011), so "today" is the
/// tenant's today. Defaults: `to` is today there, `from` is `to` minus 29 days (30 days in all).
/// At most ``maximumDays`` days; `from` after `to` is refused.
///
/// ```swift
/// let json = try await reads.read(tenant: tenant) { db in
///     try AnalyticsQueries.daily(db, tenant: tenant, from: "2026-11-01", to: nil)
/// }
/// ```
public enum AnalyticsQueries {
    /// The longest range one answer covers (a leap year).
    public static let maximumDays = 366
    /// Days in the range when `from` is not given.
    public static let defaultDays = 30

    /// Parameters: `$1` tenant (uuid), `$2` to (date or NULL: today in the tenant's zone), `$3`
    /// from (date or NULL: `to` − (`$4` − 1) days, not before 0001-01-01), `$4` the default
    /// number of days, `$5` the most days allowed. Columns: `time_zone`, `first` and `last` (the
    /// range resolved, dates as text), and `body`, the `AnalyticsDaily` JSON, NULL when the
    /// range is refused (`first` after `last`, or longer than `$5` days).
    public static let dailySQL = """
        WITH zone AS (
          SELECT effective_time_zone((SELECT time_zone FROM tenant_profile)) AS zone),
        bounds AS (
          SELECT zone, COALESCE($2::date, (now() AT TIME ZONE zone)::date) AS last FROM zone),
        range AS (
          SELECT zone, COALESCE($3::date, GREATEST(last - ($4::int - 1), '0001-01-01'::date)) AS first, last FROM bounds)
        SELECT r.zone AS time_zone, r.first::text AS first, r.last::text AS last,
          CASE WHEN r.first <= r.last AND r.last - r.first < $5::int THEN (
            SELECT json_build_object(
              'time_zone', r.zone, 'from', r.first, 'to', r.last,
              'days', json_agg(json_build_object(
                'day', d.day, 'calls', COALESCE(m.calls, 0), 'answered', COALESCE(m.answered, 0), 'missed', COALESCE(m.missed, 0),
                'handle_seconds', COALESCE(m.handle_seconds, 0), 'average_handle_seconds', m.average_handle_seconds,
                'leads', COALESCE(m.leads, 0), 'conversion_rate', m.conversion_rate) ORDER BY d.day),
              'totals', json_build_object(
                'calls', COALESCE(sum(m.calls), 0), 'answered', COALESCE(sum(m.answered), 0), 'missed', COALESCE(sum(m.missed), 0),
                'handle_seconds', COALESCE(sum(m.handle_seconds), 0),
                'average_handle_seconds', CASE WHEN sum(m.answered) > 0 THEN sum(m.handle_seconds)::float8 / sum(m.answered) END,
                'leads', COALESCE(sum(m.leads), 0),
                'conversion_rate', CASE WHEN sum(m.calls) > 0 THEN sum(m.leads)::float8 / sum(m.calls) END))::text
            FROM (SELECT g::date AS day FROM generate_series(r.first::timestamp, r.last::timestamp, interval '1 day') AS g) d
            LEFT JOIN business_metrics m ON m.tenant_id = $1 AND m.day = d.day)
          END AS body
        FROM range r
        """

    /// The zone the tenant's days are counted in (column `zone`), as ``dailySQL`` resolves it: the
    /// console writes the tenant's times in it.
    public static let timeZoneSQL = "SELECT effective_time_zone((SELECT time_zone FROM tenant_profile)) AS zone"

    /// The tenant's time zone (an IANA name; `UTC` when the directory's is unusable).
    public static func timeZone(_ db: isolated PostgresConnection) throws -> String {
        let rows = try db.query(PostgresQuery(unsafeSQL: timeZoneSQL, binds: []))
        return try rows.first?.decode(String?.self, "zone") ?? "UTC"
    }

    /// The `AnalyticsDaily` JSON of the tenant's days `from` through `to` (dates `YYYY-MM-DD`,
    /// checked by the caller; nil takes the default).
    /// - Throws: ``DailyRangeError`` when the range resolved is refused (it names the parameter);
    ///   ``PostgresError`` as the statement fails.
    public static func daily(_ db: isolated PostgresConnection, tenant: Identifier, from: String?, to: String?) throws -> [UInt8] {
        let rows = try db.query(PostgresQuery(unsafeSQL: dailySQL, binds: [
            PostgresBind(tenant.uuid), PostgresBind(to), PostgresBind(from), PostgresBind(defaultDays), PostgresBind(maximumDays),
        ]))
        guard let row = rows.first else { throw DailyRangeError(parameter: "from", reason: "does not give a range of dates") }
        if let body = row.raw("body") { return body }
        let first = try row.decode(String.self, "first"), last = try row.decode(String.self, "last")
        // `from` is at fault whenever the range is refused: `to` alone (or neither) always gives
        // a range of the default length.
        if first > last {
            throw DailyRangeError(parameter: "from", reason: "(\(first)) is after to (\(last)\(to == nil ? ", today in the tenant's time zone" : ""))")
        }
        throw DailyRangeError(parameter: "from", reason: "gives more than \(maximumDays) days (\(first) to \(last)); ask for at most \(maximumDays) days at a time")
    }
}

/// A range of dates the analytics read refuses, naming the query parameter at fault.
public struct DailyRangeError: Error, Sendable, CustomStringConvertible {
    public let parameter: String
    public let reason: String

    public init(parameter: String, reason: String) {
        self.parameter = parameter
        self.reason = reason
    }

    public var description: String { "\(parameter) \(reason)" }
}
