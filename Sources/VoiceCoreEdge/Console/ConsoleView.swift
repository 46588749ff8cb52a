import Foundation
import HTTPTypes
import Hummingbird
import Mustache
import NIOCore

/// Renders the console's pages: a template of `Console/Assets/templates/` inside `layout.mustache`,
/// answered as HTML with the console's security headers.
///
/// Every value reaches the page through `{{name}}`, which HTML-escapes it (the templates never use
/// the unescaped forms; a test greps them). The layout includes the page's template with
/// `{{>*consoleTemplate}}` (a partial named by the data), so no rendered HTML is ever passed
/// through as a value.
///
/// ```swift
/// return ConsoleView.page("calls", title: "Calls", nav: "calls", session: page.session, data: ["calls": rows])
/// ```
enum ConsoleView {
    /// The templates, by file name without `.mustache`; nil when the resources cannot be read
    /// (a broken installation: every page then answers 503 saying so).
    static let library: MustacheLibrary? = loadLibrary()

    /// Headers on every console HTML answer: no script or style but the console's own files, no
    /// framing, no referrer, nothing cached.
    static let securityHeaders: HTTPFields = [
        .contentSecurityPolicy: contentSecurityPolicy,
        .xContentTypeOptions: "nosniff",
        HTTPField.Name("Referrer-Policy")!: "no-referrer",
        .cacheControl: "no-store",
        HTTPField.Name("X-Frame-Options")!: "DENY",
    ]

    static let contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        + "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"

    /// A page: `template` inside the layout, with `title`, the session's CSRF token as `csrf`, the
    /// navigation with `nav` marked current, and `data` (its keys at the top level of the
    /// template's context; `scripts: ["now.js"]` adds `<script type="module">` tags for files of
    /// `Assets/js/`, `styles: ["tenant.css"]` stylesheets of `Assets/css/` after `console.css`).
    /// JSON nulls in `data` are left out, so `{{#x}}` and `{{^x}}` treat them as absent.
    static func page(_ template: String, title: String, nav: String, session: ConsoleSession?, data: [String: Any] = [:],
                     status: HTTPResponse.Status = .ok, headers extra: HTTPFields = [:]) -> Response {
        guard let library, library.getTemplate(named: template) != nil, library.getTemplate(named: "layout") != nil else {
            return unrendered(template)
        }
        var context = withoutNulls(data)
        context["consoleTemplate"] = template
        context["title"] = title
        context["nav"] = nav
        context["signedIn"] = session != nil
        context["isOperator"] = session?.isOperator ?? false
        context["csrf"] = session?.csrfToken ?? ""
        context["navItems"] = navigation(for: session, current: nav)
        context["who"] = session.map { $0.isOperator ? "Operator" : "Tenant" } ?? ""
        if context["scripts"] == nil { context["scripts"] = [String]() }
        if context["styles"] == nil { context["styles"] = [String]() }
        guard let html = library.render(context, withTemplate: "layout") else { return unrendered(template) }
        var headers = securityHeaders
        headers[.contentType] = "text/html; charset=utf-8"
        headers.append(contentsOf: extra)
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(string: html)))
    }

    /// The 404 page: `<h1 id="not-found">Not found</h1>` and "<what> not found".
    static func notFound(session: ConsoleSession?, what: String) -> Response {
        let sentence = what.prefix(1).uppercased() + what.dropFirst() + " not found."
        return page("error", title: "Not found", nav: "", session: session,
                    data: ["headingID": "not-found", "heading": "Not found", "message": sentence, "home": home(of: session)], status: .notFound)
    }

    /// A 303 to `location` (a path of this console).
    static func redirect(to location: String, headers extra: HTTPFields = [:]) -> Response {
        var headers: HTTPFields = [.location: location, .cacheControl: "no-store"]
        headers.append(contentsOf: extra)
        return Response(status: .seeOther, headers: headers)
    }

    /// The error page for a refusal or failure (`<h1 id="error">`, or `not-found` for 404), with
    /// the problem's status and headers (`Retry-After`).
    static func error(_ problem: Problem, session: ConsoleSession?) -> Response {
        if problem.status == .notFound {
            var response = notFound(session: session, what: problem.detail.map { $0.hasPrefix("no ") ? String($0.dropFirst(3)) : $0 } ?? "page")
            response.headers.append(contentsOf: problem.headers)
            return response
        }
        var headers = problem.headers
        headers[.contentType] = nil
        headers[.wwwAuthenticate] = nil
        return page("error", title: problem.title, nav: "", session: session,
                    data: ["headingID": "error", "heading": problem.title, "message": problem.detail ?? "", "home": home(of: session)],
                    status: problem.status, headers: headers)
    }

    /// 403: a tenant on an operator page or the operator on a tenant's page.
    static func wrongConsole(session: ConsoleSession) -> Response {
        error(Problem(.forbidden, "Not your console",
                      detail: session.isOperator ? "This page belongs to a tenant's console; the operator signs in with the admin key and sees the platform."
                          : "This page belongs to the operator's console; sign in with the admin key to see it."),
              session: session)
    }

    /// Where a session starts: the tenant's *Now*, the operator's overview, or the sign-in page.
    static func home(of session: ConsoleSession?) -> String {
        guard let session else { return "/app/sign-in" }
        return session.isOperator ? "/app/operator" : "/app/now"
    }

    // MARK: Navigation

    /// The console's sections: `nav` names one of these keys.
    static let tenantNavigation: [(key: String, label: String, href: String)] = [
        ("now", "Now", "/app/now"), ("calls", "Calls", "/app/calls"), ("leads", "Leads", "/app/leads"), ("contacts", "Contacts", "/app/contacts"),
        ("usage", "Usage", "/app/usage"), ("settings", "Settings", "/app/settings"),
    ]
    static let operatorNavigation: [(key: String, label: String, href: String)] = [
        ("operator", "Platform", "/app/operator"), ("dead-letters", "Dead letters", "/app/operator/dead-letters"), ("tenants", "Tenants", "/app/operator/tenants"),
    ]

    static func navigation(for session: ConsoleSession?, current: String) -> [[String: Any]] {
        guard let session else { return [] }
        return (session.isOperator ? operatorNavigation : tenantNavigation).map { item in
            ["key": item.key, "label": item.label, "href": item.href, "current": item.key == current]
        }
    }

    // MARK: Rendering support

    /// `value` with JSON nulls (`NSNull`) removed from every dictionary and array in it.
    static func withoutNulls(_ value: [String: Any]) -> [String: Any] {
        var result: [String: Any] = [:]
        for (key, element) in value {
            if let cleaned = withoutNulls(element) { result[key] = cleaned }
        }
        return result
    }

    private static func withoutNulls(_ value: Any) -> Any? {
        switch value {
        case is NSNull: nil
        case let dictionary as [String: Any]: withoutNulls(dictionary)
        case let array as [Any]: array.compactMap { withoutNulls($0) }
        default: value
        }
    }

    /// Whether `name` (a file of `templates/` without `.mustache`) was found and parses.
    static func hasTemplate(_ name: String) -> Bool {
        library?.getTemplate(named: name) != nil
    }

    /// 503 when a template is missing: the installation is broken, not the request.
    private static func unrendered(_ template: String) -> Response {
        var headers = securityHeaders
        headers[.contentType] = "text/plain; charset=utf-8"
        return Response(status: .serviceUnavailable, headers: headers,
                        body: .init(byteBuffer: ByteBuffer(string: "The console's page templates are missing from this installation (\(template)).\n")))
    }

    /// The directory of the console's files, the first of these that exists:
    /// `VOICECORE_CONSOLE_ASSETS`; the resource bundle SwiftPM copies next to the executable
    /// (`resources: [.copy("Console/Assets")]`; an installation copies it along, as the Dockerfile
    /// does); the sources this was built from. Looked up by hand rather than with `Bundle.module`,
    /// which ends the process when the bundle is missing: without its files the console answers
    /// 503 and everything else keeps working. Nil when none exists.
    static let assetsDirectory: URL? = {
        var candidates: [URL] = []
        if let configured = ProcessInfo.processInfo.environment["VOICECORE_CONSOLE_ASSETS"], !configured.isEmpty {
            candidates.append(URL(fileURLWithPath: configured))
        }
        let bundle = "VoiceCore_VoiceCoreEdge.resources"
        candidates.append(Bundle.main.bundleURL.appendingPathComponent(bundle).appendingPathComponent("Assets"))
        let executable = URL(fileURLWithPath: CommandLine.arguments.first ?? "").resolvingSymlinksInPath()
        candidates.append(executable.deletingLastPathComponent().appendingPathComponent(bundle).appendingPathComponent("Assets"))
        candidates.append(URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Assets"))
        return candidates.first { candidate in
            var isDirectory: ObjCBool = false
            return FileManager.default.fileExists(atPath: candidate.appendingPathComponent("templates").path, isDirectory: &isDirectory) && isDirectory.boolValue
        }
    }()

    private static func loadLibrary() -> MustacheLibrary? {
        guard let directory = assetsDirectory?.appendingPathComponent("templates"),
              let names = try? FileManager.default.contentsOfDirectory(atPath: directory.path)
        else { return nil }
        var library = MustacheLibrary()
        for name in names where name.hasSuffix(".mustache") {
            // A template that does not parse is left out: its page answers 503, the others work
            // (ConsoleSessionTests parses every template).
            guard let data = FileManager.default.contents(atPath: directory.appendingPathComponent(name).path),
                  let text = String(data: data, encoding: .utf8),
                  let template = try? MustacheTemplate(string: text)
            else { continue }
            library.register(template, named: String(name.dropLast(".mustache".count)))
        }
        return library
    }
}
