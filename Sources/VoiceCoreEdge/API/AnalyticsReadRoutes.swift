import Hummingbird
import VoiceCoreQueries

/// The numbers of the read API: `GET /v1/analytics/daily` (the tenant's business days, in its
/// time zone) and `GET /v1/usage` (the invoice preview of a billing month), and their mirrors
/// under `/admin/tenants/{tenant}`. The SQL is ``AnalyticsQueries``'s and ``UsageQueries``'s; the
/// JSON is built by Postgres and passed through.
extension Edge {
    func addAnalyticsReadRoutes(to router: Router<BasicRequestContext>) {
        addReadRoute(router, "/analytics/daily", parameters: ["from", "to"]) { read in
            let from = try read.query.date("from"), to = try read.query.date("to")
            // A range given whole is checked before any database work (a 400 even while Postgres
            // is down); one that takes "today" is checked once the tenant's today is known.
            if let from, let to {
                if from > to { throw QueryParameters.malformed("from", "(\(from)) is after to (\(to))") }
                if to.dayNumber - from.dayNumber >= AnalyticsQueries.maximumDays {
                    throw QueryParameters.malformed("from", "gives more than \(AnalyticsQueries.maximumDays) days (\(from) to \(to)); ask for at most \(AnalyticsQueries.maximumDays) days at a time")
                }
            }
            let tenant = read.tenant
            do {
                let body = try await read.reads.read(tenant: tenant) { db in
                    try AnalyticsQueries.daily(db, tenant: tenant, from: from?.description, to: to?.description)
                }
                return Self.jsonOK(body)
            } catch let error as DailyRangeError {
                throw QueryParameters.malformed(error.parameter, error.reason)
            }
        }

        addReadRoute(router, "/usage", parameters: ["month", "include", "limit", "cursor"]) { read in
            let query = read.query
            let month = try query.month("month")
            let withItems = try query.oneOf("include", ["items"]) != nil
            let limit = try query.limit(default: 50, maximum: 200)
            let cursor = try query.cursor(list: UsageQueries.cursorList, count: UsageQueries.cursorValues)
            // Paging parameters without the list they page are a client's mistake, not ignored.
            if !withItems {
                if try query.string("limit") != nil { throw QueryParameters.malformed("limit", "pages the line items: give it with include=items") }
                if cursor != nil { throw QueryParameters.malformed("cursor", "pages the line items: give it with include=items") }
            }
            if let cursor {
                guard UsageQueries.isKeyset(cursor) else { throw QueryParameters.notACursor }
                if let month, cursor.values[0] != month.description {
                    throw QueryParameters.malformed("cursor", "is a cursor of another month (\(cursor.values[0])); pass it with the month it came with")
                }
            }
            let tenant = read.tenant
            let items = withItems ? UsageQueries.ItemsPage(after: cursor, limit: limit) : nil
            let body: [UInt8]?
            do {
                body = try await read.reads.read(tenant: tenant) { db in
                    try UsageQueries.invoice(db, tenant: tenant, month: month?.description, items: items)
                }
            } catch is UsageCursorError {
                throw QueryParameters.notACursor
            }
            // No plan: no such tenant in the directory (an admin read of an unknown id).
            guard let body else { throw Problem.unknownTenant }
            return Self.jsonOK(body)
        }
    }
}

extension CalendarDate {
    /// Days since 1970-01-01 (proleptic Gregorian; negative before), for differences of dates.
    var dayNumber: Int {
        // Howard Hinnant's days_from_civil: the year taken to start in March, so the leap day is
        // the last day of its year.
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }
}
