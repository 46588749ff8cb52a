import Foundation
import VoiceCoreEvents
import VoiceCorePostgres
import VoiceCoreTime

/// The reads behind `GET /v1/usage`: the invoice preview of a billing month.
///
/// Billing months are UTC calendar months: a usage item belongs to the month of its
/// `occurred_at` in UTC (`billing_usage.day` is its UTC date), whatever the tenant's time zone —
/// an invoice period is the same instant range for every tenant, and a day's usage never moves
/// between invoices. (Business analytics count the tenant's own days; billing does not.)
///
/// Per meter, every meter of the tenant's plan is listed (zero quantities included): the
/// month's quantity, its unit, the plan's unit price (`billing_prices`, migration 0011, minor
/// units of `currency`, possibly fractional) and the amount, `round(quantity × unit price)` half
/// up, in integer minor units; the total is the sum of the meters' amounts. The plan is the
/// directory's (through `tenant_profile`), the one the billing service rounds calls by. Line items
/// (`billing_usage_items`) come on request, newest first, a keyset page at a time; an item carries
/// its quantity, not an amount: amounts are rounded once per meter and month.
public enum UsageQueries {
    /// The `list` of the line items' cursors.
    public static let cursorList = "usage-items"
    /// A cursor holds the month (`YYYY-MM`), the last item's time (RFC 3339) and usage id.
    public static let cursorValues = 3

    /// The month's summary. Parameters: `$1` tenant (uuid), `$2` the month's first day (date, or
    /// NULL: the current UTC month). Columns: `month` (`YYYY-MM`), `body` (the `UsageInvoice`
    /// JSON without line items). No row when the tenant has no plan (no directory row).
    public static let invoiceSQL = """
        WITH period AS (
          SELECT first, (first + interval '1 month')::date AS next
          FROM (SELECT COALESCE($2::date, date_trunc('month', now() AT TIME ZONE 'UTC')::date) AS first) p),
        usage AS (
          SELECT b.meter, sum(b.quantity) AS quantity
          FROM billing_usage b, period
          WHERE b.tenant_id = $1 AND b.day >= period.first AND b.day < period.next
          GROUP BY b.meter),
        lines AS (
          SELECT t.plan, p.meter, p.unit, p.unit_price_minor, p.currency, COALESCE(u.quantity, 0) AS quantity,
                 round(COALESCE(u.quantity, 0) * p.unit_price_minor)::int8 AS amount_minor
          FROM tenant_profile t
          JOIN billing_prices p ON p.plan = t.plan
          LEFT JOIN usage u ON u.meter = p.meter)
        SELECT to_char(period.first, 'YYYY-MM') AS month,
          json_build_object(
            'month', to_char(period.first, 'YYYY-MM'), 'from', period.first, 'to', period.next - 1,
            'plan', min(l.plan), 'currency', min(l.currency),
            'meters', json_agg(json_build_object(
              'meter', l.meter, 'quantity', l.quantity, 'unit', l.unit, 'unit_price_minor', l.unit_price_minor,
              'amount_minor', l.amount_minor) ORDER BY l.meter),
            'total_amount_minor', sum(l.amount_minor))::text AS body
        FROM lines l, period
        GROUP BY period.first, period.next
        """

    /// A page of the month's line items, newest first. Parameters: `$1` tenant, `$2` the month's
    /// first day (date), `$3`, `$4` the keyset to start after (time and usage id; `infinity` and
    /// `ffffffff-ffff-ffff-ffff-ffffffffffff` for the first page), `$5` rows (`limit + 1`).
    /// Columns: `item` (JSON text), `occurred_at`, `usage_id`. A range of the index
    /// `billing_usage_items_by_time` (migration 0011): the month's UTC instants.
    public static let itemsSQL = """
        SELECT json_build_object('usage_id', u.usage_id, 'meter', u.meter, 'quantity', u.quantity, 'unit', u.unit,
                                 'call_id', u.call_id, 'day', u.day, 'occurred_at', u.occurred_at)::text AS item,
               u.occurred_at, u.usage_id
        FROM billing_usage_items u
        WHERE u.tenant_id = $1
          AND u.occurred_at >= ($2::date)::timestamp AT TIME ZONE 'UTC'
          AND u.occurred_at < (($2::date + interval '1 month')::date)::timestamp AT TIME ZONE 'UTC'
          AND (u.occurred_at, u.usage_id) < ($3::timestamptz, $4::uuid)
        ORDER BY u.occurred_at DESC, u.usage_id DESC
        LIMIT $5
        """

    /// Which line items to add to the summary.
    public struct ItemsPage: Sendable {
        public var after: PageCursor?
        public var limit: Int

        public init(after: PageCursor?, limit: Int) {
            self.after = after
            self.limit = limit
        }
    }

    /// The `UsageInvoice` JSON of `month` (`YYYY-MM`; nil: the current UTC month, or the month of
    /// `items.after` when that is given), with a page of line items when `items` is given (else
    /// `items` and `next_cursor` are null). Nil when the tenant has no plan.
    /// - Throws: ``UsageCursorError`` when the cursor is not a keyset of this list, or of another
    ///   month than `month`; ``PostgresError`` as a statement fails.
    public static func invoice(_ db: isolated PostgresConnection, tenant: Identifier, month: String?, items: ItemsPage?) throws -> [UInt8]? {
        let keyset = try items?.after.map(Self.keyset)
        if let keyset, let month, keyset.month != month { throw UsageCursorError() }
        let first = (month ?? keyset?.month).map { "\($0)-01" }
        let rows = try db.query(PostgresQuery(unsafeSQL: invoiceSQL, binds: [PostgresBind(tenant.uuid), PostgresBind(first)]))
        guard let row = rows.first, var body = row.raw("body"), body.last == UInt8(ascii: "}") else { return nil }
        guard let items else {
            body.removeLast()
            body.append(contentsOf: #","items":null,"next_cursor":null}"#.utf8)
            return body
        }
        let resolved = try row.decode(String.self, "month")
        let page = try Self.items(db, tenant: tenant, month: resolved, after: keyset, limit: items.limit)
        // The summary's members, then the page's (`{"items":[…],"next_cursor":…}`), in one object.
        body.removeLast()
        body.append(UInt8(ascii: ","))
        body.append(contentsOf: page.json.dropFirst())
        return body
    }

    static func items(_ db: isolated PostgresConnection, tenant: Identifier, month: String,
                      after keyset: (month: String, time: Timestamp, usage: Identifier)?, limit: Int) throws -> Page {
        let time: String = keyset.map(\.time.rfc3339) ?? "infinity"
        let usage = keyset.map(\.usage.description) ?? "ffffffff-ffff-ffff-ffff-ffffffffffff"
        let rows = try db.query(PostgresQuery(unsafeSQL: itemsSQL, binds: [
            PostgresBind(tenant.uuid), PostgresBind("\(month)-01"), PostgresBind(time), PostgresBind(usage), PostgresBind(limit + 1),
        ]))
        return try Page(rows: rows, limit: limit, list: cursorList) { last in
            [month, try last.decode(Timestamp.self, "occurred_at").rfc3339, try last.decode(UUID.self, "usage_id").uuidString.lowercased()]
        }
    }

    /// Whether `cursor` holds a keyset of this list (checked before any database work).
    public static func isKeyset(_ cursor: PageCursor) -> Bool {
        (try? keyset(cursor)) != nil
    }

    /// The month, time and usage id a cursor holds, each checked.
    static func keyset(_ cursor: PageCursor) throws -> (month: String, time: Timestamp, usage: Identifier) {
        guard cursor.list == cursorList, cursor.values.count == cursorValues,
              isMonth(cursor.values[0]),
              let time = Timestamp(rfc3339: cursor.values[1]), cursorTimes.contains(time),
              let usage = Identifier(cursor.values[2]) else { throw UsageCursorError() }
        return (cursor.values[0], time, usage)
    }

    /// Times a cursor may hold: years 1 to 9999, which Postgres and RFC 3339 both write.
    static let cursorTimes: ClosedRange<Timestamp> = {
        let first = Timestamp(year: 1, month: 1, day: 1, hour: 0, minute: 0, second: 0) ?? Timestamp(microsecondsSinceEpoch: .min)
        let last = Timestamp(year: 9999, month: 12, day: 31, hour: 23, minute: 59, second: 59, microsecond: 999_999) ?? Timestamp(microsecondsSinceEpoch: .max)
        return first...last
    }()

    /// `YYYY-MM`, years 0001 to 9999.
    static func isMonth(_ text: String) -> Bool {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 2, parts[0].count == 4, parts[1].count == 2,
              parts.allSatisfy({ $0.allSatisfy { $0.isASCII && $0.isNumber } }),
              let year = Int(parts[0]), let month = Int(parts[1]) else { return false }
        return year >= 1 && (1...12).contains(month)
    }
}

/// A line items cursor that is not one (altered), or one of another month than the one asked for.
public struct UsageCursorError: Error, Sendable, CustomStringConvertible {
    public init() {}
    public var description: String { "the cursor is not a keyset of this month's line items" }
}
