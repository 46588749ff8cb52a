/// Where and how to connect to Postgres.
///
/// Built from a libpq connection URL, usually `DATABASE_URL`:
/// `postgres://user:password@host:port/database?sslmode=disable&options=-c%20statement_timeout%3D5s`.
/// Every libpq parameter in the query string (sslmode, options, connect_timeout, …) is passed
/// through to `PQconnectdbParams`.
///
/// `description` never shows the password.
import Foundation

public struct PostgresConfiguration: Sendable, Hashable, CustomStringConvertible {
    /// The connection URL as given (it may contain a password: never log it; log `description`).
    public var url: String
    /// `application_name`, shown in `pg_stat_activity`.
    public var applicationName: String
    /// Seconds libpq may take to connect when the URL does not say (`connect_timeout`).
    public var connectTimeoutSeconds: Int
    /// How many statements with parameters sent in pipelines (``PostgresConnection/pipeline(_:syncEvery:file:line:)``,
    /// held-back ``PostgresConnection/write(_:file:line:)``s) each connection keeps prepared under
    /// a name of its own, so the server parses them once and, after a few runs, plans them once
    /// (a projector's statements: about a fifth of Postgres' CPU on a steady stream, measured on
    /// 2026-12-04). Statements beyond it are parsed each time. 0 turns it off: needed behind a
    /// connection pooler in transaction mode that does not track prepared statements (PgBouncer
    /// before 1.21, or without `max_prepared_statements`).
    public var preparedStatements: Int = 64
    /// Whether a lost connection is replaced by itself at the next statement outside a
    /// transaction (see ``PostgresConnection``). Off for a holder whose session state matters
    /// beyond one statement, such as the projector's advisory locks: a new session would not hold
    /// them, so that holder notices the loss and recovers with ``PostgresConnection/reconnect(maxAttempts:)``.
    public var reconnectsAutomatically = true

    public init(url: String, applicationName: String = "voicecore", connectTimeoutSeconds: Int = 5) throws {
        guard url.hasPrefix("postgres://") || url.hasPrefix("postgresql://") else {
            throw PostgresError(code: .invalidConfiguration, message: "DATABASE_URL must start with postgres:// or postgresql:// (got \(Self.redacted(url)))")
        }
        self.url = url
        self.applicationName = applicationName
        self.connectTimeoutSeconds = connectTimeoutSeconds
    }

    public var description: String { Self.redacted(url) }

    /// The URL with any password replaced by `***` (in the user-info part and in a `password=`
    /// query parameter).
    public static func redacted(_ url: String) -> String {
        var text = url
        if let scheme = text.range(of: "://") {
            let afterScheme = text[scheme.upperBound...]
            let authorityEnd = afterScheme.firstIndex(where: { $0 == "/" || $0 == "?" }) ?? afterScheme.endIndex
            let authority = afterScheme[..<authorityEnd]
            if let at = authority.lastIndex(of: "@"), let colon = authority[..<at].firstIndex(of: ":") {
                text.replaceSubrange(text.index(after: colon)..<at, with: "***")
            }
        }
        if let range = text.range(of: "password=") {
            let end = text[range.upperBound...].firstIndex(of: "&") ?? text.endIndex
            text.replaceSubrange(range.upperBound..<end, with: "***")
        }
        return text
    }
}
