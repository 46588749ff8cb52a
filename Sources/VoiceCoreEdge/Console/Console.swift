import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import VoiceCoreEvents
import VoiceCoreQueries
import VoiceCoreTenants

/// Who is signed in to the console: a tenant (through one of its API keys) or the operator (the
/// admin key; `tenant` nil).
struct ConsoleSession: Sendable {
    let tenant: Identifier?
    /// The public id of the API key the tenant signed in with (nil for the operator).
    let keyID: String?
    /// The token every form of this session carries (`<input type="hidden" name="csrf">`).
    let csrfToken: String
    var isOperator: Bool { tenant == nil }
}

/// What a console page handler gets: the request, the signed-in session and the query
/// parameters, already checked against the names the page allows (400 page otherwise).
struct ConsolePageRequest: Sendable {
    let request: Request
    let context: BasicRequestContext
    let session: ConsoleSession
    let query: QueryParameters

    /// A path parameter that must be a UUID (e.g. `{call}`); nil for anything else, which the
    /// page answers as not found.
    func identifier(_ name: String) -> Identifier? {
        context.parameters.get(name).flatMap(Identifier.init)
    }
}

/// A parsed `application/x-www-form-urlencoded` body: every field in order, repeated names kept.
struct ConsoleForm: Sendable {
    private let fields: [(name: String, value: String)]

    init(fields: [(name: String, value: String)]) {
        self.fields = fields
    }

    /// The first value of `name`, nil when the form has no such field.
    func value(_ name: String) -> String? {
        fields.first { $0.name == name }?.value
    }

    /// Every value of `name`, in the order the browser sent them.
    func values(_ name: String) -> [String] {
        fields.filter { $0.name == name }.map(\.value)
    }

    /// Every field name, in order (each once).
    var names: [String] {
        var seen: Set<String> = []
        return fields.map(\.name).filter { seen.insert($0).inserted }
    }
}

/// The console's page routes (`/app`): server-rendered HTML for tenants and the operator, signed
/// in with a session cookie (``ConsoleSessions``). Page authors register with the four helpers
/// below; they check the session, its kind, the query parameters, and for forms the CSRF token and
/// `Origin`, and they turn a thrown ``Problem`` or ``ReadUnavailable`` into an HTML error page
/// with the same status (never problem+json, never a 500).
extension Edge {
    /// Registers every console route: sign-in and sign-out, the static assets, `/app`, and the
    /// tenant and operator pages. Nothing without the tenant directory (the sessions live there).
    func addConsoleRoutes(to router: Router<BasicRequestContext>) {
        guard directory != nil else { return }
        addConsoleSessionRoutes(to: router)
        addConsoleAssetRoutes(to: router)
        addConsoleTenantPages(to: router)
        addConsoleOperatorPages(to: router)
    }

    /// Registers GET `path` for tenant sessions. `path` is the full path (`/app/calls/{call}`); a
    /// path without the `/app` prefix gets it. No or an expired session: 303 to `/app/sign-in`;
    /// an operator session: 403 page.
    func consoleTenantPage(_ router: Router<BasicRequestContext>, _ path: String, parameters: Set<String>,
                           _ handler: @escaping @Sendable (ConsolePageRequest, Identifier) async throws -> Response) {
        router.get(RouterPath(Self.consolePath(path))) { request, context in
            await consoleAnswer(request) { session in
                guard let session else { return ConsoleView.redirect(to: "/app/sign-in") }
                guard let tenant = session.tenant else { return ConsoleView.wrongConsole(session: session) }
                let query = try QueryParameters(request.uri.queryParameters, allowed: parameters)
                return try await handler(ConsolePageRequest(request: request, context: context, session: session, query: query), tenant)
            }
        }
    }

    /// Registers GET `path` for the operator's session. A tenant session: 403 page.
    func consoleOperatorPage(_ router: Router<BasicRequestContext>, _ path: String, parameters: Set<String>,
                             _ handler: @escaping @Sendable (ConsolePageRequest) async throws -> Response) {
        router.get(RouterPath(Self.consolePath(path))) { request, context in
            await consoleAnswer(request) { session in
                guard let session else { return ConsoleView.redirect(to: "/app/sign-in") }
                guard session.isOperator else { return ConsoleView.wrongConsole(session: session) }
                let query = try QueryParameters(request.uri.queryParameters, allowed: parameters)
                return try await handler(ConsolePageRequest(request: request, context: context, session: session, query: query))
            }
        }
    }

    /// Registers POST `path` for tenant sessions: a cross-site request (`Origin`,
    /// `Sec-Fetch-Site`) or a missing or wrong `csrf` field is a 403 page before the handler
    /// runs; the body must be a form (415 page) within ``EdgeConfiguration/maxBodyBytes`` (413).
    /// `parameters`: query parameters the form's action may carry (none by default).
    func consoleTenantForm(_ router: Router<BasicRequestContext>, _ path: String, parameters: Set<String> = [],
                           _ handler: @escaping @Sendable (ConsolePageRequest, Identifier, ConsoleForm) async throws -> Response) {
        router.post(RouterPath(Self.consolePath(path))) { request, context in
            await consoleAnswer(request) { session in
                let (session, form, query) = try await consoleFormRequest(request, session: session, parameters: parameters)
                guard let tenant = session.tenant else { return ConsoleView.wrongConsole(session: session) }
                return try await handler(ConsolePageRequest(request: request, context: context, session: session, query: query), tenant, form)
            }
        }
    }

    /// Registers POST `path` for the operator's session, checked as ``consoleTenantForm(_:_:parameters:_:)``.
    func consoleOperatorForm(_ router: Router<BasicRequestContext>, _ path: String, parameters: Set<String> = [],
                             _ handler: @escaping @Sendable (ConsolePageRequest, ConsoleForm) async throws -> Response) {
        router.post(RouterPath(Self.consolePath(path))) { request, context in
            await consoleAnswer(request) { session in
                let (session, form, query) = try await consoleFormRequest(request, session: session, parameters: parameters)
                guard session.isOperator else { return ConsoleView.wrongConsole(session: session) }
                return try await handler(ConsolePageRequest(request: request, context: context, session: session, query: query), form)
            }
        }
    }

    /// `/app` + `path` unless `path` starts with `/app` already.
    static func consolePath(_ path: String) -> String {
        if path == "/app" || path.hasPrefix("/app/") { return path }
        return "/app" + (path.hasPrefix("/") ? path : "/" + path)
    }

    // MARK: Answering

    /// Runs a console handler with the request's session (nil: none, expired or revoked) and
    /// turns what it throws into an HTML error page: a ``Problem`` with its status and headers, a
    /// ``ReadUnavailable`` as 503 with `Retry-After`, anything else as the API would answer it
    /// (422 for a value Postgres refused, else 503), logged.
    func consoleAnswer(_ request: Request, _ body: (ConsoleSession?) async throws -> Response) async -> Response {
        var session: ConsoleSession?
        do {
            session = try await consoleSession(of: request)
            return try await body(session)
        } catch {
            return consoleErrorPage(error, session: session)
        }
    }

    /// The HTML page for an error a console handler threw.
    func consoleErrorPage(_ error: any Error, session: ConsoleSession?) -> Response {
        let problem: Problem
        switch error {
        case let redirect as ConsoleRedirect:
            return ConsoleView.redirect(to: redirect.location)
        case let error as Problem:
            problem = error
        case let error as ReadUnavailable:
            problem = Problem(.serviceUnavailable, "Temporarily unavailable", detail: "\(error.reason); retry later",
                              headers: [.retryAfter: String(error.retryAfterSeconds)])
        default:
            logger.error("console request failed", metadata: ["error": "\(error)"])
            problem = Problem.answering(error)
        }
        return ConsoleView.error(problem, session: session)
    }

    /// The signed-in session of a console form post, after its checks: same origin, a session,
    /// a form body, the session's CSRF token.
    private func consoleFormRequest(_ request: Request, session: ConsoleSession?, parameters: Set<String>) async throws
        -> (ConsoleSession, ConsoleForm, QueryParameters) {
        try checkSameOrigin(request)
        guard let session else { throw ConsoleRedirect(location: "/app/sign-in") }
        let form = try await consoleForm(request)
        guard let presented = form.value("csrf"), constantTimeEquals(Array(presented.utf8), Array(session.csrfToken.utf8)) else {
            throw Problem(.forbidden, "Forbidden", detail: "This form has expired or did not come from this console. Go back, reload the page and try again.")
        }
        let query = try QueryParameters(request.uri.queryParameters, allowed: parameters)
        return (session, form, query)
    }

    /// The request's form body (415 when it is not a form, 413 too large, 400 malformed).
    func consoleForm(_ request: Request) async throws -> ConsoleForm {
        let (bytes, _) = try await body(of: request, accepting: [.applicationUrlEncoded])
        do {
            return ConsoleForm(fields: try FormBody(parsing: bytes).parameters)
        } catch {
            throw Problem.malformed(error.field, error.reason)
        }
    }

    /// Refuses (403) a request a browser says came from another site: an `Origin` that is not
    /// this console's (the public base URL's, or the request's `Host` over http or https), or
    /// `Sec-Fetch-Site` other than `same-origin` or `none`. A request with neither header
    /// (not a browser) passes: the CSRF token still guards forms.
    func checkSameOrigin(_ request: Request) throws(Problem) {
        let refused = Problem(.forbidden, "Forbidden", detail: "This request came from another site; the console accepts forms from its own pages only.")
        let site = request.headers[Self.secFetchSite]
        if let site, site != "same-origin", site != "none" { throw refused }
        guard let origin = request.headers[Self.origin] else { return }
        // Under `Referrer-Policy: no-referrer` Chromium sends `Origin: null` with the console's own
        // form posts (seen by the browser test); then `Sec-Fetch-Site` (checked above) decides.
        // Without it, a null origin may be a sandboxed frame of another site: refused.
        if origin == "null" {
            guard site != nil else { throw refused }
            return
        }
        var allowed: Set<String> = []
        if let base = configuration.publicBaseURL, let url = URL(string: base), let scheme = url.scheme, let host = url.host {
            allowed.insert("\(scheme)://\(host)\(url.port.map { ":\($0)" } ?? "")".lowercased())
        }
        if let authority = request.head.authority {
            allowed.insert("http://\(authority)".lowercased())
            allowed.insert("https://\(authority)".lowercased())
        }
        guard allowed.contains(origin.lowercased()) else { throw refused }
    }

    static let origin = HTTPField.Name("Origin")!
    static let secFetchSite = HTTPField.Name("Sec-Fetch-Site")!
}

/// Thrown by a console step that answers with a redirect (e.g. a form posted without a session).
struct ConsoleRedirect: Error, HTTPResponseError {
    let location: String
    var status: HTTPResponse.Status { .seeOther }
    var headers: HTTPFields { [.location: location] }

    func response(from request: Request, context: some RequestContext) throws -> Response {
        ConsoleView.redirect(to: location)
    }
}
