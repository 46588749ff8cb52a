import Foundation
import HTTPTypes
import Hummingbird
import VoiceCoreEvents
import VoiceCoreQueries
import VoiceCoreTime

/// The tenant's console pages: *Now* (calls in progress, today, the last 30 days), calls and a
/// call whole, leads, contacts, usage — and the settings (``addConsoleSettingsPages(to:)``).
///
/// Every page reads through the read API's queries (``CallQueries``, ``CRMQueries``,
/// ``AnalyticsQueries``, ``UsageQueries``) in one ``TenantReads`` transaction: row-level security,
/// read-only, the statement timeout; lists by keyset, so a page costs the same with 100,000 calls
/// as with ten. The JSON Postgres built is parsed (``ConsoleRecord``) and given display fields
/// (times in the tenant's zone, durations) for the templates, which escape every value. Another
/// tenant's id reads as one that does not exist: the 404 page.
extension Edge {
    /// Rows of a list page (calls, leads, contacts).
    static let consolePageSize = 50
    /// Rows of the *Just ended* table of *Now*.
    static let consoleRecentCalls = 10

    func addConsoleTenantPages(to router: Router<BasicRequestContext>) {
        guard let reads else { return }
        consoleTenantPage(router, "/app/now", parameters: []) { page, tenant in
            try await Self.nowPage(page, tenant: tenant, reads: reads)
        }
        consoleTenantPage(router, "/app/calls", parameters: Self.consoleCallFilters) { page, tenant in
            try await Self.callsPage(page, tenant: tenant, reads: reads)
        }
        consoleTenantPage(router, "/app/calls/{call}", parameters: []) { page, tenant in
            try await Self.callPage(page, tenant: tenant, reads: reads)
        }
        consoleTenantPage(router, "/app/leads", parameters: ["intent", "cursor"]) { page, tenant in
            try await Self.leadsPage(page, tenant: tenant, reads: reads)
        }
        consoleTenantPage(router, "/app/leads/{lead}", parameters: []) { page, tenant in
            try await Self.leadPage(page, tenant: tenant, reads: reads)
        }
        consoleTenantPage(router, "/app/contacts", parameters: ["name", "phone", "email", "cursor"]) { page, tenant in
            try await Self.contactsPage(page, tenant: tenant, reads: reads)
        }
        consoleTenantPage(router, "/app/contacts/{contact}", parameters: []) { page, tenant in
            try await Self.contactPage(page, tenant: tenant, reads: reads)
        }
        consoleTenantPage(router, "/app/usage", parameters: ["month"]) { page, tenant in
            try await Self.usagePage(page, tenant: tenant, reads: reads)
        }
        addConsoleSettingsPages(to: router)
    }

    // MARK: Now

    private static func nowPage(_ page: ConsolePageRequest, tenant: Identifier, reads: TenantReads) async throws -> Response {
        let (daily, running, latest) = try await reads.read(tenant: tenant) { db in
            // Calls in progress: the calls list filtered by each running status, a range of the
            // partial index of migration 0016 (never a walk through the ended calls).
            var running: [[UInt8]] = []
            for status in ["in-progress", "initiated"] {
                running += try CallQueries.list(db, tenant: tenant, filter: CallFilter(status: status), after: nil, limit: consolePageSize).items
            }
            let latest = try CallQueries.list(db, tenant: tenant, filter: CallFilter(), after: nil, limit: consoleRecentCalls * 3).items
            return (try AnalyticsQueries.daily(db, tenant: tenant, from: nil, to: nil), running, latest)
        }
        let analytics = try ConsoleRecord(json: daily)
        let zoneName = analytics.string("time_zone") ?? "UTC"
        let zone = consoleTimeZone(zoneName)
        let runningRows = try running.map { try ConsoleRecord(json: $0) }
            .sorted { a, b in
                // Newest first as the list orders (a call without a start last), ties by id.
                let (x, y) = (a.timestamp("started_at")?.microsecondsSinceEpoch ?? .min, b.timestamp("started_at")?.microsecondsSinceEpoch ?? .min)
                return x != y ? x > y : (a.string("call_id") ?? "") > (b.string("call_id") ?? "")
            }
            .map { callRow($0, zone: zone) }
        let recentRows = try latest.map { try ConsoleRecord(json: $0) }
            .filter { !CallQueries.runningStatuses.contains($0.string("status") ?? "") }
            .prefix(consoleRecentCalls)
            .map { callRow($0, zone: zone) }
        let days = analytics.records("days")
        let today = days.last.map(dayFigures) ?? [:]
        let data: [String: Any] = [
            "timeZone": zoneName,
            "running": runningRows,
            "hasRunning": !runningRows.isEmpty,
            "recent": Array(recentRows),
            "today": today,
            "totals": analytics.record("totals").map(dayFigures) ?? [:],
            "days": days.reversed().map(dayFigures),
            "chart": ConsoleChart.daily(days, from: analytics.string("from") ?? "", to: analytics.string("to") ?? ""),
            "scripts": ["now.js"],
        ]
        return ConsoleView.page("now", title: "Now", nav: "now", session: page.session, data: data)
    }

    /// A day's (or the range's) figures as the tiles show them.
    private static func dayFigures(_ day: ConsoleRecord) -> [String: Any] {
        let calls = day.int("calls") ?? 0, answered = day.int("answered") ?? 0
        return [
            "day": day.string("day").map { ConsoleFormat.date(isoDate: $0) } ?? "",
            "calls": ConsoleFormat.grouped(calls),
            "answered": ConsoleFormat.grouped(answered),
            "missed": ConsoleFormat.grouped(day.int("missed") ?? 0),
            "leads": ConsoleFormat.grouped(day.int("leads") ?? 0),
            "conversion": day.double("conversion_rate").map { ConsoleFormat.percent($0) } ?? "–",
            "handleTime": day.double("average_handle_seconds").map { ConsoleFormat.duration(seconds: Int($0.rounded())) } ?? "–",
        ]
    }

    // MARK: Calls

    static let consoleCallFilters: Set<String> = ["from", "to", "status", "intent", "number", "cursor"]

    private static func callsPage(_ page: ConsolePageRequest, tenant: Identifier, reads: TenantReads) async throws -> Response {
        // A form sends its empty fields as empty values: they filter nothing.
        let query = try ConsoleQuery(page.request, allowed: consoleCallFilters)
        let from = query.value { try $0.date("from") }
        let to = query.value { try $0.date("to") }
        let status = query.value { try $0.oneOf("status", CallQueries.statuses) }
        let intent = query.value { try $0.enumeration(Intent.self, "intent") }
        let number = query.value { try $0.e164("number") }
        let cursor = query.value { try $0.cursor(list: CallQueries.cursorList, count: CallQueries.cursorValues, isKeyset: CallQueries.isKeyset) }
        if let from, let to, from > to { query.errors["from"] = "The first day is after the last day (\(from) > \(to))." }

        let (zoneName, result) = try await reads.read(tenant: tenant) { db -> (String, Page?) in
            let zoneName = try AnalyticsQueries.timeZone(db)
            guard query.errors.isEmpty else { return (zoneName, nil) }
            let zone = consoleTimeZone(zoneName)
            // Days are the tenant's: from its first instant to the first instant of the day after `to`.
            let filter = CallFilter(from: from.flatMap { startOfDay($0, in: zone, addingDays: 0) },
                                    to: to.flatMap { startOfDay($0, in: zone, addingDays: 1) },
                                    status: status, intent: intent?.rawValue, number: number)
            return (zoneName, try CallQueries.list(db, tenant: tenant, filter: filter, after: cursor, limit: consolePageSize))
        }
        let zone = consoleTimeZone(zoneName)
        let filters = query.echo(["from", "to", "status", "intent", "number"])
        var data: [String: Any] = [
            "timeZone": zoneName,
            "filters": filters,
            "errors": query.errors,
            "statuses": options(CallQueries.statuses, selected: status, label: statusLabel),
            "intents": options(Intent.allCases.map(\.rawValue), selected: intent?.rawValue, label: { $0.capitalized }),
            "calls": try (result?.items ?? []).map { callRow(try ConsoleRecord(json: $0), zone: zone) },
        ]
        let filterParameters = query.filledPairs(["from", "to", "status", "intent", "number"])
        if let next = result?.nextCursor { data["nextPage"] = consoleLink("/app/calls", filterParameters + [("cursor", next.encoded)]) }
        if cursor != nil { data["firstPage"] = consoleLink("/app/calls", filterParameters) }
        return ConsoleView.page("calls", title: "Calls", nav: "calls", session: page.session, data: data,
                                status: query.errors.isEmpty ? .ok : .badRequest)
    }

    private static func callPage(_ page: ConsolePageRequest, tenant: Identifier, reads: TenantReads) async throws -> Response {
        guard let call = page.identifier("call") else { return ConsoleView.notFound(session: page.session, what: "call") }
        let (zoneName, detail) = try await reads.read(tenant: tenant) { db in
            (try AnalyticsQueries.timeZone(db), try CallQueries.detail(db, tenant: tenant, call: call))
        }
        guard let detail else { return ConsoleView.notFound(session: page.session, what: "call") }
        let record = try ConsoleRecord(json: detail)
        let zone = consoleTimeZone(zoneName)
        var data: [String: Any] = [
            "call": callRow(record, zone: zone),
            "timeline": ConsoleCallTimeline.entries(of: record, zone: zone),
            "transcript": record.records("transcript").map { line -> [String: Any] in
                let track = line.string("track") ?? "inbound"
                return ["track": track, "speaker": track == "inbound" ? "Caller" : "Receptionist",
                        "offset": offset(milliseconds: line.int("start_offset_ms") ?? 0), "text": line.string("text") ?? ""]
            },
        ]
        if let summary = record.record("summary") {
            if let text = summary.string("text") { data["summary"] = text }
            let sentences = summary.strings("key_sentences")
            data["keySentences"] = sentences
            data["hasKeySentences"] = !sentences.isEmpty
        }
        let analytics = record.record("analytics")
        if let sentiment = analytics?.string("sentiment") {
            data["sentiment"] = sentiment + (analytics?.double("sentiment_score").map { String(format: " (score %.2f)", $0) } ?? "")
        } else {
            data["sentiment"] = "not analysed yet"
        }
        if let lead = record.record("lead") { data["lead"] = leadRow(lead, zone: zone) }
        return ConsoleView.page("call", title: "Call", nav: "calls", session: page.session, data: data)
    }

    /// A call as the tables and the call's page show it (a `CallSummary` of the read API).
    static func callRow(_ call: ConsoleRecord, zone: TimeZone) -> [String: Any] {
        [
            "id": call.string("call_id") ?? "",
            "from": call.string("from") ?? "",
            "to": call.string("to") ?? "",
            "direction": call.string("direction") ?? "",
            "status": statusLabel(call.string("status") ?? ""),
            "started": call.string("started_at").map { ConsoleFormat.dateTime(rfc3339: $0, timeZone: zone) } ?? "start not recorded yet",
            "duration": call.int("duration_seconds").map { ConsoleFormat.duration(seconds: $0) } ?? "",
            "intent": call.string("intent") ?? "",
            "hasLead": call.bool("has_lead") ?? false,
        ]
    }

    /// How a call's status reads: `no-answer` is "no answer", a call in progress whose answer
    /// has not come yet is "ringing".
    static func statusLabel(_ status: String) -> String {
        switch status {
        case "initiated": "ringing"
        default: status.replacingOccurrences(of: "-", with: " ")
        }
    }

    /// "1:05" (minutes and seconds into the call).
    static func offset(milliseconds: Int) -> String {
        let seconds = max(0, milliseconds) / 1000
        return "\(seconds / 60):" + (seconds % 60 < 10 ? "0" : "") + "\(seconds % 60)"
    }

    // MARK: Leads

    private static func leadsPage(_ page: ConsolePageRequest, tenant: Identifier, reads: TenantReads) async throws -> Response {
        let query = try ConsoleQuery(page.request, allowed: ["intent", "cursor"])
        let intent = query.value { try $0.enumeration(Intent.self, "intent") }
        let position = query.value { try consolePosition($0, list: CRMQueries.leadsList) }
        guard query.errors.isEmpty else { throw ConsoleQuery.refusal(query.errors) }
        let (zoneName, result) = try await reads.read(tenant: tenant) { db in
            (try AnalyticsQueries.timeZone(db), try CRMQueries.leads(CRMQueries.LeadFilter(intent: intent), after: position, limit: consolePageSize, in: db))
        }
        let zone = consoleTimeZone(zoneName)
        var data: [String: Any] = [
            "intents": options(Intent.allCases.map(\.rawValue), selected: intent?.rawValue, label: { $0.capitalized }),
            "leads": try result.items.map { leadRow(try ConsoleRecord(json: $0), zone: zone) },
        ]
        let filters = query.filledPairs(["intent"])
        if let next = result.nextCursor { data["nextPage"] = consoleLink("/app/leads", filters + [("cursor", next.encoded)]) }
        if position != nil { data["firstPage"] = consoleLink("/app/leads", filters) }
        return ConsoleView.page("leads", title: "Leads", nav: "leads", session: page.session, data: data)
    }

    private static func leadPage(_ page: ConsolePageRequest, tenant: Identifier, reads: TenantReads) async throws -> Response {
        guard let lead = page.identifier("lead") else { return ConsoleView.notFound(session: page.session, what: "lead") }
        let (zoneName, found) = try await reads.read(tenant: tenant) { db in
            (try AnalyticsQueries.timeZone(db), try CRMQueries.lead(lead, in: db))
        }
        guard let found else { return ConsoleView.notFound(session: page.session, what: "lead") }
        let record = try ConsoleRecord(json: found)
        let zone = consoleTimeZone(zoneName)
        var data: [String: Any] = ["lead": leadRow(record, zone: zone)]
        if let contact = record.record("contact") { data["contact"] = contactRow(contact, zone: zone) }
        if let call = record.record("call") { data["call"] = callRow(call, zone: zone) }
        return ConsoleView.page("lead", title: "Lead", nav: "leads", session: page.session, data: data)
    }

    static func leadRow(_ lead: ConsoleRecord, zone: TimeZone) -> [String: Any] {
        var row: [String: Any] = [
            "id": lead.string("lead_id") ?? "",
            "name": lead.string("name") ?? "(no name)",
            "phone": lead.string("phone") ?? "",
            "email": lead.string("email") ?? "",
            "intent": lead.string("intent") ?? "",
            "source": lead.string("source") ?? "",
            "notes": lead.string("notes") ?? "",
            "created": lead.string("created_at").map { ConsoleFormat.dateTime(rfc3339: $0, timeZone: zone) } ?? "",
        ]
        if let call = lead.string("call_id") { row["callID"] = call }
        return row
    }

    // MARK: Contacts

    private static func contactsPage(_ page: ConsolePageRequest, tenant: Identifier, reads: TenantReads) async throws -> Response {
        let query = try ConsoleQuery(page.request, allowed: ["name", "phone", "email", "cursor"])
        let search = CRMQueries.ContactSearch(phone: query.value { try $0.e164("phone") },
                                              email: query.value { try $0.string("email", maxLength: 254) },
                                              name: query.value { try $0.string("name") })
        let position = query.value { try consolePosition($0, list: CRMQueries.contactsList) }
        let (zoneName, result) = try await reads.read(tenant: tenant) { db -> (String, Page?) in
            let zoneName = try AnalyticsQueries.timeZone(db)
            guard query.errors.isEmpty else { return (zoneName, nil) }
            return (zoneName, try CRMQueries.contacts(search, after: position, limit: consolePageSize, in: db))
        }
        let zone = consoleTimeZone(zoneName)
        var data: [String: Any] = [
            "search": query.echo(["name", "phone", "email"]),
            "errors": query.errors,
            "contacts": try (result?.items ?? []).map { contactRow(try ConsoleRecord(json: $0), zone: zone) },
        ]
        let filters = query.filledPairs(["name", "phone", "email"])
        if let next = result?.nextCursor { data["nextPage"] = consoleLink("/app/contacts", filters + [("cursor", next.encoded)]) }
        if position != nil { data["firstPage"] = consoleLink("/app/contacts", filters) }
        return ConsoleView.page("contacts", title: "Contacts", nav: "contacts", session: page.session, data: data,
                                status: query.errors.isEmpty ? .ok : .badRequest)
    }

    private static func contactPage(_ page: ConsolePageRequest, tenant: Identifier, reads: TenantReads) async throws -> Response {
        guard let contact = page.identifier("contact") else { return ConsoleView.notFound(session: page.session, what: "contact") }
        let (zoneName, found) = try await reads.read(tenant: tenant) { db in
            (try AnalyticsQueries.timeZone(db), try CRMQueries.contact(contact, in: db))
        }
        guard let found else { return ConsoleView.notFound(session: page.session, what: "contact") }
        let record = try ConsoleRecord(json: found)
        let zone = consoleTimeZone(zoneName)
        let interactions = record.record("interactions")
        var data: [String: Any] = [
            "contact": contactRow(record, zone: zone),
            "interactions": (interactions?.records("items") ?? []).map { item -> [String: Any] in
                var row: [String: Any] = [
                    "id": item.string("interaction_id") ?? "",
                    "when": item.string("occurred_at").map { ConsoleFormat.dateTime(rfc3339: $0, timeZone: zone) } ?? "",
                    "channel": item.string("channel") ?? "",
                    "summary": item.string("summary") ?? "",
                    "duration": item.int("duration_seconds").map { ConsoleFormat.duration(seconds: $0) } ?? "",
                ]
                if let call = item.string("call_id") { row["callID"] = call }
                return row
            },
            "leads": (record.record("leads")?.records("items") ?? []).map { leadRow($0, zone: zone) },
        ]
        if interactions?.string("next_cursor") != nil { data["moreInteractions"] = String(CRMQueries.embeddedLimit) }
        return ConsoleView.page("contact", title: "Contact", nav: "contacts", session: page.session, data: data)
    }

    static func contactRow(_ contact: ConsoleRecord, zone: TimeZone) -> [String: Any] {
        [
            "id": contact.string("contact_id") ?? "",
            "name": contact.string("name") ?? "(no name)",
            "phone": contact.string("phone") ?? "",
            "email": contact.string("email") ?? "",
            "firstSeen": contact.string("first_seen_at").map { ConsoleFormat.dateTime(rfc3339: $0, timeZone: zone) } ?? "",
            "lastSeen": contact.string("last_seen_at").map { ConsoleFormat.dateTime(rfc3339: $0, timeZone: zone) } ?? "",
        ]
    }

    /// The keyset position a CRM list's `cursor` names.
    private static func consolePosition(_ query: QueryParameters, list: String) throws(Problem) -> CRMQueries.Position? {
        guard let cursor = try query.cursor(list: list, count: 2) else { return nil }
        guard let position = CRMQueries.Position(cursor) else { throw QueryParameters.notACursor }
        return position
    }

    // MARK: Usage

    private static func usagePage(_ page: ConsolePageRequest, tenant: Identifier, reads: TenantReads) async throws -> Response {
        let query = try ConsoleQuery(page.request, allowed: ["month"])
        let month = query.value { try $0.month("month") }
        guard query.errors.isEmpty else { throw ConsoleQuery.refusal(query.errors) }
        let invoice = try await reads.read(tenant: tenant) { db in
            try UsageQueries.invoice(db, tenant: tenant, month: month?.description, items: nil)
        }
        guard let invoice else { return ConsoleView.notFound(session: page.session, what: "usage") }
        let record = try ConsoleRecord(json: invoice)
        let currency = record.string("currency") ?? "USD"
        let shown = record.string("month") ?? month?.description ?? ""
        let data: [String: Any] = [
            "month": ["value": shown, "label": monthLabel(shown)],
            "plan": record.string("plan") ?? "",
            "from": record.string("from").map { ConsoleFormat.date(isoDate: $0) } ?? "",
            "to": record.string("to").map { ConsoleFormat.date(isoDate: $0) } ?? "",
            "meters": record.records("meters").map { meter -> [String: Any] in
                [
                    "meter": meter.string("meter") ?? "",
                    "quantity": quantity(meter.double("quantity") ?? 0),
                    "unit": meter.string("unit") ?? "",
                    "unitPrice": unitPrice(minor: meter.double("unit_price_minor") ?? 0, currency: currency),
                    "amount": ConsoleFormat.money(minor: meter.int("amount_minor") ?? 0, currency: currency),
                ]
            },
            "total": ConsoleFormat.money(minor: record.int("total_amount_minor") ?? 0, currency: currency),
            "months": monthLinks(around: shown),
        ]
        return ConsoleView.page("usage", title: "Usage", nav: "usage", session: page.session, data: data)
    }

    /// The shown month, the five before it, and the one after it unless that is in the future
    /// (billing months are UTC's).
    static func monthLinks(around month: String, now: Date = Date()) -> [[String: Any]] {
        guard let shown = CalendarMonth(month) else { return [] }
        var utc = Calendar(identifier: .gregorian)
        utc.timeZone = TimeZone(identifier: "UTC") ?? utc.timeZone
        let today = utc.dateComponents([.year, .month], from: now)
        let current = (today.year ?? shown.year) * 12 + (today.month ?? shown.month) - 1
        let index = shown.year * 12 + shown.month - 1
        return (max(12, index - 5)...(min(index + 1, max(index, current)))).reversed().map { value in
            let text = String(format: "%04d-%02d", value / 12, value % 12 + 1)
            return ["value": text, "label": monthLabel(text), "current": value == index]
        }
    }

    /// "December 2026" for `2026-12`.
    static func monthLabel(_ month: String) -> String {
        guard let parsed = CalendarMonth(month) else { return month }
        let names = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"]
        return "\(names[parsed.month - 1]) \(parsed.year)"
    }

    /// A meter's quantity: whole numbers grouped, fractions with up to three decimals.
    static func quantity(_ value: Double) -> String {
        if value == value.rounded(), abs(value) < 1e15 { return ConsoleFormat.grouped(Int(value)) }
        return trimmedDecimal(value, digits: 3)
    }

    /// A unit price in minor units (possibly a fraction of one): "$0.02", or "0.015 USD" when it
    /// is finer than the currency's cents.
    static func unitPrice(minor: Double, currency: String) -> String {
        if minor == minor.rounded(), abs(minor) < 1e15 { return ConsoleFormat.money(minor: Int(minor), currency: currency) }
        return "\(trimmedDecimal(minor / 100, digits: 6)) \(currency.uppercased())"
    }

    private static func trimmedDecimal(_ value: Double, digits: Int) -> String {
        var text = String(format: "%.\(digits)f", value)
        while text.hasSuffix("0") { text.removeLast() }
        if text.hasSuffix(".") { text.removeLast() }
        return text
    }

    // MARK: Shared

    /// The zone of `name`, UTC when Foundation does not know it.
    static func consoleTimeZone(_ name: String) -> TimeZone {
        TimeZone(identifier: name) ?? TimeZone(secondsFromGMT: 0) ?? TimeZone.current
    }

    /// The first instant of `date` (plus `days`) in `zone`.
    static func startOfDay(_ date: CalendarDate, in zone: TimeZone, addingDays days: Int) -> Timestamp? {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = zone
        guard let start = calendar.date(from: DateComponents(year: date.year, month: date.month, day: date.day)),
              let shifted = calendar.date(byAdding: .day, value: days, to: start) else { return nil }
        return Timestamp(shifted)
    }

    /// `<option>`s of a select: each value with its label, the chosen one selected.
    static func options(_ values: [String], selected: String?, label: (String) -> String) -> [[String: Any]] {
        values.map { ["value": $0, "label": label($0), "selected": $0 == selected] }
    }

    /// `path?name=value&…`, each name and value percent-encoded (a `+` in a phone number too).
    static func consoleLink(_ path: String, _ parameters: [(String, String)]) -> String {
        guard !parameters.isEmpty else { return path }
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        func encode(_ text: String) -> String { text.addingPercentEncoding(withAllowedCharacters: allowed) ?? "" }
        return path + "?" + parameters.map { "\(encode($0.0))=\(encode($0.1))" }.joined(separator: "&")
    }
}

extension CallQueries {
    /// The statuses of a call that has not ended.
    static let runningStatuses: Set<String> = ["initiated", "in-progress"]
}

/// The query parameters of a console list page, read one by one so that each bad value is shown
/// next to its field (not one error page for the first): a form's empty fields filter nothing.
final class ConsoleQuery: @unchecked Sendable {
    private let parameters: QueryParameters
    private let raw: [String: String]
    /// The message of each parameter that did not parse, by name.
    var errors: [String: String] = [:]

    init(_ request: Request, allowed: Set<String>) throws(Problem) {
        let filled = request.uri.queryParameters.filter { !$0.value.isEmpty }
        parameters = try QueryParameters(filled, allowed: allowed)
        var raw: [String: String] = [:]
        for (key, value) in filled { raw[String(key)] = String(value) }
        self.raw = raw
    }

    /// What `read` makes of the parameters, nil when it refuses them (the reason kept in ``errors``).
    func value<Value>(_ read: (QueryParameters) throws -> Value?) -> Value? {
        do {
            return try read(parameters)
        } catch let error as Problem {
            errors[error.field ?? "query"] = Self.sentence(error.detail ?? error.title)
        } catch {
            errors["query"] = Self.sentence("\(error)")
        }
        return nil
    }

    /// The values as given, to fill the form in again (absent ones left out).
    func echo(_ names: [String]) -> [String: String] {
        raw.filter { names.contains($0.key) }
    }

    /// The non-empty parameters among `names`, in that order, for links that keep the filters.
    func filledPairs(_ names: [String]) -> [(String, String)] {
        names.compactMap { name in raw[name].map { (name, $0) } }
    }

    /// A 400 page for parameters a page without a form cannot show next to a field.
    static func refusal(_ errors: [String: String]) -> Problem {
        let (field, message) = errors.sorted { $0.key < $1.key }.first ?? ("query", "is malformed")
        return Problem(.badRequest, "Malformed query parameter", detail: message, field: field)
    }

    /// "from must be a date YYYY-MM-DD" → "From must be a date YYYY-MM-DD."
    static func sentence(_ text: String) -> String {
        guard let first = text.first else { return text }
        return first.uppercased() + text.dropFirst() + (text.hasSuffix(".") || text.hasSuffix(")") ? "" : ".")
    }
}

/// A JSON object the read API's queries built, read for display: JSON nulls read as absent.
struct ConsoleRecord: @unchecked Sendable {
    let fields: [String: Any]

    init(fields: [String: Any]) {
        self.fields = fields
    }

    /// - Throws: ``ConsoleRecordError`` when the bytes are not a JSON object (never from Postgres's
    ///   `json_build_object`, so the page fails rather than showing something half-read).
    init(json bytes: [UInt8]) throws {
        guard let object = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any] else { throw ConsoleRecordError() }
        fields = object
    }

    func string(_ name: String) -> String? {
        switch fields[name] {
        case let text as String: text
        case let number as NSNumber: number.stringValue
        default: nil
        }
    }

    func timestamp(_ name: String) -> Timestamp? {
        string(name).flatMap { Timestamp(rfc3339: $0) }
    }

    func int(_ name: String) -> Int? {
        (fields[name] as? NSNumber)?.intValue
    }

    func double(_ name: String) -> Double? {
        (fields[name] as? NSNumber)?.doubleValue
    }

    func bool(_ name: String) -> Bool? {
        (fields[name] as? NSNumber)?.boolValue
    }

    func record(_ name: String) -> ConsoleRecord? {
        (fields[name] as? [String: Any]).map(ConsoleRecord.init(fields:))
    }

    func records(_ name: String) -> [ConsoleRecord] {
        (fields[name] as? [Any] ?? []).compactMap { ($0 as? [String: Any]).map(ConsoleRecord.init(fields:)) }
    }

    func strings(_ name: String) -> [String] {
        (fields[name] as? [Any] ?? []).compactMap { $0 as? String }
    }
}

/// A read model's answer that is not the JSON object it should be.
struct ConsoleRecordError: Error, CustomStringConvertible {
    var description: String { "a read model answered something that is not a JSON object" }
}
