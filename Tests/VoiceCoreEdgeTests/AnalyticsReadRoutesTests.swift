import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Testing
import VoiceCoreEvents
import VoiceCorePostgres
import VoiceCoreProjections
import VoiceCoreRedis
import VoiceCoreTenants
import VoiceCoreTestSupport
import VoiceCoreTime
@testable import VoiceCoreEdge

/// `GET /v1/analytics/daily` and `GET /v1/usage` against real Postgres: a tenant in New York
/// provisioned through the admin API, its calls, leads and usage put into the read models by the
/// platform's projections.
@Suite("Read API: analytics and usage", .serialized)
struct AnalyticsReadRoutesTests {
    static func bearer(_ key: String) -> HTTPFields { [.authorization: "Bearer \(key)"] }
    static let admin: HTTPFields = [.authorization: "Bearer \(EdgeFixture.adminKey)", .contentType: "application/json"]

    static func time(_ text: String) -> Timestamp {
        guard let time = Timestamp(rfc3339: text) else { fatalError("bad test time \(text)") }
        return time
    }

    /// Applies the events with the projections the platform runs, in one transaction.
    static func project(_ messages: [(Identifier, any Message)], into db: PostgresConnection) async throws {
        let events = messages.enumerated().map { index, pair in
            ProjectedEvent(stream: "test", entryID: StreamEntryID(milliseconds: UInt64(index + 1)),
                           envelope: EventEnvelope(pair.1, tenant: pair.0, source: "/test"), message: pair.1)
        }
        try await db.withTransaction { db in
            for projection in [AnalyticsProjection(), BillingProjection()] as [any Projection] {
                try projection.apply(events.filter { projection.eventTypes?.contains($0.envelope.type) ?? true }, in: db)
            }
        }
    }

    /// Provisions a growth tenant in New York through the admin API; its id and API key.
    static func provisionNewYork(_ client: any TestClientProtocol) async throws -> (Identifier, String) {
        let response = try await client.execute(uri: "/admin/tenants", method: .post, headers: admin,
                                                body: ByteBuffer(string: #"{"name":"Uptown Dental","plan":"growth","time_zone":"America/New_York"}"#))
        #expect(response.status == .created, "\(response.text)")
        guard let id = (response.json["tenant_id"] as? String).flatMap(Identifier.init), let key = response.json["api_key"] as? String else {
            throw TestFailure("no tenant provisioned: \(response.text)")
        }
        return (id, key)
    }

    @Test("provisioning refuses a time zone Postgres would not count days in (422 naming it)")
    func provisioningChecksTheZone() async throws {
        let fixture = try await EdgeFixture()
        defer { Task { try? await fixture.drop() } }
        try await fixture.test { client in
            // Foundation takes each of these; Postgres does not know the first two and reads the
            // last two as POSIX offsets of the opposite sign.
            for zone in ["US/Pacific-New", "GMT-0530", "GMT+5", "UTC+5", "america/new_york", "Not/A_Zone"] {
                let response = try await client.execute(uri: "/admin/tenants", method: .post, headers: Self.admin,
                                                        body: ByteBuffer(string: #"{"name":"Zone \#(zone)","time_zone":"\#(zone)"}"#))
                #expect(response.status == .unprocessableContent, "\(zone): \(response.text)")
                #expect(response.json["field"] as? String == "body.time_zone", "\(zone)")
            }
            let listed = try await fixture.db.query("SELECT count(*) AS n FROM tenant_directory")[0].decode(Int.self, "n")
            #expect(listed == 1, "nothing provisioned but the fixture's tenant")
            _ = try await Self.provisionNewYork(client)
        }
    }

    @Test("daily analytics: the tenant's days, every day of the range, totals; ranges checked")
    func daily() async throws {
        let fixture = try await EdgeFixture()
        defer { Task { try? await fixture.drop() } }
        try await fixture.test { client in
            let (tenant, key) = try await Self.provisionNewYork(client)
            let other = fixture.tenant
            try await Self.project([
                (tenant, CallEnded(callID: .v7(), endedAt: Self.time("2026-11-24T03:30:00Z"), status: .completed, durationSeconds: 60, answered: true)),
                (tenant, CallEnded(callID: .v7(), endedAt: Self.time("2026-11-24T23:30:00Z"), status: .completed, durationSeconds: 30, answered: true)),
                (tenant, CallEnded(callID: .v7(), endedAt: Self.time("2026-11-25T04:00:00Z"), status: .noAnswer, durationSeconds: 0, answered: false)),
                (tenant, LeadCreated(leadID: .v7(), name: "Ada", intent: .sales, source: .api, createdAt: Self.time("2026-11-25T03:00:00Z"))),
                (tenant, CallEnded(callID: .v7(), endedAt: Self.time("2026-11-26T15:00:00Z"), status: .completed, durationSeconds: 45, answered: true)),
                // Another tenant's call on the same days: not counted.
                (other, CallEnded(callID: .v7(), endedAt: Self.time("2026-11-24T12:00:00Z"), status: .completed, durationSeconds: 99, answered: true)),
            ], into: fixture.db)

            let response = try await client.execute(uri: "/v1/analytics/daily?from=2026-11-22&to=2026-11-26", method: .get, headers: Self.bearer(key))
            #expect(response.status == .ok, "\(response.text)")
            let json = response.json
            #expect(json["time_zone"] as? String == "America/New_York")
            #expect(json["from"] as? String == "2026-11-22")
            #expect(json["to"] as? String == "2026-11-26")
            let days = json["days"] as? [[String: Any]] ?? []
            #expect(days.map { $0["day"] as? String } == ["2026-11-22", "2026-11-23", "2026-11-24", "2026-11-25", "2026-11-26"])
            // 24 Nov 03:30 UTC is 23 Nov 22:30 in New York; 24 Nov 23:30 UTC and 25 Nov 04:00 UTC are 24 Nov there.
            func row(_ day: [String: Any]) -> String {
                ["calls", "answered", "missed", "handle_seconds", "leads"].map { "\(day[$0] as? Int ?? -1)" }.joined(separator: " ")
            }
            #expect(days.map(row) == ["0 0 0 0 0", "1 1 0 60 0", "2 1 1 30 1", "0 0 0 0 0", "1 1 0 45 0"])
            #expect(days[0]["average_handle_seconds"] is NSNull && days[0]["conversion_rate"] is NSNull, "a day without calls has no averages")
            #expect(days[2]["average_handle_seconds"] as? Double == 30)
            #expect(days[2]["conversion_rate"] as? Double == 0.5)
            let totals = json["totals"] as? [String: Any] ?? [:]
            #expect(row(totals) == "4 3 1 135 1")
            #expect(totals["average_handle_seconds"] as? Double == 45)
            #expect(totals["conversion_rate"] as? Double == 0.25)

            // The admin mirror answers the same.
            let mirrored = try await client.execute(uri: "/admin/tenants/\(tenant)/analytics/daily?from=2026-11-22&to=2026-11-26", method: .get, headers: Self.admin)
            #expect(mirrored.status == .ok)
            #expect(mirrored.text == response.text)

            // Defaults: the 30 days ending today in New York (read before and after: midnight may pass between).
            let todaySQL: PostgresQuery = "SELECT (now() AT TIME ZONE 'America/New_York')::date::text AS d"
            let todayBefore = try await fixture.db.query(todaySQL)[0].decode(String.self, "d")
            let defaulted = try await client.execute(uri: "/v1/analytics/daily", method: .get, headers: Self.bearer(key))
            let todayAfter = try await fixture.db.query(todaySQL)[0].decode(String.self, "d")
            #expect(defaulted.status == .ok)
            #expect((defaulted.json["days"] as? [[String: Any]] ?? []).count == 30)
            let defaultedTo = defaulted.json["to"] as? String ?? ""
            #expect(defaultedTo == todayBefore || defaultedTo == todayAfter, "today in the tenant's zone, not \(defaultedTo)")
            let toOnly = try await client.execute(uri: "/v1/analytics/daily?to=2026-11-26", method: .get, headers: Self.bearer(key))
            #expect(toOnly.json["from"] as? String == "2026-10-28")
            let firstDays = try await client.execute(uri: "/v1/analytics/daily?to=0001-01-05", method: .get, headers: Self.bearer(key))
            #expect(firstDays.status == .ok && firstDays.json["from"] as? String == "0001-01-01", "never before year 1: \(firstDays.text)")

            // A whole leap year is allowed; a day more, a reversed range or a malformed date is a 400 naming the parameter.
            let leapYear = try await client.execute(uri: "/v1/analytics/daily?from=2028-01-01&to=2028-12-31", method: .get, headers: Self.bearer(key))
            #expect(leapYear.status == .ok && (leapYear.json["days"] as? [Any])?.count == 366)
            for (query, field) in [("from=2026-01-01&to=2027-01-02", "from"), ("from=2026-11-26&to=2026-11-25", "from"),
                                   ("from=2099-01-01", "from"), ("from=2020-01-01", "from"), ("from=2026-02-30", "from"),
                                   ("to=26-11-2026", "to"), ("from=2026-11-01&from=2026-11-02", "from"), ("day=2026-11-01", "day")] {
                let refused = try await client.execute(uri: "/v1/analytics/daily?\(query)", method: .get, headers: Self.bearer(key))
                #expect(refused.status == .badRequest, "\(query): \(refused.text)")
                #expect(refused.json["field"] as? String == field, "\(query): \(refused.text)")
            }
        }
    }

    @Test("usage: the month's meters priced by the plan, rounded half up per meter; line items paged")
    func usage() async throws {
        let fixture = try await EdgeFixture()
        defer { Task { try? await fixture.drop() } }
        try await fixture.test { client in
            let (tenant, key) = try await Self.provisionNewYork(client)
            var messages: [(Identifier, any Message)] = []
            // November (UTC): 2 + 0.5 + 0.5 = 3 call minutes (× 1.5 = 4.5 → 5), 150 transcription
            // seconds (× 0.03 = 4.5 → 5), 3 AI requests (× 0.4 = 1.2 → 1).
            let november = [("2026-11-01T00:00:00Z", 2.0, 120.0), ("2026-11-15T12:00:00Z", 0.5, 20.0), ("2026-11-30T23:59:59Z", 0.5, 10.0)]
            for (at, minutes, seconds) in november {
                let call = Identifier.v7(), source = Identifier.v7()
                messages.append((tenant, UsageRecorded(meter: .callMinutes, quantity: minutes, callID: call, sourceEventID: source, sourceEventType: CallEnded.type, occurredAt: Self.time(at))))
                messages.append((tenant, UsageRecorded(meter: .transcriptionSeconds, quantity: seconds, callID: call, sourceEventID: source, sourceEventType: CallEnded.type, occurredAt: Self.time(at))))
                messages.append((tenant, UsageRecorded(meter: .aiRequests, quantity: 1, callID: call, sourceEventID: source, sourceEventType: CallEnded.type, occurredAt: Self.time(at))))
            }
            // December 1st 00:00 UTC is still November in New York: billing months are UTC months.
            messages.append((tenant, UsageRecorded(meter: .aiRequests, quantity: 1, callID: .v7(), sourceEventID: .v7(), sourceEventType: CallEnded.type, occurredAt: Self.time("2026-12-01T00:00:00Z"))))
            messages.append((fixture.tenant, UsageRecorded(meter: .aiRequests, quantity: 7, callID: .v7(), sourceEventID: .v7(), sourceEventType: CallEnded.type, occurredAt: Self.time("2026-11-10T00:00:00Z"))))
            try await Self.project(messages, into: fixture.db)

            let response = try await client.execute(uri: "/v1/usage?month=2026-11", method: .get, headers: Self.bearer(key))
            #expect(response.status == .ok, "\(response.text)")
            let json = response.json
            #expect(json["month"] as? String == "2026-11" && json["from"] as? String == "2026-11-01" && json["to"] as? String == "2026-11-30")
            #expect(json["plan"] as? String == "growth" && json["currency"] as? String == "USD")
            let meters = json["meters"] as? [[String: Any]] ?? []
            let summary = meters.map { "\($0["meter"] ?? "") \(($0["quantity"] as? NSNumber)?.doubleValue ?? -1) \($0["unit"] ?? "") \(($0["unit_price_minor"] as? NSNumber)?.doubleValue ?? -1) \($0["amount_minor"] as? Int ?? -1)" }
            #expect(summary == ["ai_requests 3.0 request 0.4 1", "call_minutes 3.0 minute 1.5 5", "transcription_seconds 150.0 second 0.03 5"])
            #expect(json["total_amount_minor"] as? Int == 11)
            #expect(json["items"] is NSNull && json["next_cursor"] is NSNull, "no line items unless asked for")

            // Line items, newest first, two a page, every one once.
            var seen: [String] = [], cursor: String?, pages = 0
            repeat {
                let uri = "/v1/usage?month=2026-11&include=items&limit=2" + (cursor.map { "&cursor=\($0)" } ?? "")
                let page = try await client.execute(uri: uri, method: .get, headers: Self.bearer(key))
                #expect(page.status == .ok, "\(page.text)")
                #expect(page.json["total_amount_minor"] as? Int == 11, "every page carries the summary")
                let items = page.json["items"] as? [[String: Any]] ?? []
                seen += items.compactMap { $0["occurred_at"] as? String }
                cursor = page.json["next_cursor"] as? String
                pages += 1
            } while cursor != nil && pages < 10
            #expect(seen.count == 9 && pages == 5)
            #expect(seen == seen.sorted(by: >), "newest first")
            #expect(!seen.contains { $0.hasPrefix("2026-12") })

            // A quiet month: every meter at zero.
            let quiet = try await client.execute(uri: "/admin/tenants/\(tenant)/usage?month=2025-01", method: .get, headers: Self.admin)
            #expect(quiet.status == .ok && quiet.json["total_amount_minor"] as? Int == 0 && (quiet.json["meters"] as? [Any])?.count == 3, "\(quiet.text)")

            // Refusals name the parameter.
            let firstPage = try await client.execute(uri: "/v1/usage?month=2026-11&include=items&limit=2", method: .get, headers: Self.bearer(key))
            let novemberCursor = firstPage.json["next_cursor"] as? String ?? ""
            for (query, field) in [("month=2026-13", "month"), ("month=2026-1", "month"), ("include=lines", "include"), ("limit=5", "limit"),
                                   ("include=items&limit=201", "limit"), ("include=items&cursor=bm90", "cursor"),
                                   ("month=2026-10&include=items&cursor=\(novemberCursor)", "cursor"), ("cursor=\(novemberCursor)", "cursor")] {
                let refused = try await client.execute(uri: "/v1/usage?\(query)", method: .get, headers: Self.bearer(key))
                #expect(refused.status == .badRequest, "\(query): \(refused.text)")
                #expect(refused.json["field"] as? String == field, "\(query): \(refused.text)")
            }
            let unknown = try await client.execute(uri: "/admin/tenants/\(Identifier.v7())/usage", method: .get, headers: Self.admin)
            #expect(unknown.status == .notFound, "\(unknown.text)")
        }
    }
}
