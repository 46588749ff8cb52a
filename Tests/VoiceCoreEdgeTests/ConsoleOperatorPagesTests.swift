import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing
import VoiceCoreBus
import VoiceCoreEvents
import VoiceCorePostgres
import VoiceCoreProjections
import VoiceCoreQueries
import VoiceCoreRedis
import VoiceCoreTenants
import VoiceCoreTestSupport
@testable import VoiceCoreEdge

/// The operator's console (`/app/operator…`) against real Redis and Postgres: the streams and
/// projections it shows are the servers', the dead letters it requeues move in Redis.
@Suite("Console: the operator's pages", .serialized)
struct ConsoleOperatorPagesTests {
    /// The projections' status as `voicecore edge` reads it (`ConsoleProjections` in the executable).
    struct ProjectionsOfFixture: ConsoleProjectionSource {
        let naming: StreamNaming
        let redis: RedisClient
        let db: PostgresConnection

        func projectionStatuses() async throws -> [ConsoleProjectionStatus] {
            try await ProjectionStatus.read(StandardProjections.all, naming: naming, streams: StreamInspector(connection: BusConnection(redis)), db: db).map {
                ConsoleProjectionStatus(projection: $0.projection, gap: $0.gap, gapIsLowerBound: $0.gapIsLowerBound,
                                        oldestUnprojectedSeconds: $0.oldestUnprojectedSeconds, failures: $0.failures)
            }
        }
    }

    /// The fixture's edge with the operator's backends on the fixture's servers.
    static func operatorEdge(_ fixture: EdgeFixture) -> Edge {
        var edge = fixture.edge
        edge.operatorConsole = ConsoleOperatorBackends(
            prefix: fixture.prefix, streams: StreamAdmin(connection: fixture.redis), deadLetters: DeadLetters(connection: fixture.redis),
            projections: ProjectionsOfFixture(naming: fixture.naming, redis: fixture.redis, db: fixture.db), reads: fixture.reads)
        return edge
    }

    static func run(_ body: @Sendable (EdgeFixture, any TestClientProtocol) async throws -> Void) async throws {
        let fixture = try await EdgeFixture()
        do {
            let app = Application(router: operatorEdge(fixture).router())
            try await app.test(.router) { client in try await body(fixture, client) }
        } catch {
            try? await fixture.drop()
            throw error
        }
        try await fixture.drop()
    }

    // MARK: Browsing as a signed-in user

    /// Signs in with `key` and returns the session cookie (`vc_session=…`).
    static func signIn(_ client: any TestClientProtocol, key: String) async throws -> String {
        let response = try await client.execute(uri: "/app/sign-in", method: .post, headers: [.contentType: "application/x-www-form-urlencoded"],
                                                 body: ByteBuffer(string: EdgeFixture.formEncode([("key", key)])))
        #expect(response.status == .seeOther)
        let cookie = try #require(response.headers[.setCookie])
        return String(try #require(cookie.split(separator: ";").first))
    }

    static func get(_ client: any TestClientProtocol, _ uri: String, cookie: String) async throws -> TestResponse {
        try await client.execute(uri: uri, method: .get, headers: [.cookie: cookie])
    }

    static func post(_ client: any TestClientProtocol, _ uri: String, cookie: String, form: [(String, String)]) async throws -> TestResponse {
        try await client.execute(uri: uri, method: .post, headers: [.cookie: cookie, .contentType: "application/x-www-form-urlencoded"],
                                 body: ByteBuffer(string: EdgeFixture.formEncode(form)))
    }

    /// The page's CSRF token (the hidden `csrf` field of its forms).
    static func csrf(_ html: String) throws -> String {
        let match = try #require(html.firstMatch(of: /name="csrf" value="([^"]+)"/))
        return String(match.1)
    }

    /// The `<tr …>` row whose opening tag contains every one of `attributes`, up to its `</tr>`.
    static func row(_ html: String, _ attributes: String...) -> String? {
        var rest = html[...]
        while let start = rest.range(of: "<tr ") {
            guard let end = rest[start.lowerBound...].range(of: "</tr>") else { return nil }
            let row = rest[start.lowerBound..<end.upperBound]
            let tag = row.prefix { $0 != ">" }
            if attributes.allSatisfy({ tag.contains($0) }) { return String(row) }
            rest = rest[end.upperBound...]
        }
        return nil
    }

    /// The text of the element of class `cell` in `row` (its first `class="… cell …"` element).
    static func cell(_ row: String, _ cell: String) -> String? {
        var rest = row[...]
        while let classAttribute = rest.range(of: "class=\"") {
            let value = rest[classAttribute.upperBound...].prefix { $0 != "\"" }
            rest = rest[classAttribute.upperBound...]
            guard value.split(separator: " ").contains(Substring(cell)), let close = rest.firstIndex(of: ">") else { continue }
            return String(rest[rest.index(after: close)...].prefix { $0 != "<" }).trimmingCharacters(in: .whitespaces)
        }
        return nil
    }

    // MARK: Streams and projections

    @Test("the platform page shows a stream's real length and a group's lag, pending entries and oldest pending age")
    func streamsShowLengthLagAndPending() async throws {
        try await Self.run { fixture, client in
            let stream = "\(fixture.prefix):{p0}:calls:commands"
            for index in 0..<5 { _ = try await fixture.redis.execute(.xadd(stream, fields: [("n", String(index))])) }
            try await fixture.redis.execute(.xgroupCreate(stream, group: "svc-test", start: .beginning))
            // Two delivered and not acknowledged: pending 2, lag 3.
            _ = try await fixture.redis.execute(.xreadgroup(group: "svc-test", consumer: "c1", streams: [(stream, .newEntries)], count: 2))
            // A stream no group reads: listed, but not among the backlogs.
            let quiet = "\(fixture.prefix):{p1}:crm:commands"
            _ = try await fixture.redis.execute(.xadd(quiet, fields: [("n", "0")]))

            let cookie = try await Self.signIn(client, key: EdgeFixture.adminKey)
            let page = try await Self.get(client, "/app/operator", cookie: cookie)
            #expect(page.status == .ok)
            let html = page.text
            #expect(html.contains("id=\"streams\""))
            let row = try #require(Self.row(html, "data-stream=\"\(stream)\"", "data-group=\"svc-test\""), "no row for the stream's group")
            #expect(Self.cell(row, "stream-length") == "5")
            #expect(Self.cell(row, "group-lag") == "3")
            #expect(Self.cell(row, "group-pending") == "2")
            let oldest = try #require(Self.cell(row, "group-oldest-pending"))
            #expect(oldest.hasSuffix("ms") || oldest.hasSuffix(" s"), "oldest pending age: \(oldest)")
            #expect(html.contains("id=\"edge-rates\""))
            #expect(html.contains("/app/assets/js/operator.js"))
            #expect(Self.row(html, "data-stream=\"\(quiet)\"", "data-group=\"\"") != nil)

            let backlog = try await Self.get(client, "/app/operator?backlog=1", cookie: cookie)
            #expect(backlog.status == .ok)
            #expect(Self.row(backlog.text, "data-stream=\"\(stream)\"", "data-group=\"svc-test\"") != nil)
            #expect(Self.row(backlog.text, "data-stream=\"\(quiet)\"") == nil)
            #expect(try await Self.get(client, "/app/operator?backlog=yes", cookie: cookie).status == .badRequest)
            #expect(try await Self.get(client, "/app/operator?other=1", cookie: cookie).status == .badRequest)
        }
    }

    @Test("the projections table shows the gap of a projection behind its stream, and no gap for one that is not")
    func projectionsShowTheirGap() async throws {
        try await Self.run { fixture, client in
            let cookie = try await Self.signIn(client, key: EdgeFixture.adminKey)
            var html = try await Self.get(client, "/app/operator", cookie: cookie).text
            #expect(Self.row(html, "data-projection=\"billing\"", "data-gap=\"0\"") != nil)

            // Three events on a stream only the billing projection (and the archive) reads, never projected.
            let stream = fixture.naming.stream(.billing, kind: .event, partition: 1)
            for index in 0..<3 { _ = try await fixture.redis.execute(.xadd(stream, fields: [("n", String(index))])) }
            html = try await Self.get(client, "/app/operator", cookie: cookie).text
            #expect(html.contains("id=\"projections\""))
            let billing = try #require(Self.row(html, "data-projection=\"billing\""))
            #expect(billing.contains("data-gap=\"3\""), "billing row: \(billing)")
            #expect(Self.cell(billing, "projection-gap") == "3")
            #expect(Self.cell(billing, "projection-age") != "—")
            #expect(Self.row(html, "data-projection=\"calls\"", "data-gap=\"0\"") != nil)
        }
    }

    @Test("the edge's rates: rates.json counts requests and publishes for the operator")
    func ratesCountRequestsAndPublishes() async throws {
        try await Self.run { fixture, client in
            let cookie = try await Self.signIn(client, key: EdgeFixture.adminKey)
            let first = try await Self.get(client, "/app/operator/rates.json", cookie: cookie)
            #expect(first.status == .ok)
            #expect(first.headers[.contentType]?.hasPrefix("application/json") == true)
            // A call's status callback: one request, one command published.
            let callback = try await client.post(fixture.twilio("status", fixture.statusCallback(callSid: "CA55555555555555555555555555555555", status: "ringing", sequence: 0)))
            #expect(callback.status.code < 300)
            let second = try await Self.get(client, "/app/operator/rates.json", cookie: cookie)
            let (a, b) = (first.json, second.json)
            let requests = try #require(a["requests"] as? Int), laterRequests = try #require(b["requests"] as? Int)
            let publishes = try #require(a["publishes"] as? Int), laterPublishes = try #require(b["publishes"] as? Int)
            #expect(laterRequests == requests + 2)  // the callback and the first reading
            #expect(laterPublishes == publishes + 1)
            #expect(try #require(b["monotonic_ms"] as? Int) >= (try #require(a["monotonic_ms"] as? Int)))
        }
    }

    // MARK: Dead letters

    /// A dead letter as ``ConsumerGroupRunner`` writes one, with text a caller could have said.
    @discardableResult
    static func deadLetter(_ fixture: EdgeFixture, origin: String, group: String, reason: String, payload: String, requeues: Int? = nil) async throws -> StreamEntryID {
        let originID = try await fixture.redis.execute(.xadd(origin, fields: [("type", "voicecore.test.thing"), ("payload", payload)]))
        var fields: [(String, String)] = [
            ("type", "voicecore.test.thing"), ("id", UUID().uuidString.lowercased()), ("payload", payload),
            ("dlq.origin_stream", origin), ("dlq.origin_id", originID.description), ("dlq.group", group), ("dlq.attempts", "5"),
            ("dlq.time", "2026-12-07T10:00:00Z"), ("dlq.reason", reason), ("dlq.error", "handler threw: \(reason)"),
        ]
        if let requeues { fields.append((DeadLetters.requeueCountField, String(requeues))) }
        return try await fixture.redis.execute(.xadd("\(origin):dlq:\(group)", fields: fields))
    }

    @Test("a dead letter shows its reason and its fields as text, never as markup")
    func deadLetterShowsReasonAndFieldsAsText() async throws {
        try await Self.run { fixture, client in
            let origin = "\(fixture.prefix):{p0}:crm:commands"
            let dlq = "\(origin):dlq:svc-crm"
            try await Self.deadLetter(fixture, origin: origin, group: "svc-crm", reason: "<script>alert(1)</script>", payload: "\"><img src=x onerror=alert(2)>")
            let cookie = try await Self.signIn(client, key: EdgeFixture.adminKey)

            let list = try await Self.get(client, "/app/operator/dead-letters", cookie: cookie)
            #expect(list.status == .ok)
            let row = try #require(Self.row(list.text, "data-stream=\"\(dlq)\""))
            #expect(Self.cell(row, "dlq-depth") == "1")
            let link = try #require(row.firstMatch(of: /href="([^"]+)"/)).1
            #expect(link == "/app/operator/dead-letters/\(fixture.prefix):%7Bp0%7D:crm:commands:dlq:svc-crm")

            let page = try await Self.get(client, String(link), cookie: cookie)
            #expect(page.status == .ok)
            let html = page.text
            #expect(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"))
            #expect(html.contains("&quot;&gt;&lt;img src=x onerror=alert(2)&gt;"))
            #expect(!html.contains("<script>alert(1)"))
            #expect(!html.contains("<img src=x"))
            #expect(html.contains("class=\"dlq-reason\""))
            #expect(html.contains("id=\"requeue-all\""))

            // Not a dead-letter stream, or outside the deployment's prefix: not found, nothing read.
            #expect(try await Self.get(client, "/app/operator/dead-letters/\(fixture.prefix):%7Bp0%7D:crm:commands", cookie: cookie).status == .notFound)
            #expect(try await Self.get(client, "/app/operator/dead-letters/other:x:dlq:svc", cookie: cookie).status == .notFound)
            let missing = try await Self.get(client, "/app/operator/dead-letters/\(fixture.prefix):nothing:dlq:svc", cookie: cookie)
            #expect(missing.status == .notFound)
            #expect(missing.text.contains("id=\"not-found\""))
        }
    }

    @Test("requeue goes through a confirmation page, then the entry is back for its group and the dead-letter depth falls")
    func requeueConfirmsThenMoves() async throws {
        try await Self.run { fixture, client in
            let origin = "\(fixture.prefix):{p1}:crm:commands"
            let dlq = "\(origin):dlq:svc-crm"
            let retry = "\(origin):retry:svc-crm"
            let first = try await Self.deadLetter(fixture, origin: origin, group: "svc-crm", reason: "first failure", payload: "{\"n\":1}")
            try await Self.deadLetter(fixture, origin: origin, group: "svc-crm", reason: "second failure", payload: "{\"n\":2}")
            let path = "/app/operator/dead-letters/\(fixture.prefix):%7Bp1%7D:crm:commands:dlq:svc-crm"
            let cookie = try await Self.signIn(client, key: EdgeFixture.adminKey)
            let csrf = try Self.csrf(try await Self.get(client, path, cookie: cookie).text)

            // Step 1: the confirmation page; nothing has moved yet.
            let confirm = try await Self.post(client, path + "/requeue", cookie: cookie, form: [("csrf", csrf), ("id", first.description)])
            #expect(confirm.status == .ok)
            #expect(confirm.text.contains("id=\"confirm-requeue\""))
            #expect(confirm.text.contains("id=\"confirm-requeue-submit\""))
            #expect(confirm.text.contains("name=\"id\" value=\"\(first)\""))
            #expect(try await fixture.redis.execute(.xlen(dlq)) == 2)
            #expect(try await fixture.redis.execute(.xrange(retry)).isEmpty)

            // Step 2: the requeue.
            let result = try await Self.post(client, path + "/requeue/confirmed", cookie: cookie, form: [("csrf", csrf), ("id", first.description)])
            #expect(result.status == .ok)
            let html = result.text
            #expect(html.contains("id=\"requeue-result\""))
            #expect(html.contains("<span id=\"dlq-depth-before\">2</span>"))
            #expect(html.contains("<span id=\"dlq-depth-after\" class=\"dlq-depth\">1</span>"))
            #expect(Self.row(html, "data-entry-id=\"\(first)\"") != nil)
            #expect(try await fixture.redis.execute(.xlen(dlq)) == 1)
            let requeued = try await fixture.redis.execute(.xrange(retry))
            #expect(requeued.count == 1)
            #expect(requeued.first?["payload"] == "{\"n\":1}")
            #expect(requeued.first?[DeadLetters.requeueCountField] == "1")
            #expect(try await fixture.redis.execute(.xrange(dlq)).first?["dlq.reason"] == "second failure")

            // The dead-letter list shows the new depth.
            let list = try await Self.get(client, "/app/operator/dead-letters", cookie: cookie).text
            #expect(Self.row(list, "data-stream=\"\(dlq)\"").flatMap { Self.cell($0, "dlq-depth") } == "1")
        }
    }

    @Test("requeue all moves what it can and says which entry it refused and why")
    func requeueAllReportsRefusals() async throws {
        try await Self.run { fixture, client in
            let origin = "\(fixture.prefix):{p2}:crm:commands"
            let dlq = "\(origin):dlq:svc-crm"
            try await Self.deadLetter(fixture, origin: origin, group: "svc-crm", reason: "fine", payload: "a")
            let poison = try await Self.deadLetter(fixture, origin: origin, group: "svc-crm", reason: "poison", payload: "b", requeues: DeadLetters.defaultMaxRequeues)
            try await Self.deadLetter(fixture, origin: origin, group: "svc-crm", reason: "fine too", payload: "c")
            let path = "/app/operator/dead-letters/\(fixture.prefix):%7Bp2%7D:crm:commands:dlq:svc-crm"
            let cookie = try await Self.signIn(client, key: EdgeFixture.adminKey)
            let csrf = try Self.csrf(try await Self.get(client, path, cookie: cookie).text)

            let confirm = try await Self.post(client, path + "/requeue", cookie: cookie, form: [("csrf", csrf), ("all", "1")])
            #expect(confirm.text.contains("Requeue 3 entries"))
            // An entry dead-lettered after the confirmation was shown stays where it is.
            let late = try await Self.deadLetter(fixture, origin: origin, group: "svc-crm", reason: "late", payload: "d")
            let confirmedIDs = confirm.text.matches(of: /<input type="hidden" name="id" value="([^"]+)">/).map { String($0.1) }
            #expect(confirmedIDs.count == 3)
            #expect(try await Self.post(client, path + "/requeue/confirmed", cookie: cookie, form: [("csrf", csrf), ("all", "1")]).status == .badRequest)
            let result = try await Self.post(client, path + "/requeue/confirmed", cookie: cookie, form: [("csrf", csrf)] + confirmedIDs.map { ("id", $0) })
            #expect(result.status == .ok)
            #expect(result.text.contains("data-count=\"2\""))
            let refused = try #require(result.text.firstMatch(of: /<ul id="requeue-refused">(?s)(.*?)<\/ul>/)).1
            #expect(refused.contains("data-entry-id=\"\(poison)\""))
            #expect(refused.contains("requeued 3 times already"))
            #expect(result.text.contains("<span id=\"dlq-depth-after\" class=\"dlq-depth\">2</span>"))
            #expect(try await fixture.redis.execute(.xrange(dlq)).map(\.id) == [poison, late])
            #expect(try await fixture.redis.execute(.xlen("\(origin):retry:svc-crm")) == 2)
        }
    }

    @Test("a requeue without the session's CSRF token is refused (403) and moves nothing")
    func requeueWithoutCSRFIsRefused() async throws {
        try await Self.run { fixture, client in
            let origin = "\(fixture.prefix):{p3}:crm:commands"
            let dlq = "\(origin):dlq:svc-crm"
            let entry = try await Self.deadLetter(fixture, origin: origin, group: "svc-crm", reason: "x", payload: "y")
            let path = "/app/operator/dead-letters/\(fixture.prefix):%7Bp3%7D:crm:commands:dlq:svc-crm"
            let cookie = try await Self.signIn(client, key: EdgeFixture.adminKey)

            for form in [[("id", entry.description)], [("csrf", "not-the-token"), ("id", entry.description)], [("csrf", ""), ("id", entry.description)]] {
                let refused = try await Self.post(client, path + "/requeue/confirmed", cookie: cookie, form: form)
                #expect(refused.status == .forbidden)
                #expect(refused.text.contains("id=\"error\""))
            }
            // From another site, even with the token.
            let csrf = try Self.csrf(try await Self.get(client, path, cookie: cookie).text)
            let crossSite = try await client.execute(
                uri: path + "/requeue/confirmed", method: .post,
                headers: [.cookie: cookie, .contentType: "application/x-www-form-urlencoded", HTTPField.Name("Origin")!: "https://evil.example"],
                body: ByteBuffer(string: EdgeFixture.formEncode([("csrf", csrf), ("id", entry.description)])))
            #expect(crossSite.status == .forbidden)
            #expect(try await fixture.redis.execute(.xlen(dlq)) == 1)
            #expect(try await fixture.redis.execute(.xrange("\(origin):retry:svc-crm")).isEmpty)
        }
    }

    @Test("a tenant's session gets no operator page, no rates and no requeue; no session is sent to sign in")
    func tenantSessionGetsNoOperatorPage() async throws {
        try await Self.run { fixture, client in
            let origin = "\(fixture.prefix):{p0}:crm:commands"
            let entry = try await Self.deadLetter(fixture, origin: origin, group: "svc-crm", reason: "x", payload: "y")
            let path = "/app/operator/dead-letters/\(fixture.prefix):%7Bp0%7D:crm:commands:dlq:svc-crm"
            let cookie = try await Self.signIn(client, key: fixture.apiKey)
            for uri in ["/app/operator", "/app/operator/dead-letters", path, "/app/operator/tenants", "/app/operator/rates.json"] {
                let response = try await Self.get(client, uri, cookie: cookie)
                #expect(response.status == .forbidden, "\(uri)")
                #expect(!response.text.contains("svc-crm"), "\(uri)")
            }
            let tenantPage = try await Self.get(client, "/app/now", cookie: cookie)
            let csrf = try Self.csrf(tenantPage.text)
            let requeue = try await Self.post(client, path + "/requeue/confirmed", cookie: cookie, form: [("csrf", csrf), ("id", entry.description)])
            #expect(requeue.status == .forbidden)
            #expect(try await fixture.redis.execute(.xlen("\(origin):dlq:svc-crm")) == 1)

            let anonymous = try await client.execute(uri: "/app/operator", method: .get)
            #expect(anonymous.status == .seeOther)
            #expect(anonymous.headers[.location] == "/app/sign-in")
        }
    }

    // MARK: Outages

    @Test("with Redis gone the operator's pages answer 503 pages saying so, never a 500; what Postgres serves still shows")
    func redisOutageAnswers503Pages() async throws {
        // A Redis of this test's own, stopped mid-test (ports as EdgeTests' outage test: 23000–25999).
        let redis = RestartableRedis(ports: 23_000..<26_000, appendOnly: false)
        try await redis.start()
        let fixture = try await EdgeFixture(redisURL: redis.url)
        let origin = "\(fixture.prefix):{p0}:crm:commands"
        try await Self.deadLetter(fixture, origin: origin, group: "svc-crm", reason: "x", payload: "y")
        let path = "/app/operator/dead-letters/\(fixture.prefix):%7Bp0%7D:crm:commands:dlq:svc-crm"
        try await Application(router: Self.operatorEdge(fixture).router()).test(.router) { client in
            let cookie = try await Self.signIn(client, key: EdgeFixture.adminKey)
            #expect(try await Self.get(client, "/app/operator", cookie: cookie).status == .ok)
            let csrf = try Self.csrf(try await Self.get(client, path, cookie: cookie).text)

            try await redis.stop()

            let overview = try await Self.get(client, "/app/operator", cookie: cookie)
            #expect(overview.status == .serviceUnavailable)
            #expect(overview.text.contains("id=\"streams-error\""))
            #expect(overview.text.contains("id=\"projections-error\""))
            #expect(overview.text.contains("id=\"edge-rates\""))
            for uri in ["/app/operator/dead-letters", path] {
                let page = try await Self.get(client, uri, cookie: cookie)
                #expect(page.status == .serviceUnavailable, "\(uri)")
                #expect(page.headers[.contentType]?.hasPrefix("text/html") == true, "\(uri)")
            }
            let requeue = try await Self.post(client, path + "/requeue/confirmed", cookie: cookie, form: [("csrf", csrf), ("id", "1-0")])
            #expect(requeue.status == .serviceUnavailable)
            #expect(try await Self.get(client, "/app/operator/tenants", cookie: cookie).status == .ok)
        }
        try await fixture.drop()
    }

    // MARK: Tenants

    @Test("the tenants page counts each tenant's calls of its own today")
    func tenantsPageCountsCallsOfTheTenantsDay() async throws {
        try await Self.run { fixture, client in
            // A tenant 14 hours ahead of UTC: its day starts at another instant than the fixture's (UTC).
            let far = try await fixture.directory.provision(NewTenant(name: "Kiritimati <Clinic>", timeZone: "Pacific/Kiritimati"), publisher: nil).tenant.id
            func call(_ tenant: Identifier, startedAt sql: String, status: String = "completed", answered: Bool = true) async throws {
                try await fixture.db.query(PostgresQuery(unsafeSQL: """
                    INSERT INTO call_sessions (tenant_id, call_id, provider, provider_call_id, direction, from_number, to_number, status, started_at, answered_at)
                    SELECT $1, gen_random_uuid(), 'twilio', 'CA' || md5(random()::text), 'inbound', '+14155550100', '+14155550199', $2, s, CASE WHEN $3 THEN s END
                    FROM (SELECT \(sql) AS s) t
                    """, binds: [PostgresBind(tenant.uuid), PostgresBind(status), PostgresBind(answered)]))
            }
            let farDay = "(date_trunc('day', now() AT TIME ZONE 'Pacific/Kiritimati') AT TIME ZONE 'Pacific/Kiritimati')"
            try await call(far, startedAt: "\(farDay) + interval '1 second'")
            try await call(far, startedAt: "\(farDay) + interval '2 seconds'", status: "in-progress")
            try await call(far, startedAt: "\(farDay) - interval '1 second'")  // yesterday there
            let utcDay = "(date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')"
            try await call(fixture.tenant, startedAt: "\(utcDay) + interval '1 second'", answered: false)
            try await call(fixture.tenant, startedAt: "\(utcDay) - interval '1 second'")  // yesterday in UTC

            let cookie = try await Self.signIn(client, key: EdgeFixture.adminKey)
            let page = try await Self.get(client, "/app/operator/tenants", cookie: cookie)
            #expect(page.status == .ok)
            let html = page.text
            #expect(html.contains("id=\"tenants\""))
            let farRow = try #require(Self.row(html, "data-tenant-id=\"\(far)\""))
            #expect(farRow.contains("data-calls=\"2\""), "\(farRow)")
            #expect(farRow.contains("Kiritimati &lt;Clinic&gt;"))
            #expect(farRow.contains("Pacific/Kiritimati"))
            let ownRow = try #require(Self.row(html, "data-tenant-id=\"\(fixture.tenant)\""))
            #expect(ownRow.contains("data-calls=\"1\""), "\(ownRow)")
            #expect(html.contains("<span id=\"tenants-calls-today\">3</span>"))
        }
    }
}
