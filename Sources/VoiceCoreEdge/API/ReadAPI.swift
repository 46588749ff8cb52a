import Foundation
import HTTPTypes
import Hummingbird
import VoiceCoreEvents
import VoiceCoreQueries
import VoiceCoreTime

/// The read side of the tenant API: each read route answers under `/v1/<path>` for the tenant of
/// the API key, and under `/admin/tenants/{tenant}/<path>` for any tenant with the admin key, with
/// the same handler. Every read runs through ``TenantReads`` (row-level security, read-only,
/// statement timeout); Postgres unreachable or overloaded answers 503 with `Retry-After`.
extension Edge {
    /// What a read handler gets: the tenant whose data it reads, the request's query parameters
    /// (unknown ones already refused), the path's parameters and the reads.
    struct ReadRequest: Sendable {
        let tenant: Identifier
        let query: QueryParameters
        let request: Request
        let context: BasicRequestContext
        let reads: TenantReads

        /// A path parameter that must be a UUID; anything else is 404 (an id of nothing).
        func identifier(_ name: String, what: String) throws -> Identifier {
            guard let id = context.parameters.get(name).flatMap(Identifier.init) else {
                throw Problem(.notFound, "Not found", detail: "no \(what) with this id")
            }
            return id
        }
    }

    /// Registers a read route for tenants and its admin mirror.
    /// - Parameters:
    ///   - path: below `/v1` (and `/admin/tenants/{tenant}`), e.g. `/calls/{call}`.
    ///   - parameters: the query parameters the route knows; any other is refused (400).
    func addReadRoute(_ router: Router<BasicRequestContext>, _ path: RouterPath, parameters: Set<String>,
                      _ handler: @escaping @Sendable (ReadRequest) async throws -> Response) {
        guard let reads else { return }
        router.get(RouterPath("/v1").appendingPath(path)) { request, context in
            // Who asks comes first: a request without a valid key learns nothing about parameters.
            let tenant = try await authenticatedTenant(request)
            let query = try QueryParameters(request.uri.queryParameters, allowed: parameters)
            return try await Self.answeringReads {
                try await handler(ReadRequest(tenant: tenant, query: query, request: request, context: context, reads: reads))
            }
        }
        guard configuration.adminKey != nil else { return }
        router.get(RouterPath("/admin/tenants/{tenant}").appendingPath(path)) { request, context in
            try authorizeAdmin(request)
            let tenant = try tenantID(context)
            // A tenant the directory does not know is a 404, not an empty answer.
            _ = try await credentials(of: tenant)
            let query = try QueryParameters(request.uri.queryParameters, allowed: parameters)
            return try await Self.answeringReads {
                try await handler(ReadRequest(tenant: tenant, query: query, request: request, context: context, reads: reads))
            }
        }
    }

    /// A read the database could not serve now is a 503 with `Retry-After`.
    static func answeringReads(_ body: () async throws -> Response) async throws -> Response {
        do {
            return try await body()
        } catch let error as ReadUnavailable {
            throw Problem(.serviceUnavailable, "Temporarily unavailable", detail: "\(error.reason); retry later",
                          headers: [.retryAfter: String(error.retryAfterSeconds)])
        }
    }

    /// A JSON answer of bytes built elsewhere (a ``Page``, or an object Postgres built).
    static func jsonOK(_ body: [UInt8]) -> Response {
        json(.ok, body)
    }

    static func notFound(_ what: String) -> Problem {
        Problem(.notFound, "Not found", detail: "no \(what) with this id")
    }
}

/// A request's query parameters, checked strictly: an unknown or repeated parameter, and any
/// value that does not parse, is a 400 naming the parameter — never ignored or clamped.
struct QueryParameters: Sendable {
    private let values: [String: String]

    init<Parameters: Sequence>(_ parameters: Parameters, allowed: Set<String>) throws(Problem) where Parameters.Element == (key: Substring, value: Substring) {
        var values: [String: String] = [:]
        for (key, value) in parameters {
            let name = String(key)
            guard allowed.contains(name) else {
                let known = allowed.isEmpty ? "this route takes no query parameters" : "known: \(allowed.sorted().joined(separator: ", "))"
                throw Problem(.badRequest, "Unknown query parameter", detail: "\(name) is not a parameter of this route (\(known))", field: name)
            }
            guard values[name] == nil else { throw Self.malformed(name, "is given more than once") }
            values[name] = String(value)
        }
        self.values = values
    }

    static func malformed(_ name: String, _ reason: String) -> Problem {
        Problem(.badRequest, "Malformed query parameter", detail: "\(name) \(reason)", field: name)
    }

    /// The raw text, nil when absent; an empty value is refused.
    func string(_ name: String, maxLength: Int = 200) throws(Problem) -> String? {
        guard let value = values[name] else { return nil }
        guard !value.isEmpty else { throw Self.malformed(name, "is empty") }
        guard value.count <= maxLength else { throw Self.malformed(name, "is longer than \(maxLength) characters") }
        guard !value.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
            throw Self.malformed(name, "contains control characters")
        }
        return value
    }

    /// An RFC 3339 date-time (`2026-12-07T10:00:00Z`, any offset).
    func timestamp(_ name: String) throws(Problem) -> Timestamp? {
        guard let text = try string(name) else { return nil }
        guard let timestamp = Timestamp(rfc3339: text) else { throw Self.malformed(name, "must be an RFC 3339 date-time such as 2026-12-07T10:00:00Z") }
        return timestamp
    }

    /// A calendar date `YYYY-MM-DD`.
    func date(_ name: String) throws(Problem) -> CalendarDate? {
        guard let text = try string(name) else { return nil }
        guard let date = CalendarDate(text) else { throw Self.malformed(name, "must be a date YYYY-MM-DD") }
        return date
    }

    /// A month `YYYY-MM`.
    func month(_ name: String) throws(Problem) -> CalendarMonth? {
        guard let text = try string(name) else { return nil }
        guard let month = CalendarMonth(text) else { throw Self.malformed(name, "must be a month YYYY-MM") }
        return month
    }

    /// One of an enumeration's raw values.
    func enumeration<Value: RawRepresentable & CaseIterable>(_ type: Value.Type, _ name: String) throws(Problem) -> Value? where Value.RawValue == String {
        guard let text = try string(name) else { return nil }
        guard let value = Value(rawValue: text) else {
            throw Self.malformed(name, "must be one of \(Value.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return value
    }

    /// One of the given words.
    func oneOf(_ name: String, _ words: [String]) throws(Problem) -> String? {
        guard let text = try string(name) else { return nil }
        guard words.contains(text) else { throw Self.malformed(name, "must be one of \(words.joined(separator: ", "))") }
        return text
    }

    /// A phone number in E.164 (`+` and 2 to 15 digits, no leading 0). In a URL a literal `+`
    /// means a space, so `%2B` is how a client sends it; a leading space is taken as that `+`.
    func e164(_ name: String) throws(Problem) -> String? {
        guard var text = try string(name) else { return nil }
        if text.hasPrefix(" ") { text = "+" + text.dropFirst() }
        let digits = text.dropFirst()
        guard text.hasPrefix("+"), (2...15).contains(digits.count), digits.allSatisfy({ $0.isASCII && $0.isNumber }), digits.first != "0" else {
            throw Self.malformed(name, "must be a phone number in E.164, such as +14155550123 (send the + as %2B)")
        }
        return text
    }

    /// A UUID.
    func identifier(_ name: String) throws(Problem) -> Identifier? {
        guard let text = try string(name) else { return nil }
        guard let id = Identifier(text) else { throw Self.malformed(name, "must be a UUID") }
        return id
    }

    /// `limit`: `default` when absent; outside 1…`maximum` is refused, not clamped.
    func limit(default defaultValue: Int = 50, maximum: Int = 200) throws(Problem) -> Int {
        guard let text = try string("limit") else { return defaultValue }
        guard let value = Int(text), (1...maximum).contains(value) else { throw Self.malformed("limit", "must be a whole number from 1 to \(maximum)") }
        return value
    }

    /// `cursor`: the `next_cursor` of a previous page of the same list. `isKeyset` checks the
    /// values of a cursor that decodes: one altered by hand is refused here, before any database
    /// work, so it is a 400 even while Postgres is down.
    func cursor(list: String, count: Int, isKeyset: (PageCursor) -> Bool = { _ in true }) throws(Problem) -> PageCursor? {
        guard let text = try string("cursor", maxLength: 1024) else { return nil }
        guard let cursor = PageCursor(text, list: list, count: count), isKeyset(cursor) else { throw Self.notACursor }
        return cursor
    }

    static let notACursor = malformed("cursor", "is not a cursor of this list (pass next_cursor of the previous page unchanged)")
}

/// A day of the calendar, `YYYY-MM-DD` (years 1…9999, valid month and day).
struct CalendarDate: Sendable, Hashable, Comparable, CustomStringConvertible {
    let year: Int, month: Int, day: Int

    init?(_ text: String) {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0].count == 4, parts[1].count == 2, parts[2].count == 2,
              parts.allSatisfy({ $0.allSatisfy { $0.isASCII && $0.isNumber } }),
              let year = Int(parts[0]), let month = Int(parts[1]), let day = Int(parts[2]),
              year >= 1, (1...12).contains(month), (1...Self.days(in: month, of: year)).contains(day)
        else { return nil }
        self.year = year
        self.month = month
        self.day = day
    }

    static func days(in month: Int, of year: Int) -> Int {
        switch month {
        case 2: return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }

    var description: String { String(format: "%04d-%02d-%02d", year, month, day) }
    static func < (a: Self, b: Self) -> Bool { (a.year, a.month, a.day) < (b.year, b.month, b.day) }
}

/// A month of the calendar, `YYYY-MM`.
struct CalendarMonth: Sendable, Hashable, CustomStringConvertible {
    let year: Int, month: Int

    init?(_ text: String) {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 2, parts[0].count == 4, parts[1].count == 2,
              parts.allSatisfy({ $0.allSatisfy { $0.isASCII && $0.isNumber } }),
              let year = Int(parts[0]), let month = Int(parts[1]), year >= 1, (1...12).contains(month)
        else { return nil }
        self.year = year
        self.month = month
    }

    var description: String { String(format: "%04d-%02d", year, month) }
}
