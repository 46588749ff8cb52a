import VoiceCoreExecutors

/// An error from libpq or from the Postgres server.
///
/// Server errors carry the fields Postgres sends: ``sqlState`` (`23505` for a unique violation),
/// ``detail``, ``hint``, ``constraint``, ``table``, ``column``. ``description`` is safe to log: it
/// names the failing query (never its bound values) and never the connection's password;
/// ``debugDescription`` adds detail and hint.
public struct PostgresError: DependencyFailure, Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    /// What kind of failure this is. New codes may be added.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable {
            case connection, server, connectionClosed, decoding, invalidConfiguration, protocolViolation
        }
        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// Connecting failed or the connection broke during a query.
        public static let connection = Code(.connection)
        /// The connection is closed; call `reconnect()`.
        public static let connectionClosed = Code(.connectionClosed)
        /// The server rejected the statement (see ``PostgresError/sqlState``).
        public static let server = Code(.server)
        /// A column could not be decoded into the requested Swift type.
        public static let decoding = Code(.decoding)
        /// A URL or option is invalid.
        public static let invalidConfiguration = Code(.invalidConfiguration)
        /// libpq reported something the client did not expect (e.g. a COPY that did not start).
        public static let protocolViolation = Code(.protocolViolation)

        public var description: String { base.rawValue }
    }

    public var code: Code
    public var message: String
    public var sqlState: String?
    public var severity: String?
    public var detail: String?
    public var hint: String?
    public var constraint: String?
    public var table: String?
    public var column: String?
    /// Where in the SQL text the error was found (1-based character offset), when the server says.
    public var position: Int?
    /// The SQL text of the failing statement (with `$n` placeholders, never values).
    public var query: String?
    public var file: String?
    public var line: Int?

    public init(code: Code, message: String, sqlState: String? = nil, query: String? = nil, file: String? = nil, line: Int? = nil) {
        self.code = code
        self.message = message
        self.sqlState = sqlState
        self.query = query
        self.file = file
        self.line = line
    }

    /// `true` for SQLSTATE class 23 (integrity constraint violations).
    public var isConstraintViolation: Bool { sqlState?.hasPrefix("23") ?? false }
    /// SQLSTATE 23505.
    public var isUniqueViolation: Bool { sqlState == "23505" }
    /// SQLSTATE 28P01 or 28000 (authentication failed / invalid authorization).
    public var isAuthenticationFailure: Bool {
        sqlState == "28P01" || sqlState == "28000" || message.contains("password authentication failed")
    }

    /// True when Postgres was unreachable or not serving (see ``DependencyFailure``): the
    /// connection failed or was lost, SQLSTATE class 08 (connection exception), 57P01–57P03
    /// (shutting down, crashed, starting up) or 53xxx (out of connections, memory or disk).
    public var isOutage: Bool {
        if code == .connection || code == .connectionClosed { return !isAuthenticationFailure }
        guard let sqlState else { return false }
        return sqlState.hasPrefix("08") || sqlState.hasPrefix("53") || ["57P01", "57P02", "57P03"].contains(sqlState)
    }

    /// True for SQLSTATE class 22 (data exception: out of range, bad encoding), 23 (a
    /// constraint) or 54 (a limit, e.g. an index entry too long): the values were refused.
    public var refusesInput: Bool {
        guard code == .server, let sqlState else { return false }
        return ["22", "23", "54"].contains(String(sqlState.prefix(2)))
    }

    public var description: String {
        var text = "Postgres \(code)"
        if let sqlState { text += " \(sqlState)" }
        text += ": \(message)"
        if let constraint { text += " (constraint \(constraint))" }
        if let query { text += " in query: \(query.prefix(200))" }
        if let file, let line { text += " at \(file):\(line)" }
        return text
    }

    public var debugDescription: String {
        var text = description
        if let detail { text += "\nDETAIL: \(detail)" }
        if let hint { text += "\nHINT: \(hint)" }
        return text
    }
}
