import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Synchronization
import Testing
import VoiceCoreBus
import VoiceCoreEvents
import VoiceCorePostgres
import VoiceCoreQueries
import VoiceCoreTenants
@testable import VoiceCoreEdge

/// The console's core against real Redis and Postgres through the edge's router: signing in and
/// out, what the session cookie opens and what it never opens, CSRF and cross-site refusals, the
/// security headers, the static files and the templates' escaping.
@Suite("Console: sessions and security", .serialized)
struct ConsoleSessionTests {
    /// How often a test form's handler ran.
    final class RunCount: Sendable {
        private let count = Mutex(0)
        func add() { count.withLock { $0 += 1 } }
        var value: Int { count.withLock { $0 } }
    }

    static let form: HTTPFields = [.contentType: "application/x-www-form-urlencoded"]

    /// Runs `body` with a fixture and a client of its edge's router, plus test pages registered
    /// with the page helpers (`/app/test/tenant`, `/app/test/operator`, the form `/app/test/form`,
    /// which counts its runs in `formRuns`).
    static func run(edge: ((EdgeFixture) -> Edge)? = nil,
                    _ body: @Sendable (EdgeFixture, any TestClientProtocol, RunCount) async throws -> Void) async throws {
        let fixture = try await EdgeFixture()
        let formRuns = RunCount()
        do {
            let edge = edge?(fixture) ?? fixture.edge
            let router = edge.router()
            edge.consoleTenantPage(router, "/app/test/tenant", parameters: ["say", "fail"]) { page, tenant in
                switch try page.query.string("fail") ?? "" {
                case "read": throw ReadUnavailable(reason: "Postgres is unreachable", retryAfterSeconds: 5)
                case "missing": throw Problem(.notFound, "Not found", detail: "no call with this id")
                case "other": throw CancellationError()
                default: break
                }
                return ConsoleView.page("error", title: "Test", nav: "calls", session: page.session,
                                        data: ["headingID": "test-page", "heading": "Tenant \(tenant)", "message": try page.query.string("say") ?? "-",
                                               "home": "/app"])
            }
            edge.consoleOperatorPage(router, "/app/test/operator", parameters: []) { page in
                ConsoleView.page("error", title: "Test", nav: "operator", session: page.session,
                                 data: ["headingID": "test-page", "heading": "Operator", "message": "-", "home": "/app"])
            }
            edge.consoleTenantForm(router, "/app/test/form") { page, _, form in
                formRuns.add()
                return ConsoleView.redirect(to: "/app/test/tenant?say=\(form.value("say") ?? "")")
            }
            try await Application(router: router).test(.router) { client in try await body(fixture, client, formRuns) }
        } catch {
            try? await fixture.drop()
            throw error
        }
        try await fixture.drop()
    }

    /// Posts the sign-in form with `key`; `extra` headers (an `Origin`) added.
    static func signIn(_ client: any TestClientProtocol, key: String, headers extra: HTTPFields = [:]) async throws -> TestResponse {
        var headers = form
        headers.append(contentsOf: extra)
        return try await client.execute(uri: "/app/sign-in", method: .post, headers: headers, body: ByteBuffer(string: EdgeFixture.formEncode([("key", key)])))
    }

    /// Signs in with `key` and returns the cookie to send (`vc_session=…`).
    static func cookie(_ client: any TestClientProtocol, key: String) async throws -> String {
        let response = try await signIn(client, key: key)
        #expect(response.status == .seeOther)
        let setCookie = try #require(response.headers[.setCookie])
        return String(try #require(setCookie.split(separator: ";").first))
    }

    static func get(_ client: any TestClientProtocol, _ uri: String, cookie: String? = nil, headers extra: HTTPFields = [:]) async throws -> TestResponse {
        var headers = extra
        if let cookie { headers[.cookie] = cookie }
        return try await client.execute(uri: uri, method: .get, headers: headers)
    }

    static func post(_ client: any TestClientProtocol, _ uri: String, cookie: String, fields: [(String, String)],
                     headers extra: HTTPFields = [:]) async throws -> TestResponse {
        var headers = form
        headers[.cookie] = cookie
        headers.append(contentsOf: extra)
        return try await client.execute(uri: uri, method: .post, headers: headers, body: ByteBuffer(string: EdgeFixture.formEncode(fields)))
    }

    /// The session's CSRF token, from the sign-out form of a page shown to it.
    static func csrf(_ client: any TestClientProtocol, cookie: String) async throws -> String {
        let page = try await get(client, "/app/sign-in", cookie: cookie)
        let match = try #require(page.text.firstMatch(of: /<form id="sign-out"[^>]*>\s*<input type="hidden" name="csrf" value="([^"]+)">/))
        return String(match.1)
    }

    // MARK: Signing in and out

    @Test("a tenant's API key opens a session: an HttpOnly, SameSite=Strict cookie, the key in no page and only the token's digest stored")
    func signInWithTenantKey() async throws {
        try await Self.run { fixture, client, _ in
            let signInPage = try await Self.get(client, "/app/sign-in")
            #expect(signInPage.status == .ok)
            #expect(signInPage.text.contains(#"<form id="sign-in""#))
            #expect(signInPage.text.contains(#"<input id="key" name="key" type="password" autocomplete="off""#))

            let response = try await Self.signIn(client, key: fixture.apiKey)
            #expect(response.status == .seeOther)
            #expect(response.headers[.location] == "/app")
            let setCookie = try #require(response.headers[.setCookie])
            let attributes = Set(setCookie.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces) })
            #expect(attributes.isSuperset(of: ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200", "Secure"]), "\(setCookie)")
            let cookie = String(try #require(setCookie.split(separator: ";").first))
            let token = String(cookie.dropFirst("vc_session=".count))
            #expect(token.count == 43)
            #expect(!setCookie.contains(fixture.apiKey) && !response.text.contains(fixture.apiKey))

            // The session goes home, and its pages never show the key.
            let home = try await Self.get(client, "/app", cookie: cookie)
            #expect(home.status == .seeOther && home.headers[.location] == "/app/now")
            for uri in ["/app/sign-in", "/app/test/tenant?say=hello"] {
                let page = try await Self.get(client, uri, cookie: cookie)
                #expect(page.status == .ok, "\(uri)")
                #expect(!page.text.contains(fixture.apiKey), "\(uri)")
                #expect(page.text.contains(#"<form id="sign-out" method="post" action="/app/sign-out""#), "\(uri)")
            }

            // Postgres holds the token's SHA-256 and not the token.
            let digest = PostgresBytes(Array(SHA256.hash(data: Array(token.utf8))))
            let rows = try await fixture.db.query("SELECT tenant_id, key_id, encode(session_sha256, 'escape') || csrf_token AS text FROM console_sessions WHERE session_sha256 = \(digest)")
            #expect(rows.count == 1)
            #expect(try rows[0].decode(UUID.self, "tenant_id") == fixture.tenant.uuid)
            #expect(try !rows[0].decode(String.self, "text").contains(token))
        }
    }

    @Test("a wrong key gets the form again with 401 and says nothing of which part was wrong")
    func wrongKeyIsRefused() async throws {
        try await Self.run { fixture, client, _ in
            // A key of the right shape whose secret is wrong, a made-up one, and nothing.
            let wrongSecret = String(fixture.apiKey.dropLast(4)) + "AAAA"
            for key in [wrongSecret, "vck_0000000000000000_" + String(repeating: "A", count: 43), "admin", ""] {
                let response = try await Self.signIn(client, key: key)
                #expect(response.status == .unauthorized, "\(key)")
                #expect(response.headers[.setCookie] == nil)
                #expect(response.headers[.contentType] == "text/html; charset=utf-8")
                #expect(response.text.contains("That key is not valid."))
                #expect(response.text.contains(#"<form id="sign-in""#))
                #expect(!response.text.contains(wrongSecret))
            }
        }
    }

    @Test("after ten failed sign-ins a client waits: 429 with Retry-After, even with the right key")
    func repeatedFailuresAreSlowed() async throws {
        try await Self.run { fixture, client, _ in
            for attempt in 1...10 {
                #expect(try await Self.signIn(client, key: "wrong-\(attempt)").status == .unauthorized, "attempt \(attempt)")
            }
            // The bucket refills one attempt per 12 s: on a crawling machine one or two more may pass.
            var slowed = try await Self.signIn(client, key: "wrong-11")
            for attempt in 12..<15 where slowed.status == .unauthorized {
                slowed = try await Self.signIn(client, key: "wrong-\(attempt)")
            }
            #expect(slowed.status == .tooManyRequests)
            let retryAfter = try #require(slowed.headers[.retryAfter].flatMap(Int.init))
            #expect(retryAfter >= 1 && retryAfter <= 12)
            #expect(slowed.text.contains("Too many failed attempts"))
            let right = try await Self.signIn(client, key: fixture.apiKey)
            #expect(right.status == .tooManyRequests)
            #expect(right.headers[.setCookie] == nil)
        }
    }

    @Test("failed sign-ins count per client address, and the server knows each request's address")
    func failuresCountPerClient() async throws {
        let limiter = SignInLimiter()
        let now = ContinuousClock.now
        for _ in 1...10 { limiter.failed("192.0.2.1", now: now) }
        #expect(limiter.wait(for: "192.0.2.1", now: now) != nil)
        #expect(limiter.wait(for: "192.0.2.2", now: now) == nil)
        // 5 a minute: one attempt again after 12 s.
        #expect(limiter.wait(for: "192.0.2.1", now: now + .seconds(12)) == nil)

        let router = Router(context: BasicRequestContext.self)
        router.get("/address") { _, _ in ClientAddress.current ?? "none" }
        let app = Application(responder: ClientAddressResponder(inner: router.buildResponder()),
                              configuration: ApplicationConfiguration(address: .hostname("127.0.0.1", port: 0)))
        try await app.test(.live) { client in
            let response = try await client.execute(uri: "/address", method: .get)
            #expect(response.text == "127.0.0.1")
            // From an untrusted connection a forwarded address is never believed.
            let claimed = try await client.execute(uri: "/address", method: .get, headers: [ClientAddressResponder<RouterResponder<BasicRequestContext>>.forwardedFor: "198.51.100.7"])
            #expect(claimed.text == "127.0.0.1")
        }
        // Behind a trusted proxy (here the test client's own address) the client is the address
        // the proxy forwarded for.
        let proxied = Application(responder: ClientAddressResponder(inner: router.buildResponder(), trustedProxies: ["127.0.0.1"]),
                                  configuration: ApplicationConfiguration(address: .hostname("127.0.0.1", port: 0)))
        try await proxied.test(.live) { client in
            let forwarded = try await client.execute(uri: "/address", method: .get, headers: [ClientAddressResponder<RouterResponder<BasicRequestContext>>.forwardedFor: "203.0.113.9"])
            #expect(forwarded.text == "203.0.113.9")
            let direct = try await client.execute(uri: "/address", method: .get)
            #expect(direct.text == "127.0.0.1")
        }
    }

    @Test("behind trusted proxies the client is the last forwarded address that is not a proxy; what a client writes further left is not believed")
    func forwardedAddresses() {
        let proxies: Set<String> = ["10.0.0.2", "10.0.0.3"]
        #expect(ClientAddress.of(connection: "192.0.2.1", forwardedFor: ["203.0.113.9"], trusted: proxies) == "192.0.2.1")
        #expect(ClientAddress.of(connection: "10.0.0.2", forwardedFor: ["198.51.100.1, 203.0.113.9"], trusted: proxies) == "203.0.113.9")
        #expect(ClientAddress.of(connection: "10.0.0.2", forwardedFor: ["198.51.100.1", "203.0.113.9, 10.0.0.3"], trusted: proxies) == "203.0.113.9")
        #expect(ClientAddress.of(connection: "10.0.0.2", forwardedFor: [], trusted: proxies) == "10.0.0.2")
        #expect(ClientAddress.of(connection: "10.0.0.2", forwardedFor: [" , 10.0.0.3"], trusted: proxies) == "10.0.0.2")
        #expect(ClientAddress.of(connection: nil, forwardedFor: ["203.0.113.9"], trusted: proxies) == nil)
    }

    @Test("signing out revokes the session: the old cookie opens nothing, on any edge")
    func signOutRevokes() async throws {
        try await Self.run { fixture, client, _ in
            let cookie = try await Self.cookie(client, key: fixture.apiKey)
            #expect(try await Self.get(client, "/v1/calls", cookie: cookie).status == .ok)
            let csrf = try await Self.csrf(client, cookie: cookie)
            let out = try await Self.post(client, "/app/sign-out", cookie: cookie, fields: [("csrf", csrf)])
            #expect(out.status == .seeOther && out.headers[.location] == "/app/sign-in")
            #expect(out.headers[.setCookie]?.contains("Max-Age=0") == true)

            #expect(try await Self.get(client, "/v1/calls", cookie: cookie).status == .unauthorized)
            let page = try await Self.get(client, "/app/test/tenant", cookie: cookie)
            #expect(page.status == .seeOther && page.headers[.location] == "/app/sign-in")
            // Another edge process on the same directory knows it too.
            try await Application(router: fixture.edge.router()).test(.router) { other in
                let elsewhere = try await Self.get(other, "/v1/calls", cookie: cookie)
                #expect(elsewhere.status == .unauthorized)
            }
        }
    }

    @Test("a revoked API key ends the sessions opened with it")
    func revokedKeyEndsSession() async throws {
        try await Self.run { fixture, client, _ in
            let cookie = try await Self.cookie(client, key: fixture.apiKey)
            #expect(try await Self.get(client, "/app/test/tenant", cookie: cookie).status == .ok)
            let newKey = try await fixture.directory.rotateAPIKey(of: fixture.tenant)
            #expect(try await Self.get(client, "/v1/calls", cookie: cookie).status == .unauthorized)
            let page = try await Self.get(client, "/app/test/tenant", cookie: cookie)
            #expect(page.status == .seeOther && page.headers[.location] == "/app/sign-in")
            // The new key signs in.
            let again = try await Self.cookie(client, key: newKey.plaintext)
            #expect(try await Self.get(client, "/app/test/tenant", cookie: again).status == .ok)
        }
    }

    // MARK: Forms

    @Test("a form without the session's CSRF token, or from another site, is refused with 403 and changes nothing")
    func formsNeedTheTokenAndTheSameOrigin() async throws {
        try await Self.run { fixture, client, formRuns in
            let cookie = try await Self.cookie(client, key: fixture.apiKey)
            let csrf = try await Self.csrf(client, cookie: cookie)
            let wrong = (csrf.first == "A" ? "B" : "A") + csrf.dropFirst()
            let refusals: [([(String, String)], HTTPFields)] = [
                ([("say", "a")], [:]),                                                              // no token
                ([("say", "b"), ("csrf", wrong)], [:]),                                             // a wrong one
                ([("say", "c"), ("csrf", "")], [:]),
                ([("say", "d"), ("csrf", csrf)], [HTTPField.Name("Origin")!: "https://evil.example"]),
                ([("say", "e"), ("csrf", csrf)], [HTTPField.Name("Origin")!: "null"]),
                ([("say", "f"), ("csrf", csrf)], [HTTPField.Name("Sec-Fetch-Site")!: "cross-site"]),
            ]
            for (fields, headers) in refusals {
                let response = try await Self.post(client, "/app/test/form", cookie: cookie, fields: fields, headers: headers)
                #expect(response.status == .forbidden, "\(fields) \(headers)")
                #expect(response.text.contains(#"<h1 id="error">"#))
            }
            // Sign-out is a form too: refused without the token, and the session lives on.
            #expect(try await Self.post(client, "/app/sign-out", cookie: cookie, fields: []).status == .forbidden)
            #expect(try await Self.post(client, "/app/sign-out", cookie: cookie, fields: [("csrf", "wrong")]).status == .forbidden)
            #expect(try await Self.get(client, "/v1/calls", cookie: cookie).status == .ok)
            #expect(formRuns.value == 0)

            // The same form from the console's own page goes through, once.
            let accepted = try await Self.post(client, "/app/test/form", cookie: cookie, fields: [("say", "ok"), ("csrf", csrf)],
                                               headers: [HTTPField.Name("Origin")!: EdgeFixture.publicBase, HTTPField.Name("Sec-Fetch-Site")!: "same-origin"])
            #expect(accepted.status == .seeOther && accepted.headers[.location] == "/app/test/tenant?say=ok")
            #expect(formRuns.value == 1)
            // Without a session: to the sign-in page, nothing run.
            let anonymous = try await client.execute(uri: "/app/test/form", method: .post, headers: Self.form,
                                                     body: ByteBuffer(string: "say=x&csrf=\(csrf)"))
            #expect(anonymous.status == .seeOther && anonymous.headers[.location] == "/app/sign-in")
            #expect(formRuns.value == 1)
        }
    }

    @Test("sign-in from another site is refused: nobody is signed in by a foreign page")
    func crossSiteSignInIsRefused() async throws {
        try await Self.run { fixture, client, _ in
            let foreign = try await Self.signIn(client, key: fixture.apiKey, headers: [HTTPField.Name("Origin")!: "https://evil.example"])
            #expect(foreign.status == .forbidden)
            #expect(foreign.headers[.setCookie] == nil)
            let crossSite = try await Self.signIn(client, key: fixture.apiKey, headers: [HTTPField.Name("Sec-Fetch-Site")!: "cross-site"])
            #expect(crossSite.status == .forbidden)
            let own = try await Self.signIn(client, key: fixture.apiKey, headers: [HTTPField.Name("Origin")!: EdgeFixture.publicBase])
            #expect(own.status == .seeOther)
            #expect(own.headers[.setCookie] != nil)
        }
    }

    // MARK: Pages

    @Test("every console page carries a CSP without unsafe-inline and the other security headers")
    func securityHeaders() async throws {
        try await Self.run { fixture, client, _ in
            let cookie = try await Self.cookie(client, key: fixture.apiKey)
            let pages = [try await Self.get(client, "/app/sign-in"), try await Self.signIn(client, key: "wrong"),
                         try await Self.get(client, "/app/test/tenant", cookie: cookie), try await Self.get(client, "/app/test/operator", cookie: cookie),
                         try await Self.get(client, "/app/test/tenant?fail=missing", cookie: cookie)]
            for page in pages {
                let csp = try #require(page.headers[.contentSecurityPolicy], "\(page.status)")
                #expect(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"))
                for directive in ["default-src 'self'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'", "object-src 'none'",
                                  "base-uri 'none'", "form-action 'self'"] {
                    #expect(csp.contains(directive), "\(directive)")
                }
                #expect(page.headers[.xContentTypeOptions] == "nosniff")
                #expect(page.headers[HTTPField.Name("X-Frame-Options")!] == "DENY")
                #expect(page.headers[HTTPField.Name("Referrer-Policy")!] == "no-referrer")
                #expect(page.headers[.cacheControl] == "no-store")
                // No inline script or style the CSP would have to allow.
                #expect(!page.text.contains("<script>") && !page.text.contains(" style=") && !page.text.contains("<style"))
            }
        }
    }

    @Test("page values are rendered as text; thrown errors become HTML pages with their status")
    func pagesEscapeAndAnswerErrors() async throws {
        try await Self.run { fixture, client, _ in
            let cookie = try await Self.cookie(client, key: fixture.apiKey)
            let hostile = #"<script>alert(1)</script>"><img src=x onerror=alert(2)>"#
            var components = URLComponents()
            components.queryItems = [URLQueryItem(name: "say", value: hostile)]
            let page = try await Self.get(client, "/app/test/tenant?\(components.percentEncodedQuery ?? "")", cookie: cookie)
            #expect(page.status == .ok)
            #expect(!page.text.contains("<script>alert(1)") && !page.text.contains("<img src=x"))
            #expect(page.text.contains("&lt;script&gt;alert(1)&lt;/script&gt;&quot;&gt;&lt;img src=x onerror=alert(2)&gt;"))

            let unavailable = try await Self.get(client, "/app/test/tenant?fail=read", cookie: cookie)
            #expect(unavailable.status == .serviceUnavailable)
            #expect(unavailable.headers[.retryAfter] == "5")
            #expect(unavailable.headers[.contentType] == "text/html; charset=utf-8")
            #expect(unavailable.text.contains(#"<h1 id="error">Temporarily unavailable</h1>"#))

            let missing = try await Self.get(client, "/app/test/tenant?fail=missing", cookie: cookie)
            #expect(missing.status == .notFound)
            #expect(missing.text.contains(#"<h1 id="not-found">Not found</h1>"#) && missing.text.contains("Call with this id not found."))

            let failed = try await Self.get(client, "/app/test/tenant?fail=other", cookie: cookie)
            #expect(failed.status == .serviceUnavailable)
            #expect(failed.headers[.contentType] == "text/html; charset=utf-8")

            let unknownParameter = try await Self.get(client, "/app/test/tenant?sort=name", cookie: cookie)
            #expect(unknownParameter.status == .badRequest)
            #expect(unknownParameter.text.contains(#"<h1 id="error">"#) && unknownParameter.text.contains("sort is not a parameter"))
            // Without a session: to the sign-in page.
            let anonymous = try await Self.get(client, "/app/test/tenant")
            #expect(anonymous.status == .seeOther && anonymous.headers[.location] == "/app/sign-in")
        }
    }

    @Test("the operator's session opens the operator's pages only, a tenant's its own only; a changed admin key ends it")
    func sessionKindsStayApart() async throws {
        try await Self.run { fixture, client, _ in
            let operatorCookie = try await Self.cookie(client, key: EdgeFixture.adminKey)
            let home = try await Self.get(client, "/app", cookie: operatorCookie)
            #expect(home.status == .seeOther && home.headers[.location] == "/app/operator")
            #expect(try await Self.get(client, "/app/test/operator", cookie: operatorCookie).status == .ok)
            let tenantPage = try await Self.get(client, "/app/test/tenant", cookie: operatorCookie)
            #expect(tenantPage.status == .forbidden)
            #expect(!tenantPage.text.contains("Tenant \(fixture.tenant)"))
            #expect(try await Self.get(client, "/v1/calls", cookie: operatorCookie).status == .unauthorized)
            #expect(try await Self.get(client, "/admin/tenants", cookie: operatorCookie).status == .unauthorized)

            let tenantCookie = try await Self.cookie(client, key: fixture.apiKey)
            #expect(try await Self.get(client, "/app/test/operator", cookie: tenantCookie).status == .forbidden)
            #expect(try await Self.get(client, "/admin/tenants", cookie: tenantCookie).status == .unauthorized)
            #expect(try await Self.get(client, "/admin/tenants/\(fixture.tenant)/calls", cookie: tenantCookie).status == .unauthorized)

            // An edge with another admin key does not know the operator's session.
            var configuration = fixture.edge.configuration
            configuration.adminKey = "another-admin-key"
            let rekeyed = Edge(configuration: configuration, publisher: fixture.publisher, lookup: fixture.directory, directory: fixture.directory,
                               reads: fixture.reads)
            let router = rekeyed.router()
            rekeyed.consoleOperatorPage(router, "/app/test/operator", parameters: []) { page in
                ConsoleView.page("error", title: "Test", nav: "operator", session: page.session, data: ["heading": "Operator"])
            }
            try await Application(router: router).test(.router) { other in
                let page = try await Self.get(other, "/app/test/operator", cookie: operatorCookie)
                #expect(page.status == .seeOther && page.headers[.location] == "/app/sign-in")
            }
        }
    }

    @Test("the tenant's session cookie reads the /v1 API and its event feed, and never writes")
    func cookieReadsButNeverWrites() async throws {
        try await Self.run { fixture, client, _ in
            let cookie = try await Self.cookie(client, key: fixture.apiKey)
            let calls = try await Self.get(client, "/v1/calls", cookie: cookie)
            #expect(calls.status == .ok)
            #expect(calls.json["items"] is [Any])
            #expect(try await Self.get(client, "/v1/calls").status == .unauthorized)
            #expect(try await Self.get(client, "/v1/calls", cookie: "vc_session=" + String(repeating: "A", count: 43)).status == .unauthorized)
            // The feed accepts the cookie (this edge runs no feed: 503 after authentication, 401 before).
            #expect(try await Self.get(client, "/v1/events", cookie: cookie).status == .serviceUnavailable)
            #expect(try await Self.get(client, "/v1/events").status == .unauthorized)

            let settings = try await client.execute(uri: "/v1/settings", method: .put, headers: [.cookie: cookie, .contentType: "application/json"],
                                                    body: ByteBuffer(string: #"{"greeting": "Hello from a forged page"}"#))
            #expect(settings.status == .unauthorized)
            let lead = try await client.execute(uri: "/v1/leads", method: .post, headers: [.cookie: cookie, .contentType: "application/json"],
                                                body: ByteBuffer(string: #"{"intent": "sales", "name": "Forged"}"#))
            #expect(lead.status == .unauthorized)
            #expect(try await fixture.commands().isEmpty)
        }
    }

    @Test("the tenant role of the read API cannot see the sessions table")
    func tenantRoleSeesNoSessions() async throws {
        try await Self.run { fixture, _, _ in
            let denied: Bool = try await fixture.db.withConnection { db in
                try db.query("SET ROLE voicecore_tenant")
                defer { _ = try? db.query("RESET ROLE") }
                do {
                    _ = try db.query("SELECT count(*) FROM console_sessions")
                    return false
                } catch let error as PostgresError {
                    return error.sqlState == "42501"
                }
            }
            #expect(denied)
        }
    }

    // MARK: Files

    @Test("static files are served with their type and caching; templates and paths outside are not")
    func staticAssets() async throws {
        try await Self.run { _, client, _ in
            let css = try await Self.get(client, "/app/assets/css/console.css")
            #expect(css.status == .ok)
            #expect(css.headers[.contentType] == "text/css; charset=utf-8")
            #expect(css.headers[.cacheControl] == "public, max-age=3600")
            #expect(css.headers[.xContentTypeOptions] == "nosniff")
            #expect(css.text.contains(":focus-visible"))
            for (path, _) in ConsoleAssets.files where path.hasSuffix(".js") {
                let script = try await Self.get(client, "/app/assets/\(path)")
                #expect(script.status == .ok && script.headers[.contentType] == "text/javascript; charset=utf-8", "\(path)")
            }
            for uri in ["/app/assets/templates/layout.mustache", "/app/assets/../Console.swift", "/app/assets/css/../templates/layout.mustache",
                        "/app/assets/%2e%2e/templates/layout.mustache", "/app/assets/css/%2E%2E/%2E%2E/Console.swift", "/app/assets/css/missing.css",
                        "/app/assets//etc/passwd", "/app/assets/css/"] {
                let response = try await Self.get(client, uri)
                #expect(response.status == .notFound, "\(uri)")
                #expect(!response.text.contains("{{"), "\(uri)")
            }
        }
    }

    @Test("times, durations, money and shares read as people write them, in the tenant's time zone")
    func displayFormats() throws {
        let newYork = try #require(TimeZone(identifier: "America/New_York"))
        #expect(ConsoleFormat.dateTime(rfc3339: "2026-12-07T19:05:09.123456Z", timeZone: newYork) == "7 Dec 2026, 14:05")
        #expect(ConsoleFormat.dateTime(rfc3339: "2026-12-08T03:30:00+00:00", timeZone: newYork) == "7 Dec 2026, 22:30")
        #expect(ConsoleFormat.dateTime(rfc3339: "not a time", timeZone: newYork) == "not a time")
        #expect(ConsoleFormat.time(rfc3339: "2026-12-07T19:05:09Z", timeZone: newYork) == "14:05:09")
        #expect(ConsoleFormat.date(isoDate: "2026-12-07") == "7 Dec 2026")
        #expect(ConsoleFormat.duration(seconds: 45) == "45 s")
        #expect(ConsoleFormat.duration(seconds: 192) == "3 min 12 s")
        #expect(ConsoleFormat.duration(seconds: 3840) == "1 h 04 min")
        #expect(ConsoleFormat.money(minor: 1234, currency: "usd") == "$12.34")
        #expect(ConsoleFormat.money(minor: 123_456_705, currency: "EUR") == "€1,234,567.05")
        #expect(ConsoleFormat.money(minor: -300, currency: "CHF") == "−3.00 CHF")
        #expect(ConsoleFormat.percent(0.42) == "42%")
        #expect(ConsoleFormat.percent(1, of: 3, digits: 1) == "33.3%")
        #expect(ConsoleFormat.percent(1, of: 0) == "–")
    }

    @Test("no template renders a value unescaped ({{{ }}} or {{& }}), and every template parses")
    func templatesEscapeEverything() throws {
        let directory = TestServers.root.appendingPathComponent("Sources/VoiceCoreEdge/Console/Assets")
        let walker = try #require(FileManager.default.enumerator(atPath: directory.path))
        var templates: [String] = []
        for case let path as String in walker where path.hasSuffix(".mustache") {
            templates.append(path)
            let text = try String(contentsOf: directory.appendingPathComponent(path), encoding: .utf8)
            #expect(!text.contains("{{{"), "\(path) renders a value unescaped with {{{")
            #expect(text.range(of: #"\{\{\s*&"#, options: .regularExpression) == nil, "\(path) renders a value unescaped with {{&")
            #expect(text.range(of: #"\{\{\s*="#, options: .regularExpression) == nil, "\(path) changes the delimiters, which hides unescaped tags from this test")
            #expect(!text.contains(" style=\""), "\(path) has a style attribute, which the CSP blocks")
            #expect(!text.contains("<script>") && !text.contains("<style"), "\(path) has inline script or style, which the CSP blocks")
            let name = String(path.split(separator: "/").last?.dropLast(".mustache".count) ?? "")
            #expect(ConsoleView.hasTemplate(name), "\(path) does not parse")
        }
        #expect(templates.contains("templates/layout.mustache") && templates.contains("templates/sign-in.mustache"))
    }
}
