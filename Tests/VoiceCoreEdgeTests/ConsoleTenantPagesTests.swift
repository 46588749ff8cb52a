import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import ServiceLifecycle
import Testing
import VoiceCoreBus
import VoiceCoreEvents
import VoiceCorePostgres
import VoiceCoreProjections
import VoiceCoreQueries
import VoiceCoreRedis
import VoiceCoreServices
import VoiceCoreTenants
import VoiceCoreTime
@testable import VoiceCoreEdge

/// A browser's side of the console in a test: the session cookie it got at sign-in, and the
/// requests it sends with it.
struct ConsoleBrowser: Sendable {
    let client: any TestClientProtocol
    let cookie: String

    /// Signs in with `key` (a tenant's API key) and keeps the session cookie.
    static func signIn(_ client: any TestClientProtocol, key: String) async throws -> ConsoleBrowser {
        let response = try await client.execute(uri: "/app/sign-in", method: .post, headers: [.contentType: "application/x-www-form-urlencoded"],
                                                body: ByteBuffer(string: EdgeFixture.formEncode([("key", key)])))
        #expect(response.status == .seeOther, "signed in")
        let cookie = try #require(response.headers[.setCookie]?.split(separator: ";").first.map(String.init))
        return ConsoleBrowser(client: client, cookie: cookie)
    }

    func get(_ path: String) async throws -> TestResponse {
        try await client.execute(uri: path, method: .get, headers: [.cookie: cookie])
    }

    /// Posts a form as a page of the console does, with the CSRF token of `page`.
    func post(_ path: String, _ fields: [(String, String)], from page: TestResponse) async throws -> TestResponse {
        let token = try #require(Self.csrf(in: page.text), "the page has a form with a CSRF token")
        return try await client.execute(uri: path, method: .post, headers: [.cookie: cookie, .contentType: "application/x-www-form-urlencoded"],
                                        body: ByteBuffer(string: EdgeFixture.formEncode([("csrf", token)] + fields)))
    }

    static func csrf(in html: String) -> String? {
        guard let start = html.range(of: #"name="csrf" value=""#) else { return nil }
        let rest = html[start.upperBound...]
        return rest.firstIndex(of: "\"").map { String(rest[..<$0]) }
    }
}

extension String {
    /// The text of the element whose `id` is `id`, up to its closing `</tag>` (the elements the
    /// console's tests look into are not nested in one of their own kind).
    func element(_ id: String, tag: String) -> String {
        guard let start = range(of: "<\(tag) id=\"\(id)\"") ?? range(of: "id=\"\(id)\"") else { return "" }
        let rest = self[start.lowerBound...]
        guard let end = rest.range(of: "</\(tag)>") else { return String(rest) }
        return String(rest[..<end.upperBound])
    }

    /// The `data-<attribute>` values in order.
    func values(of attribute: String) -> [String] {
        var found: [String] = []
        var rest = self[...]
        while let start = rest.range(of: "\(attribute)=\"") {
            let tail = rest[start.upperBound...]
            guard let end = tail.firstIndex(of: "\"") else { break }
            found.append(String(tail[..<end]))
            rest = tail[end...]
        }
        return found
    }

    func occurrences(of text: String) -> Int {
        components(separatedBy: text).count - 1
    }
}

@Suite("Console: the tenant's pages", .serialized)
struct ConsoleTenantPagesTests {
    static let script = "<script>alert(1)</script>"
    static let image = #""><img src=x onerror=alert(1)>"#

    /// Sets the tenant's time zone in the directory (the read models' days follow it).
    static func setTimeZone(_ zone: String, _ fixture: EdgeFixture) async throws {
        try await fixture.db.query("UPDATE tenant_directory SET time_zone = \(zone) WHERE tenant_id = \(fixture.tenant.uuid)")
    }

    @Test func nowShowsTheCallsInProgressTheJustEndedTodayAndTheLast30Days() async throws {
        let fixture = try await EdgeFixture()
        let seeded = try await SeededCalls(fixture: fixture)
        let now = Timestamp.now
        let ringing = Identifier(UUID()), talking = Identifier(UUID()), done = Identifier(UUID()), foreign = Identifier(UUID())
        let tenant = fixture.tenant
        try await SeededCalls.project([
            (tenant, CallStarted(callID: ringing, provider: .twilio, providerCallID: "CAR", direction: .inbound, from: "+14155550101",
                                 to: "+14155550199", startedAt: now.adding(microseconds: -5_000_000))),
            (tenant, CallStarted(callID: talking, provider: .twilio, providerCallID: "CAT", direction: .inbound, from: "+14155550102",
                                 to: "+14155550199", startedAt: now.adding(microseconds: -60_000_000))),
            (tenant, CallAnswered(callID: talking, answeredAt: now.adding(microseconds: -58_000_000))),
            (tenant, CallStarted(callID: done, provider: .twilio, providerCallID: "CAD", direction: .inbound, from: "+14155550103",
                                 to: "+14155550199", startedAt: now.adding(microseconds: -120_000_000))),
            (tenant, CallAnswered(callID: done, answeredAt: now.adding(microseconds: -118_000_000))),
            (tenant, CallEnded(callID: done, endedAt: now.adding(microseconds: -10_000_000), status: .completed, durationSeconds: 108, answered: true)),
            (seeded.other, CallStarted(callID: foreign, provider: .twilio, providerCallID: "CAF", direction: .inbound, from: "+14155550104",
                                       to: "+14155550199", startedAt: now)),
        ], into: fixture.db)
        try await fixture.test { client in
            let browser = try await ConsoleBrowser.signIn(client, key: fixture.apiKey)
            let page = try await browser.get("/app/now")
            #expect(page.status == .ok)
            let html = page.text
            // In progress: this tenant's running calls, newest first (and the seeded call that never ended).
            let running = html.element("calls-now", tag: "table").values(of: "data-call-id")
            let stillRunning = try #require(seeded.calls.first { $0.status == "initiated" && $0.start != nil }).id
            #expect(running == [ringing.description, talking.description, stillRunning.description])
            #expect(html.element("calls-now", tag: "table").contains("ringing"))
            #expect(html.element("calls-now", tag: "table").contains("in progress"))
            #expect(!html.contains(foreign.description), "another tenant's call is not shown")
            let recent = html.element("calls-recent", tag: "table").values(of: "data-call-id")
            #expect(recent.first == done.description, "the call that just ended heads the list of ended calls")
            #expect(!recent.contains(ringing.description) && !recent.contains(talking.description))
            #expect(html.element("calls-recent", tag: "table").contains("1 min 48 s"))
            // Today (UTC here): the one call that ended today, answered.
            #expect(html.contains(#"<dd id="today-calls">1</dd>"#))
            #expect(html.contains(#"<dd id="today-answered">1</dd>"#))
            #expect(html.contains(#"<dd id="today-missed">0</dd>"#))
            // The chart: 30 days, each a bar with its label; the seeded day (1 Dec 2026) has its calls.
            let chart = html.element("daily-chart", tag: "svg")
            #expect(chart.occurrences(of: #"<g class="chart-day""#) == 30)
            #expect(chart.contains(#"<title id="daily-chart-title">Calls per day"#))
            #expect(chart.contains(#"aria-labelledby="daily-chart-title daily-chart-desc""#))
            #expect(chart.contains("<title>1 Dec 2026: 9 calls, "), "\(chart)")
            #expect(html.contains(#"<script type="module" src="/app/assets/js/now.js"></script>"#))
        }
        try await fixture.drop()
    }

    /// The *Now* list reads the running calls through the partial index of migration 0016, never
    /// a walk through the tenant's ended calls (the plan Postgres chooses for the very statement
    /// the page runs, as the tenant's role, with 20,000 ended calls beside 2 running ones).
    @Test func callsInProgressAreOneRangeOfThePartialIndex() async throws {
        let fixture = try await EdgeFixture()
        let tenant = fixture.tenant.uuid
        try await fixture.db.query("""
            INSERT INTO call_sessions (tenant_id, call_id, provider, provider_call_id, direction, from_number, to_number, status, started_at, ended_at, end_status)
            SELECT \(tenant), gen_random_uuid(), 'twilio', 'CA' || g, 'inbound', '+14155550100', '+14155550199',
                   CASE WHEN g <= 2 THEN 'in-progress' ELSE 'completed' END, now() - g * interval '1 minute',
                   CASE WHEN g <= 2 THEN NULL ELSE now() END, CASE WHEN g <= 2 THEN NULL ELSE 'completed' END
            FROM generate_series(1, 20000) g
            """)
        try await fixture.db.query("ANALYZE call_sessions")
        let plan = try await fixture.reads.read(tenant: fixture.tenant) { db in
            try db.write("SET LOCAL plan_cache_mode = force_custom_plan")
            return try db.query(PostgresQuery(unsafeSQL: "EXPLAIN " + CallQueries.listSQL, binds: [
                PostgresBind(fixture.tenant.uuid), PostgresBind(Optional<String>.none), PostgresBind(Optional<String>.none),
                PostgresBind("in-progress"), PostgresBind(Optional<String>.none), PostgresBind(Optional<String>.none), PostgresBind(Optional<String>.none),
                PostgresBind("infinity"), PostgresBind("ffffffff-ffff-ffff-ffff-ffffffffffff"), PostgresBind(Edge.consolePageSize + 1),
            ])).map { try $0.decode(String.self, "QUERY PLAN") }.joined(separator: "\n")
        }
        #expect(plan.contains("call_sessions_in_progress"), "\(plan)")
        #expect(!plan.contains("Seq Scan on call_sessions"), "\(plan)")
        try await fixture.test { client in
            let browser = try await ConsoleBrowser.signIn(client, key: fixture.apiKey)
            let page = try await browser.get("/app/now")
            #expect(page.text.element("calls-now", tag: "table").values(of: "data-call-id").count == 2)
        }
        try await fixture.drop()
    }

    @Test func theCallsListFiltersByTheTenantsDaysStatusIntentAndNumberAndPages() async throws {
        let fixture = try await EdgeFixture()
        let seeded = try await SeededCalls(fixture: fixture)
        // UTC+14: the seeded calls (from 09:00 UTC on 1 December) start on the evening of 1
        // December there, and the rich call (10:00 UTC) at midnight on the 2nd.
        try await Self.setTimeZone("Pacific/Kiritimati", fixture)
        try await fixture.test { client in
            let browser = try await ConsoleBrowser.signIn(client, key: fixture.apiKey)
            let all = try await browser.get("/app/calls")
            #expect(all.status == .ok)
            #expect(all.text.element("calls", tag: "table").values(of: "data-call-id") == seeded.newestFirst.map(\.id.description))
            #expect(all.text.contains("2 Dec 2026, 00:00"), "times in the tenant's zone")
            #expect(!all.text.contains("next-page"), "one page")

            let second = try await browser.get("/app/calls?from=2026-12-02&to=2026-12-02&status=&intent=&number=")
            #expect(second.status == .ok)
            #expect(second.text.element("calls", tag: "table").values(of: "data-call-id") == [seeded.rich.description])
            let first = try await browser.get("/app/calls?from=2026-12-01&to=2026-12-01")
            let firstDay = seeded.newestFirst.filter { $0.start != nil && $0.id != seeded.rich }.map(\.id.description)
            #expect(first.text.element("calls", tag: "table").values(of: "data-call-id") == firstDay)
            #expect(first.text.contains(#"value="2026-12-01""#), "the filters stay in the form")

            let missed = try await browser.get("/app/calls?status=no-answer")
            #expect(missed.text.element("calls", tag: "table").values(of: "data-call-id")
                == seeded.newestFirst.filter { $0.status == "no-answer" }.map(\.id.description))
            let appointments = try await browser.get("/app/calls?intent=appointment")
            #expect(appointments.text.element("calls", tag: "table").values(of: "data-call-id")
                == seeded.newestFirst.filter { $0.intent == .appointment }.map(\.id.description))
            let number = try await browser.get("/app/calls?number=%2B442071838750")
            #expect(number.text.element("calls", tag: "table").values(of: "data-call-id")
                == seeded.newestFirst.filter { $0.from == "+442071838750" || $0.to == "+442071838750" }.map(\.id.description))

            // A bad value: the page again with the message next to its field, 400.
            let bad = try await browser.get("/app/calls?from=yesterday&number=12")
            #expect(bad.status == .badRequest)
            #expect(bad.text.contains(#"<p class="field-error" id="error-from">From must be a date YYYY-MM-DD.</p>"#))
            #expect(bad.text.contains(#"aria-describedby="error-number""#))
            let tampered = try await browser.get("/app/calls?cursor=bm90LWEtY3Vyc29y")
            #expect(tampered.status == .badRequest)
            #expect(tampered.text.contains(#"id="error-cursor""#))
            let unknown = try await browser.get("/app/calls?colour=red")
            #expect(unknown.status == .badRequest)
        }

        // Paging: 60 more calls on 3 December; pages of 50 by the `next-page` link, every call once.
        var more: [(Identifier, any Message)] = []
        var newestFirst: [String] = []
        for minute in 0..<60 {
            let id = Identifier(UUID())
            let start = Timestamp(year: 2026, month: 12, day: 3, hour: 8, minute: minute, second: 0) ?? .now
            more.append((fixture.tenant, CallStarted(callID: id, provider: .twilio, providerCallID: "CAP\(minute)", direction: .inbound,
                                                     from: "+14155550177", to: "+14155550199", startedAt: start)))
            newestFirst.insert(id.description, at: 0)
        }
        let expected = newestFirst
        try await SeededCalls.project(more, into: fixture.db)
        try await fixture.test { client in
            let browser = try await ConsoleBrowser.signIn(client, key: fixture.apiKey)
            let page1 = try await browser.get("/app/calls?number=%2B14155550177")
            let rows1 = page1.text.element("calls", tag: "table").values(of: "data-call-id")
            #expect(rows1.count == 50)
            let next = try #require(page1.text.element("next-page", tag: "a").values(of: "href").first).replacingOccurrences(of: "&amp;", with: "&")
            #expect(next.hasPrefix("/app/calls?number=%2B14155550177&cursor="))
            let page2 = try await browser.get(next)
            #expect(page2.status == .ok)
            let rows2 = page2.text.element("calls", tag: "table").values(of: "data-call-id")
            #expect(rows1 + rows2 == expected)
            #expect(!page2.text.contains(#"id="next-page""#))
            #expect(page2.text.contains(#"id="first-page""#))
        }
        try await fixture.drop()
    }

    @Test func aCallsPageShowsItsTimelineTranscriptSummarySentimentAndLead_andAnotherTenantsCallIsNotFound() async throws {
        let fixture = try await EdgeFixture()
        let seeded = try await SeededCalls(fixture: fixture)
        try await fixture.test { client in
            let browser = try await ConsoleBrowser.signIn(client, key: fixture.apiKey)
            let page = try await browser.get("/app/calls/\(seeded.rich)")
            #expect(page.status == .ok)
            let html = page.text
            let transcript = html.element("transcript", tag: "ol")
            #expect(transcript.values(of: "data-track") == ["inbound", "outbound", "inbound", "outbound", "inbound"])
            #expect(transcript.occurrences(of: #"<li class="transcript-line""#) == 5)
            #expect(transcript.contains("Hi, I&#39;d like to book a cleaning."))
            #expect(html.element("summary", tag: "div").contains("Caller booked a cleaning for Tuesday 3 pm."))
            #expect(html.contains(#"<dd id="sentiment">positive (score 0.60)</dd>"#))
            let lead = html.element("call-lead", tag: "div")
            #expect(lead.contains("Ada Lovelace"))
            let leadLink = try #require(lead.values(of: "href").first)
            #expect(leadLink.hasPrefix("/app/leads/"))
            let timeline = html.element("call-timeline", tag: "ol")
            #expect(timeline.values(of: "data-kind") == ["started", "answered", "turn", "turn", "turn", "appointment", "message", "transfer",
                                                         "voicemail", "intent", "ended"], "\(timeline)")
            #expect(timeline.contains("Bright Smiles, how can I help?"))
            #expect(!timeline.contains("Other Dental"), "another tenant's turn on the same call id is not shown")

            // The lead's page, and its call.
            let leadPage = try await browser.get(leadLink)
            #expect(leadPage.status == .ok)
            #expect(leadPage.text.element("lead", tag: "dl").contains("Ada Lovelace"))
            #expect(leadPage.text.element("lead-call", tag: "div").contains("/app/calls/\(seeded.rich)"))

            for path in ["/app/calls/\(seeded.foreign)", "/app/calls/\(Identifier(UUID()))", "/app/calls/not-a-call",
                         "/app/leads/\(Identifier(UUID()))", "/app/contacts/\(Identifier(UUID()))"] {
                let missing = try await browser.get(path)
                #expect(missing.status == .notFound, "\(path)")
                #expect(missing.text.contains(#"<h1 id="not-found">Not found</h1>"#))
                #expect(missing.text.contains("not found"))
            }
        }
        try await fixture.drop()
    }

    @Test func whatCallersSaidIsShownAsTextNeverAsMarkup() async throws {
        let fixture = try await EdgeFixture()
        let seeded = try await SeededCalls(fixture: fixture)
        let tenant = fixture.tenant, contact = Identifier(UUID()), lead = Identifier(UUID())
        let at = seeded.at(70)
        try await SeededCalls.project([
            (tenant, TranscriptChunk(callID: seeded.rich, sequence: 3, track: .inbound, text: Self.script, isFinal: true, confidence: 0.9,
                                     startOffsetMs: 7000, endOffsetMs: 7500)),
            (tenant, TranscriptChunk(callID: seeded.rich, sequence: 4, track: .inbound, text: Self.image, isFinal: true, confidence: 0.9,
                                     startOffsetMs: 8000, endOffsetMs: 8500)),
            (tenant, LeadCreated(leadID: lead, name: Self.script, phone: "+14155550166", intent: .sales, source: .call, notes: Self.image, createdAt: at)),
            (tenant, ContactUpserted(contactID: contact, name: Self.image, phone: "+14155550166", leadID: lead, firstSeenAt: at, lastSeenAt: at)),
        ], into: fixture.db)
        let escapedScript = "&lt;script&gt;alert(1)&lt;/script&gt;"
        let escapedImage = "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"
        try await fixture.test { client in
            let browser = try await ConsoleBrowser.signIn(client, key: fixture.apiKey)
            for path in ["/app/calls/\(seeded.rich)", "/app/leads", "/app/leads/\(lead)", "/app/contacts", "/app/contacts/\(contact)"] {
                let page = try await browser.get(path)
                #expect(page.status == .ok, "\(path)")
                #expect(page.text.contains(escapedScript) || page.text.contains(escapedImage), "\(path) shows the text")
                #expect(!page.text.contains(Self.script), "\(path): no script element from a caller")
                #expect(!page.text.contains("<img src=x"), "\(path): no image element from a caller")
            }
            let call = try await browser.get("/app/calls/\(seeded.rich)")
            #expect(call.text.element("transcript", tag: "ol").contains(escapedScript))
            #expect(call.text.element("transcript", tag: "ol").contains(escapedImage))
        }
        try await fixture.drop()
    }

    @Test func leadsContactsAndUsageShowTheTenantsData() async throws {
        let fixture = try await EdgeFixture()
        let seeded = try await SeededCalls(fixture: fixture)
        let contact = Identifier(UUID())
        try await SeededCalls.project([
            (fixture.tenant, ContactUpserted(contactID: contact, name: "Grace Hopper", phone: "+14155550188", email: "grace@example.com",
                                             firstSeenAt: seeded.at(80), lastSeenAt: seeded.at(80))),
            (fixture.tenant, InteractionLogged(interactionID: Identifier(UUID()), contactID: contact, callID: seeded.rich, channel: .call,
                                               summary: "Asked about whitening", durationSeconds: 95, occurredAt: seeded.at(80))),
            (seeded.other, ContactUpserted(contactID: Identifier(UUID()), name: "Other Person", phone: "+14155550188", firstSeenAt: seeded.at(80),
                                           lastSeenAt: seeded.at(80))),
        ], into: fixture.db)
        try await fixture.test { client in
            let browser = try await ConsoleBrowser.signIn(client, key: fixture.apiKey)
            let leads = try await browser.get("/app/leads")
            #expect(leads.status == .ok)
            #expect(leads.text.element("leads", tag: "table").values(of: "data-lead-id").count == 1)
            #expect(leads.text.element("leads", tag: "table").contains("Ada Lovelace"))
            let sales = try await browser.get("/app/leads?intent=sales")
            #expect(sales.text.element("leads", tag: "table").values(of: "data-lead-id").isEmpty)

            let contacts = try await browser.get("/app/contacts?name=hopper")
            #expect(contacts.status == .ok)
            #expect(contacts.text.element("contacts", tag: "table").values(of: "data-contact-id") == [contact.description])
            #expect(contacts.text.element("contacts", tag: "table").contains("Grace Hopper"))
            #expect(!contacts.text.contains("Other Person"))
            let byPhone = try await browser.get("/app/contacts?phone=%2B14155550188")
            #expect(byPhone.text.element("contacts", tag: "table").values(of: "data-contact-id") == [contact.description])
            let badPhone = try await browser.get("/app/contacts?phone=555")
            #expect(badPhone.status == .badRequest)
            #expect(badPhone.text.contains(#"id="error-phone""#))

            let page = try await browser.get("/app/contacts/\(contact)")
            #expect(page.status == .ok)
            #expect(page.text.element("contact", tag: "dl").contains("grace@example.com"))
            let calls = page.text.element("contact-calls", tag: "table")
            #expect(calls.contains("Asked about whitening"))
            #expect(calls.contains("/app/calls/\(seeded.rich)"))

            let usage = try await browser.get("/app/usage?month=2026-12")
            #expect(usage.status == .ok)
            let meters = usage.text.element("meters", tag: "table")
            #expect(meters.values(of: "data-meter").contains("call_minutes"), "\(meters)")
            #expect(usage.text.contains(#"<td id="invoice-total">"#))
            #expect(usage.text.contains(#"href="/app/usage?month=2026-11""#), "a link to the month before")
            let badMonth = try await browser.get("/app/usage?month=December")
            #expect(badMonth.status == .badRequest)
        }
        try await fixture.drop()
    }

    /// Runs the tenants service on the fixture's streams while `body` runs.
    static func withTenantsService(_ fixture: EdgeFixture, _ body: () async throws -> Void) async throws {
        let dependencies = ServiceDependencies(redis: try RedisConfiguration(url: TestServers.redisURL), naming: fixture.naming,
                                               tenants: TenantProfiles(source: fixture.directory), instance: "console-settings-test")
        let services = try await TenantsService.services(dependencies, directory: fixture.directory)
        let running = services.map { service in Task { try await service.run() } }
        defer { for task in running { task.cancel() } }
        try await body()
    }

    @Test func settingsRefusedAreShownNextToTheFieldAndNothingIsPublished() async throws {
        let fixture = try await EdgeFixture()
        try await fixture.test { client in
            let browser = try await ConsoleBrowser.signIn(client, key: fixture.apiKey)
            let form = try await browser.get("/app/settings")
            #expect(form.status == .ok)
            #expect(form.text.contains(#"<form id="settings""#))
            #expect(form.text.contains(#"id="greeting""#) && form.text.contains(#"id="personality""#) && form.text.contains(#"id="forwarding_number""#))
            let valid = Self.settingsFields(greeting: "Welcome to Bright Smiles")

            let badNumber = try await browser.post("/app/settings", Self.replacing("forwarding_number", with: "12345", in: valid), from: form)
            #expect(badNumber.status == .unprocessableContent)
            #expect(badNumber.text.contains(#"<p class="field-error" id="error-forwarding_number">The forwarding number must be an E.164 phone number like +14155550123.</p>"#))
            #expect(badNumber.text.contains(#"aria-describedby="error-forwarding_number""#))
            #expect(badNumber.text.contains(#"value="12345""#), "the form comes back as it was sent")

            let noGreeting = try await browser.post("/app/settings", Self.replacing("greeting", with: "  ", in: valid), from: form)
            #expect(noGreeting.status == .unprocessableContent)
            #expect(noGreeting.text.contains(#"id="error-greeting">The greeting must not be empty.</p>"#))

            let badHours = try await browser.post("/app/settings", Self.replacing("closes_tue", with: "08:00", in: valid), from: form)
            #expect(badHours.status == .unprocessableContent)
            #expect(badHours.text.contains(#"id="error-hours-tue">The closing time must be after opens.</p>"#))

            let badAnswer = try await browser.post("/app/settings", valid + [("faq_1_question", "Do you park?"), ("faq_1_answer", "")], from: form)
            #expect(badAnswer.status == .unprocessableContent)
            #expect(badAnswer.text.contains(#"id="error-faq-1-answer">The answer must not be empty.</p>"#))

            let badZone = try await browser.post("/app/settings", Self.replacing("time_zone", with: "Mars/Olympus", in: valid), from: form)
            #expect(badZone.status == .unprocessableContent)
            #expect(badZone.text.contains(#"id="error-time_zone""#))

            let noToken = try await client.execute(uri: "/app/settings", method: .post,
                                                   headers: [.cookie: browser.cookie, .contentType: "application/x-www-form-urlencoded"],
                                                   body: ByteBuffer(string: EdgeFixture.formEncode(valid)))
            #expect(noToken.status == .forbidden)
        }
        #expect(try await fixture.commands().filter { $0.type == ChangeSettings.type }.isEmpty, "nothing published")
        try await fixture.drop()
    }

    @Test func settingsSavedReachTheGreetingOfTheNextCallAtOnce() async throws {
        let fixture = try await EdgeFixture()
        // An edge that keeps credentials a minute, with the live feed: only the settings' event
        // makes it read the directory again before then.
        let streams = StreamCategory.allCases.flatMap { fixture.naming.streams($0, kind: .event) }
        let tail = try await StreamTail.connect(try RedisConfiguration(url: TestServers.redisURL), clientName: "console-settings-feed",
                                                configuration: StreamTail.Configuration(streams: streams, block: .milliseconds(200)))
        let feed = EventFeed(tail: tail, naming: fixture.naming)
        var edge = Edge(configuration: EdgeConfiguration(publicBaseURL: EdgeFixture.publicBase, tenantCacheTTL: .seconds(60), adminKey: EdgeFixture.adminKey),
                        publisher: fixture.publisher, lookup: fixture.directory, directory: fixture.directory, reads: fixture.reads)
        edge.eventFeed = feed
        let following = Task { try await feed.run() }
        defer { following.cancel() }
        let deadline = ContinuousClock.now + .seconds(10)
        while !feed.isFollowing, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }

        let voice = { @Sendable (sid: String) in
            fixture.twilio("voice", [("AccountSid", "AC00000000000000000000000000000001"), ("CallSid", sid), ("CallStatus", "ringing"),
                                     ("Direction", "inbound"), ("From", "+14155550100"), ("To", "+14155550199")])
        }
        try await Self.withTenantsService(fixture) {
            try await Application(router: edge.router()).test(.router) { client in
                let before = try await client.post(voice("CA00000000000000000000000000000001"))
                #expect(before.status == .ok)
                #expect(!before.text.contains("Welcome to Bright Smiles"))

                let browser = try await ConsoleBrowser.signIn(client, key: fixture.apiKey)
                let form = try await browser.get("/app/settings")
                let saved = try await browser.post("/app/settings", Self.settingsFields(greeting: "Welcome to Bright Smiles"), from: form)
                #expect(saved.status == .seeOther)
                #expect(saved.headers[.location] == "/app/settings?saved=1")
                let after = try await browser.get("/app/settings?saved=1")
                #expect(after.text.contains(#"id="saved""#))
                #expect(after.text.contains("Welcome to Bright Smiles</textarea>"), "the form shows what the tenants service stored")
                #expect(after.text.contains(#"value="+14155550142""#))

                // The next call hears it: well within the minute the edge would otherwise keep the old one.
                var greeted = ""
                let until = ContinuousClock.now + .seconds(10)
                repeat {
                    greeted = try await client.post(voice("CA00000000000000000000000000000002")).text
                    if greeted.contains("Welcome to Bright Smiles") { break }
                    try await Task.sleep(for: .milliseconds(50))
                } while ContinuousClock.now < until
                #expect(greeted.contains("Welcome to Bright Smiles"), "\(greeted)")

                // A change made elsewhere (the API, another edge's console) reaches this edge by
                // the event feed alone.
                var changed = AISettings.builtIn
                changed.greeting = "Good morning from Bright Smiles"
                let put = try await client.execute(uri: "/v1/settings", method: .put,
                                                   headers: [.authorization: "Bearer \(fixture.apiKey)", .contentType: "application/json"],
                                                   body: ByteBuffer(bytes: JSONObjectWriter.object { changed.writeJSON(to: &$0) }))
                #expect(put.status == .accepted)
                let later = ContinuousClock.now + .seconds(10)
                repeat {
                    greeted = try await client.post(voice("CA00000000000000000000000000000003")).text
                    if greeted.contains("Good morning from Bright Smiles") { break }
                    try await Task.sleep(for: .milliseconds(50))
                } while ContinuousClock.now < later
                #expect(greeted.contains("Good morning from Bright Smiles"), "\(greeted)")
            }
        }
        let published = try await fixture.commands().filter { $0.type == ChangeSettings.type }
        #expect(published.count == 2, "the console's save, then the API's")
        let change = try MessageCodec.decode(ChangeSettings.self, from: try #require(published.first).data)
        #expect(change.settings.greeting == "Welcome to Bright Smiles")
        #expect(change.settings.forwardingNumber == "+14155550142")
        #expect(change.settings.businessHours.openings.map(\.day) == [.mon, .tue, .wed])
        #expect(change.settings.faq == [AISettings.FAQEntry(question: "Where are you?", answer: "12 Main Street.", keywords: ["address", "where"])])
        #expect(change.settings.intents.first { $0.intent == .appointment }?.phrases == ["book", "appointment"])
        try await fixture.drop()
    }

    @Test func outboundWebhooksAreAddedAndDisabled() async throws {
        let fixture = try await EdgeFixture()
        let other = try await fixture.directory.provision(NewTenant(name: "Other Co", twilioAuthToken: "tok-other", requestsPerSecond: 50), publisher: nil)
        let foreign = try await fixture.directory.addWebhook(to: other.tenant.id, url: "https://other.example.com/hook")
        try await fixture.test { client in
            let browser = try await ConsoleBrowser.signIn(client, key: fixture.apiKey)
            let settings = try await browser.get("/app/settings")
            #expect(settings.text.contains(#"id="webhooks-empty""#))

            let refused = try await browser.post("/app/settings/webhooks", [("url", "ftp://files.example.com/x"), ("format", "json"),
                                                                            ("events", "voicecore.crm.lead-created")], from: settings)
            #expect(refused.status == .unprocessableContent)
            #expect(refused.text.contains(#"<p class="field-error" id="error-webhook-url">The URL must be an http:// or https:// URL.</p>"#))

            let added = try await browser.post("/app/settings/webhooks", [("url", "https://hooks.example.com/services/T000/SECRET"), ("format", "slack"),
                                                                          ("events", LeadCreated.type), ("events", CallEnded.type)], from: settings)
            #expect(added.status == .ok)
            let secret = added.text.element("webhook-secret", tag: "code")
            #expect(secret.contains("whsec_"))
            let listed = try await browser.get("/app/settings")
            let table = listed.text.element("webhooks", tag: "table")
            let ids = table.values(of: "data-webhook-id")
            #expect(ids.count == 1)
            #expect(table.contains("https://hooks.example.com/…"))
            #expect(!table.contains("SECRET"), "the URL's path (a Slack credential) is not shown")
            #expect(table.contains("\(LeadCreated.type), \(CallEnded.type)"))
            #expect(try await fixture.directory.profile(of: fixture.tenant)?.webhooks.map(\.format) == [.slack])

            let notMine = try await browser.post("/app/settings/webhooks/\(foreign.id)/disable", [], from: listed)
            #expect(notMine.status == .notFound)
            #expect(try await fixture.directory.profile(of: other.tenant.id)?.webhooks.count == 1, "another tenant's webhook stays")

            let disabled = try await browser.post("/app/settings/webhooks/\(try #require(ids.first))/disable", [], from: listed)
            #expect(disabled.status == .seeOther)
            #expect(try await fixture.directory.profile(of: fixture.tenant)?.webhooks.isEmpty == true)
            let after = try await browser.get(try #require(disabled.headers[.location]))
            #expect(after.text.contains(#"id="webhook-disabled""#))
            #expect(after.text.element("webhooks", tag: "table").values(of: "data-webhook-id").isEmpty)
        }
        try await fixture.drop()
    }

    /// A complete settings form: open Monday to Wednesday, one FAQ entry, two intents.
    static func settingsFields(greeting: String) -> [(String, String)] {
        var fields: [(String, String)] = [("greeting", greeting), ("personality", "warm and brief"), ("forwarding_number", "+14155550142"),
                                          ("conversation", "gather"), ("time_zone", "America/New_York")]
        for day in ["mon", "tue", "wed", "thu", "fri", "sat", "sun"] {
            if ["mon", "tue", "wed"].contains(day) { fields.append(("open_\(day)", "1")) }
            fields += [("opens_\(day)", "09:00"), ("closes_\(day)", "17:00")]
        }
        fields += [("faq_0_question", "Where are you?"), ("faq_0_answer", "12 Main Street."), ("faq_0_keywords", "address, where")]
        fields += [("intent_appointment", "book\r\nappointment\r\n"), ("intent_sales", "price")]
        return fields
    }

    static func replacing(_ name: String, with value: String, in fields: [(String, String)]) -> [(String, String)] {
        fields.map { $0.0 == name ? ($0.0, value) : $0 }
    }
}
