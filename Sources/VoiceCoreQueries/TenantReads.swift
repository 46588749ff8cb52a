import Logging
import VoiceCoreEvents
import VoiceCorePostgres

/// Reads of one tenant's read models, isolated by Postgres rather than by `WHERE` clauses.
///
/// Every read runs in its own read-only transaction as the role `voicecore_tenant` with
/// `app.tenant_id` set for that transaction only, so the row-level security policies of the read
/// models (migration 0001) decide what is visible: a statement that forgets its tenant predicate
/// still sees one tenant's rows, and no statement can change anything (migration 0009 leaves the
/// role SELECT only). A per-read statement timeout bounds every statement.
///
/// The setup statements travel in the same round trip as the first statement of `body`
/// (``PostgresConnection/withTransaction(deferringWrites:file:line:_:)``).
///
/// ```swift
/// let reads = TenantReads(pool: pool)
/// let calls = try await reads.read(tenant: tenant) { db in try db.query("SELECT count(*) AS n FROM call_sessions") }
/// ```
public struct TenantReads: Sendable {
    public let pool: PostgresPool
    /// The longest any one statement of a read may run (`statement_timeout`, per transaction).
    public let statementTimeout: Duration

    public init(pool: PostgresPool, statementTimeout: Duration = .seconds(2)) {
        self.pool = pool
        self.statementTimeout = statementTimeout
    }

    /// Runs `body` in a read-only transaction scoped to `tenant` (see the type's summary).
    /// - Throws: ``ReadUnavailable`` when Postgres is unreachable, overloaded (no pooled
    ///   connection free in time) or a statement ran past ``statementTimeout``; any other error of
    ///   `body` as it is.
    public func read<Result: Sendable>(tenant: Identifier, _ body: @Sendable (isolated PostgresConnection) throws -> Result) async throws -> Result {
        try await readOnly(as: tenant, body)
    }

    /// A read-only transaction with the statement timeout, as `voicecore_tenant` with
    /// `app.tenant_id` set when `tenant` is given, as the pool's own role otherwise; what fails
    /// for want of the database is a ``ReadUnavailable``.
    func readOnly<Result: Sendable>(as tenant: Identifier?, _ body: @Sendable (isolated PostgresConnection) throws -> Result) async throws -> Result {
        let timeout = "\(Self.milliseconds(statementTimeout))ms"
        let tenantText = tenant?.description
        do {
            return try await pool.withConnection { db in
                try db.withTransaction(deferringWrites: true) { db in
                    try db.write("SET TRANSACTION READ ONLY")
                    if let tenantText {
                        try db.write("SET LOCAL ROLE voicecore_tenant")
                        try db.write("SELECT set_config('app.tenant_id', \(tenantText), true), set_config('statement_timeout', \(timeout), true)")
                    } else {
                        try db.write("SELECT set_config('statement_timeout', \(timeout), true)")
                    }
                    return try body(db)
                }
            }
        } catch let error as PostgresPoolError {
            throw ReadUnavailable(reason: error.description, retryAfterSeconds: 1)
        } catch let error as PostgresError where error.isOutage {
            throw ReadUnavailable(reason: "Postgres is unreachable", retryAfterSeconds: 5)
        } catch let error as PostgresError where error.sqlState == "57014" {
            throw ReadUnavailable(reason: "the query ran longer than \(statementTimeout)", retryAfterSeconds: 1)
        }
    }

    static func milliseconds(_ duration: Duration) -> Int64 {
        let (seconds, attoseconds) = duration.components
        return max(1, seconds * 1000 + attoseconds / 1_000_000_000_000_000)
    }
}

/// A read that could not be served now, and when to try again (the edge answers 503 with
/// `Retry-After`).
public struct ReadUnavailable: Error, Sendable, CustomStringConvertible {
    public let reason: String
    public let retryAfterSeconds: Int

    public init(reason: String, retryAfterSeconds: Int) {
        self.reason = reason
        self.retryAfterSeconds = retryAfterSeconds
    }

    public var description: String { "read unavailable: \(reason)" }
}
