import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import Synchronization
import VoiceCoreEvents
import VoiceCoreTenants

/// Signing in to the console and out of it, `/app` itself, and the session behind a request.
///
/// - `GET /app/sign-in`: the form (one field, `key`: a tenant API key or the admin key);
/// - `POST /app/sign-in`: a tenant API key opens a tenant session, the admin key (compared in
///   constant time) an operator session; the answer sets `vc_session` (HttpOnly, SameSite=Strict,
///   Path=/, 12 h, Secure behind an https public URL) and redirects to `/app`. A wrong key: the
///   form again, 401, never saying which part was wrong; after 10 failures from one client
///   address (then 5 a minute), 429 with `Retry-After`. A cross-site `Origin` is refused (403:
///   nobody is signed in to someone else's account by a foreign page);
/// - `POST /app/sign-out` (CSRF-checked): revokes the session everywhere and clears the cookie;
/// - `GET /app`: the session's home (`/app/now`, `/app/operator`) or the sign-in page.
extension Edge {
    /// The console's session cookie.
    static let consoleCookie = "vc_session"

    func addConsoleSessionRoutes(to router: Router<BasicRequestContext>) {
        router.get("/app") { request, _ in
            await consoleAnswer(request) { session in ConsoleView.redirect(to: ConsoleView.home(of: session)) }
        }
        router.get("/app/sign-in") { request, _ in
            await consoleAnswer(request) { session in
                _ = try QueryParameters(request.uri.queryParameters, allowed: [])
                return signInPage(session: session)
            }
        }
        router.post("/app/sign-in") { request, _ in
            await consoleAnswer(request) { _ in try await signIn(request) }
        }
        router.post("/app/sign-out") { request, _ in
            await consoleAnswer(request) { session in
                try checkSameOrigin(request)
                let clear = [HTTPFields.Element(name: .setCookie, value: clearedCookie())]
                guard let session else { return ConsoleView.redirect(to: "/app/sign-in", headers: HTTPFields(clear)) }
                let form = try await consoleForm(request)
                guard let presented = form.value("csrf"), constantTimeEquals(Array(presented.utf8), Array(session.csrfToken.utf8)) else {
                    throw Problem(.forbidden, "Forbidden", detail: "This form has expired or did not come from this console. Go back, reload the page and try again.")
                }
                if let token = request.cookies[Self.consoleCookie]?.value, let sessions = consoleSessions {
                    do {
                        try await sessions.revoke(token: token)
                    } catch {
                        logger.warning("console sign-out not recorded", metadata: ["error": "\(error)"])
                        throw Problem.unavailable("the tenant directory")
                    }
                }
                return ConsoleView.redirect(to: "/app/sign-in", headers: HTTPFields(clear))
            }
        }
    }

    /// The console's sessions (in the tenant directory's database); nil without a directory.
    var consoleSessions: ConsoleSessions? { directory?.consoleSessions }

    /// The live session of the request's `vc_session` cookie; nil without one, or for an unknown,
    /// expired or revoked one (an error: the directory is unreachable, a 503 page).
    func consoleSession(of request: Request) async throws -> ConsoleSession? {
        guard let token = request.cookies[Self.consoleCookie]?.value, !token.isEmpty, let sessions = consoleSessions else { return nil }
        let record: ConsoleSessionRecord?
        do {
            record = try await sessions.session(token: token, adminKey: configuration.adminKey)
        } catch {
            logger.warning("console sessions unreachable", metadata: ["error": "\(error)"])
            throw Problem.unavailable("the tenant directory")
        }
        return record.map { ConsoleSession(tenant: $0.tenant, keyID: $0.keyID, csrfToken: $0.csrfToken) }
    }

    // MARK: Signing in

    private func signIn(_ request: Request) async throws -> Response {
        try checkSameOrigin(request)
        let address = ClientAddress.current ?? "unknown"
        if let wait = signInLimiter.wait(for: address) {
            let seconds = max(1, Int(wait.components.seconds) + (wait.components.attoseconds > 0 ? 1 : 0))
            return signInPage(session: nil, error: "Too many failed attempts from here. Wait \(seconds) s, then try again.", status: .tooManyRequests,
                              headers: [.retryAfter: String(seconds)])
        }
        let form = try await consoleForm(request)
        let key = (form.value("key") ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
        guard let sessions = consoleSessions else { throw Problem.unavailable("the tenant directory") }
        let opened: OpenedConsoleSession
        do {
            if let adminKey = configuration.adminKey, constantTimeEquals(Array(key.utf8), Array(adminKey.utf8)) {
                opened = try await sessions.openOperatorSession(adminKey: adminKey)
            } else if let apiKey = APIKey(Substring(key)), let tenant = try await tenants.tenant(for: apiKey) {
                opened = try await sessions.openTenantSession(tenant: tenant, keyID: apiKey.keyID)
            } else {
                signInLimiter.failed(address)
                return signInPage(session: nil, error: "That key is not valid.", status: .unauthorized)
            }
        } catch {
            logger.warning("console sign-in failed: tenant directory unreachable", metadata: ["error": "\(error)"])
            throw Problem.unavailable("the tenant directory")
        }
        logger.info("console session opened", metadata: ["kind": "\(opened.session.tenant == nil ? "operator" : "tenant")",
                                                        "tenant": "\(opened.session.tenant?.description ?? "-")"])
        return ConsoleView.redirect(to: "/app", headers: [.setCookie: sessionCookie(opened.token)])
    }

    private func signInPage(session: ConsoleSession?, error: String? = nil, status: HTTPResponse.Status = .ok, headers: HTTPFields = [:]) -> Response {
        var data: [String: Any] = [:]
        if let error { data["error"] = error }
        if let session { data["signedInHome"] = ConsoleView.home(of: session) }
        // Signed in already: the page shows the session's navigation and its sign-out form.
        return ConsoleView.page("sign-in", title: "Sign in", nav: "", session: session, data: data, status: status, headers: headers)
    }

    // MARK: Cookies

    /// `Secure` when browsers reach the edge over https (its public base URL says so).
    private var secureCookies: Bool { configuration.publicBaseURL?.lowercased().hasPrefix("https://") ?? false }

    func sessionCookie(_ token: String) -> String {
        "\(Self.consoleCookie)=\(token); Path=/; HttpOnly; SameSite=Strict; Max-Age=\(ConsoleSessions.lifetime.components.seconds)"
            + (secureCookies ? "; Secure" : "")
    }

    func clearedCookie() -> String {
        "\(Self.consoleCookie)=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0" + (secureCookies ? "; Secure" : "")
    }
}

/// Slows guessing at the sign-in form: failed attempts per client address in a token bucket
/// (bursts of 10, then 5 a minute). Successful sign-ins take nothing.
final class SignInLimiter: Sendable {
    private struct Bucket {
        var tokens: Double
        var updated: ContinuousClock.Instant
    }

    static let burst = 10.0
    static let perSecond = 5.0 / 60

    private let buckets = Mutex<[String: Bucket]>([:])

    /// How long `address` must wait before its next attempt; nil: it may try now.
    func wait(for address: String, now: ContinuousClock.Instant = .now) -> Duration? {
        buckets.withLock { buckets in
            let tokens = Self.refilled(buckets[address], now: now)
            guard tokens < 1 else { return nil }
            return .milliseconds(Int64(((1 - tokens) / Self.perSecond * 1000).rounded(.up)))
        }
    }

    /// Counts a failed attempt of `address`.
    func failed(_ address: String, now: ContinuousClock.Instant = .now) {
        buckets.withLock { buckets in
            // Full buckets are forgotten; a flood of addresses cannot grow this without bound.
            if buckets.count > 100_000 { buckets = buckets.filter { Self.refilled($0.value, now: now) < Self.burst } }
            buckets[address] = Bucket(tokens: max(0, Self.refilled(buckets[address], now: now) - 1), updated: now)
        }
    }

    private static func refilled(_ bucket: Bucket?, now: ContinuousClock.Instant) -> Double {
        guard let bucket else { return burst }
        let elapsed = now - bucket.updated
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        return min(burst, bucket.tokens + seconds * perSecond)
    }
}

extension Edge {
    /// The tenant of a GET request's console session cookie, within the tenant's rate limit
    /// (429); nil when the request is no GET, has no cookie, or its session is not a live tenant
    /// session (the caller then asks for an API key: 401). The operator's session reads no
    /// tenant's API.
    func consoleCookieTenant(_ request: Request) async throws -> Identifier? {
        guard request.method == .get || request.method == .head, request.cookies[Self.consoleCookie] != nil,
              let tenant = try await consoleSession(of: request)?.tenant
        else { return nil }
        let credentials = try await credentials(of: tenant)
        if let wait = limiter.take(tenant, rate: credentials.requestsPerSecond) {
            let seconds = max(1, Int(wait.components.seconds) + (wait.components.attoseconds > 0 ? 1 : 0))
            throw Problem(.tooManyRequests, "Too many requests", detail: "this tenant may send \(credentials.requestsPerSecond) requests per second",
                          headers: [.retryAfter: String(seconds)])
        }
        return tenant
    }
}
