import CLibPQ
import Foundation
import Logging
import VoiceCoreExecutors

/// One connection to Postgres over libpq, owned by an actor that runs on a thread of its own.
///
/// libpq blocks, so every call runs on the connection's ``DedicatedThreadExecutor``, never on
/// Swift's cooperative pool. Values always travel as `$n` parameters (see ``PostgresQuery``).
///
/// ```swift
/// let db = try await PostgresConnection.connect(try PostgresConfiguration(url: databaseURL))
/// let rows = try await db.query("SELECT count(*) AS n FROM leads WHERE tenant_id = \(tenant)")
/// let n = try rows[0].decode(Int.self, "n")
///
/// try await db.withTransaction { db in
///     try db.query("INSERT INTO leads (id, name) VALUES (\(id), \(name))")
///     try db.query("UPDATE projection_checkpoints SET last_id = \(lastID) WHERE name = 'crm'")
/// } // committed here; rolled back if the closure throws
/// ```
///
/// Sessions use `TimeZone=UTC` and ISO dates, so timestamps decode the same everywhere.
public actor PostgresConnection {
    public nonisolated let configuration: PostgresConfiguration
    private let logger: Logger
    private nonisolated let executor: DedicatedThreadExecutor

    public nonisolated var unownedExecutor: UnownedSerialExecutor {
        executor.asUnownedSerialExecutor()
    }

    /// The connection's thread as a task executor: code that calls this connection in a tight
    /// loop runs inside `withTaskExecutorPreference(connection.taskExecutor) { … }` to avoid a
    /// thread hop per call.
    public nonisolated var taskExecutor: any TaskExecutor { executor }

    // Touched only on `executor`'s thread (actor isolation) and in deinit.
    nonisolated(unsafe) private var connection: OpaquePointer?
    private var transactionDepth = 0
    /// When a broken connection may connect again: the next statement outside a transaction
    /// reconnects by itself, spaced out by this schedule while Postgres stays unreachable (the
    /// one policy of both clients; see ``ReconnectSchedule``).
    private var schedule = ReconnectSchedule(initial: .milliseconds(100), maximum: .seconds(2))
    private var lastConnectError: PostgresError?
    /// Set by ``close()``: nothing reconnects until ``reconnect(maxAttempts:)``.
    private var closedByOwner = false
    /// Inside `withTransaction(deferringWrites: true)`: statements whose results nobody reads
    /// (``write(_:file:line:)``), the transaction's `BEGIN` first, not yet sent. They go out in one
    /// pipeline with the next statement that needs a round trip (see `sendDeferred`).
    private var deferred: [PostgresQuery] = []
    private var deferring = false
    /// Statements prepared under a name on this session (see
    /// ``PostgresConfiguration/preparedStatements``), by SQL text and parameter types.
    private var prepared: [PreparedKey: String] = [:]
    /// Names given so far (a failed prepare's name is not reused: simpler than tracking it).
    private var preparedCount = 0

    private struct PreparedKey: Hashable {
        let sql: String
        let types: [Oid]
    }

    /// `true` while the connection is usable.
    public var isConnected: Bool { connection != nil }

    /// The server's version number, e.g. 150018 for 15.18.
    public var serverVersion: Int { connection.map { Int(PQserverVersion($0)) } ?? 0 }

    private init(configuration: PostgresConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
        self.executor = DedicatedThreadExecutor(name: "vc-postgres")
    }

    deinit {
        if let connection { PQfinish(connection) }
        executor.shutdown()
    }

    /// Connects with `PQconnectdbParams`.
    /// - Throws: ``PostgresError`` with code `connection` saying what failed (a wrong password
    ///   sets ``PostgresError/isAuthenticationFailure``); the password is never in the message.
    public static func connect(
        _ configuration: PostgresConfiguration,
        logger: Logger = Logger(label: "voicecore.postgres")
    ) async throws -> PostgresConnection {
        let connection = PostgresConnection(configuration: configuration, logger: logger)
        try await connection.open()
        return connection
    }

    /// Closes the connection and connects again: up to `maxAttempts` attempts, spaced by the
    /// connection's ``ReconnectSchedule`` (the one reconnect policy of both clients). A refused
    /// password is not retried.
    public func reconnect(maxAttempts: Int = 5) async throws {
        closeConnection()
        closedByOwner = false
        schedule.succeeded()
        var attempt = 1
        while true {
            if let wait = schedule.wait(at: .now) { try await Task.sleep(for: wait) }
            do {
                try open()
                schedule.succeeded()
                lastConnectError = nil
                return
            } catch let error as PostgresError {
                schedule.failed(at: .now)
                lastConnectError = error
                guard error.code == .connection, !error.isAuthenticationFailure, attempt < maxAttempts else { throw error }
                logger.info("Postgres reconnect failed; retrying", metadata: ["attempt": "\(attempt)", "error": "\(error.message)"])
                attempt += 1
            }
        }
    }

    /// Closes the connection. Later calls fail with `connectionClosed` until `reconnect()`.
    public func close() {
        closedByOwner = true
        closeConnection()
    }

    // MARK: Queries

    /// Runs one statement with its parameters and returns its rows (empty for statements that
    /// return none; ``PostgresRows/affectedRows`` counts what it changed).
    @discardableResult
    public func query(_ query: PostgresQuery, file: String = #fileID, line: Int = #line) throws -> PostgresRows {
        if !deferred.isEmpty {
            // The statements held back go first, in the same round trip.
            return try sendDeferred(then: query, file: file, line: line)!
        }
        let conn = try open(for: query, file: file, line: line)
        let result = withParameters(query.binds) { count, types, values, lengths, formats in
            PQexecParams(conn, query.sql, count, types, values, lengths, formats, 0)
        }
        return try consume(result, query: query, file: file, line: line)
    }

    /// Runs SQL text with no parameters, possibly several statements separated by `;` (for
    /// migrations and administration). Returns the rows of the last statement.
    @discardableResult
    public func simpleQuery(unsafeSQL sql: String, file: String = #fileID, line: Int = #line) throws -> PostgresRows {
        try sendDeferred(file: file, line: line)
        let query = PostgresQuery(unsafeSQL: sql)
        let conn = try open(for: query, file: file, line: line)
        var last: PostgresRows?
        var firstError: PostgresError?
        guard PQsendQuery(conn, sql) == 1 else { throw connectionFailure(query: query, file: file, line: line) }
        while let result = PQgetResult(conn) {
            do {
                let rows = try consume(result, query: query, file: file, line: line)
                last = rows
            } catch let error as PostgresError {
                // The connection broke and was closed (freed): nothing more to read from it.
                if connection == nil { throw error }
                if firstError == nil { firstError = error }
            }
        }
        if let firstError { throw firstError }
        guard let last else { throw connectionFailure(query: query, file: file, line: line) }
        return last
    }

    /// Runs `body` in a transaction: `BEGIN`, then `COMMIT` when it returns, `ROLLBACK` when it
    /// throws (the error is rethrown).
    ///
    /// `body` runs on the connection's own thread with the connection isolated to it, so no other
    /// task's statement can slip into the transaction, and statements inside need no `await`.
    /// Nested calls are part of the outer transaction.
    public func withTransaction<Result: Sendable>(
        deferringWrites: Bool = false, file: String = #fileID, line: Int = #line,
        _ body: @Sendable (isolated PostgresConnection) throws -> Result
    ) throws -> Result {
        if transactionDepth > 0 {
            return try body(self)
        }
        // Nothing of the transaction is sent yet: a connection lost since the last statement is
        // replaced now (inside the transaction it would not be; see `open(for:file:line:)`).
        if connection == nil { try reopen(for: "BEGIN", file: file, line: line) }
        if deferringWrites {
            deferred = ["BEGIN"]
            deferring = true
        } else {
            try query("BEGIN", file: file, line: line)
        }
        transactionDepth += 1
        defer {
            transactionDepth -= 1
            deferring = false
        }
        do {
            let result = try body(self)
            try query("COMMIT", file: file, line: line)
            return result
        } catch {
            // Nothing of it reached the server when even its BEGIN is still held back.
            let begun = deferred.first?.sql != "BEGIN"
            deferred = []
            if connection != nil && begun {
                do {
                    try query("ROLLBACK", file: file, line: line)
                } catch {
                    logger.warning("ROLLBACK failed", metadata: ["error": "\(error)"])
                }
            }
            throw error
        }
    }

    /// A statement whose result the caller does not read. Inside
    /// `withTransaction(deferringWrites: true)` it is held back and sent, with the transaction's
    /// `BEGIN` and the other statements held back, in one pipeline (one round trip) together with
    /// the next statement that needs its own result, a COPY, or the `COMMIT`; its error, if any,
    /// is thrown there. Elsewhere it runs at once, like ``query(_:file:line:)``.
    ///
    /// A projector's transaction under a steady stream (`BEGIN`, checkpoints, one or two inserts,
    /// `COMMIT`) becomes one round trip instead of five: the server's backend and this
    /// connection's thread wake once per transaction instead of once per statement.
    public func write(_ query: PostgresQuery, file: String = #fileID, line: Int = #line) throws {
        if deferring {
            deferred.append(query)
        } else {
            try self.query(query, file: file, line: line)
        }
    }

    /// Sends the statements held back, and `then` after them, in one pipeline; returns `then`'s
    /// rows. The first failing statement throws (the server skips the rest).
    @discardableResult
    private func sendDeferred(then last: PostgresQuery? = nil, file: String, line: Int) throws -> PostgresRows? {
        guard !deferred.isEmpty else { return try last.map { try query($0, file: file, line: line) } }
        var queries = deferred
        deferred = []
        if let last { queries.append(last) }
        return try pipeline(queries, file: file, line: line).last
    }

    /// Runs several statements on this connection without other tasks' statements in between.
    public func withConnection<Result: Sendable>(_ body: @Sendable (isolated PostgresConnection) throws -> Result) throws -> Result {
        try body(self)
    }

    /// Sends many statements in libpq pipeline mode: statements go out back to back and their
    /// results are read afterwards, one round trip per `syncEvery` statements instead of one per
    /// statement.
    ///
    /// Outside a transaction each group of `syncEvery` statements commits on its own; inside
    /// ``withTransaction(file:line:_:)`` they all belong to it. The first failing statement throws
    /// (later statements of its group are skipped by the server; later groups are not sent).
    @discardableResult
    public func pipeline(_ queries: [PostgresQuery], syncEvery: Int = 1000, file: String = #fileID, line: Int = #line) throws -> [PostgresRows] {
        if !deferred.isEmpty {
            let held = deferred
            deferred = []
            return Array(try pipeline(held + queries, syncEvery: max(syncEvery, held.count + 1), file: file, line: line).dropFirst(held.count))
        }
        guard let first = queries.first else { return [] }
        let conn = try open(for: first, file: file, line: line)
        guard PQenterPipelineMode(conn) == 1 else { throw connectionFailure(query: first, file: file, line: line) }
        defer { if connection != nil { PQexitPipelineMode(conn) } }

        var all: [PostgresRows] = []
        all.reserveCapacity(queries.count)
        var start = 0
        while start < queries.count {
            let chunk = queries[start..<min(start + max(1, syncEvery), queries.count)]
            // Statements kept prepared under a name run by that name. Others that repeat the
            // previous SQL text reuse one unnamed prepared statement: the server parses and plans
            // once per run instead of once per statement.
            var preparedSQL: String?
            // Per result expected: whether it is a prepare's.
            var expectsPrepareResult: [Bool] = []
            // The results of named prepares (by position), and the names given in this chunk: a
            // name is kept once its prepare succeeded.
            var naming: [Int: PreparedKey] = [:]
            var namedNow: [PreparedKey: String] = [:]
            expectsPrepareResult.reserveCapacity(chunk.count + 8)
            for query in chunk {
                let types = query.binds.map { Oid($0.type.rawValue) }
                let key = PreparedKey(sql: query.sql, types: types)
                var name = prepared[key] ?? namedNow[key]
                // Statements with parameters only: BEGIN, COMMIT and the like cost nothing to parse.
                if name == nil && !types.isEmpty && prepared.count + namedNow.count < configuration.preparedStatements {
                    let newName = "vc_\(preparedCount)"
                    preparedCount += 1
                    guard PQsendPrepare(conn, newName, query.sql, Int32(types.count), types) == 1 else {
                        throw connectionFailure(query: query, file: file, line: line)
                    }
                    naming[expectsPrepareResult.count] = key
                    namedNow[key] = newName
                    expectsPrepareResult.append(true)
                    name = newName
                }
                if name == nil && query.sql != preparedSQL {
                    let sentPrepare = PQsendPrepare(conn, "", query.sql, Int32(types.count), types.isEmpty ? nil : types)
                    guard sentPrepare == 1 else { throw connectionFailure(query: query, file: file, line: line) }
                    preparedSQL = query.sql
                    expectsPrepareResult.append(true)
                }
                let sent = withParameters(query.binds) { count, _, values, lengths, formats in
                    PQsendQueryPrepared(conn, name ?? "", count, values, lengths, formats, 0)
                }
                guard sent == 1 else { throw connectionFailure(query: query, file: file, line: line) }
                expectsPrepareResult.append(false)
            }
            guard PQpipelineSync(conn) == 1 else { throw connectionFailure(query: first, file: file, line: line) }

            var firstError: PostgresError?
            var index = chunk.startIndex
            var step = 0
            var nulls = 0
            while true {
                guard let result = PQgetResult(conn) else {
                    // A NULL ends each statement's results; several in a row mean libpq has nothing
                    // more to give, which only happens when the connection broke.
                    nulls += 1
                    if nulls > 2 || PQstatus(conn) == CONNECTION_BAD { throw connectionFailure(query: first, file: file, line: line) }
                    continue
                }
                nulls = 0
                let status = PQresultStatus(result)
                if status == PGRES_PIPELINE_SYNC {
                    PQclear(result)
                    break
                }
                let isPrepare = step < expectsPrepareResult.count ? expectsPrepareResult[step] : false
                if let key = naming[step], status == PGRES_COMMAND_OK, let name = namedNow[key] {
                    // The server has it now; later pipelines run it by name.
                    prepared[key] = name
                }
                step += 1
                let query = index < chunk.endIndex ? chunk[index] : first
                if !isPrepare { index += 1 }
                if status == PGRES_PIPELINE_ABORTED {
                    PQclear(result)
                    continue
                }
                do {
                    let rows = try consume(result, query: query, file: file, line: line)
                    if !isPrepare { all.append(rows) }
                } catch let error as PostgresError {
                    // The connection broke and was closed (freed): nothing more to read from it.
                    if connection == nil { throw error }
                    if firstError == nil { firstError = error }
                    // "cached plan must not change result type" (a table changed under a kept
                    // statement): forget it, so the next run prepares it afresh.
                    if error.sqlState == "0A000" { prepared = prepared.filter { $0.key.sql != query.sql } }
                }
            }
            if let firstError { throw firstError }
            start += chunk.count
        }
        return all
    }

    /// Bulk-loads rows with `COPY … FROM STDIN` (text format). `statement` is the COPY statement,
    /// e.g. `COPY leads (id, name) FROM STDIN`; `body` writes the rows through the writer, which
    /// streams them to the server in 256 KiB chunks. Returns the number of rows copied.
    ///
    /// ```swift
    /// let copied = try await db.copyFromStdin("COPY leads (id, name) FROM STDIN") { writer in
    ///     for lead in leads { try writer.appendRow(lead.id, lead.name) }
    /// }
    /// ```
    @discardableResult
    public func copyFromStdin(
        _ statement: PostgresQuery, file: String = #fileID, line: Int = #line,
        _ body: @Sendable (PostgresCopyWriter) throws -> Void
    ) throws -> Int {
        try copyIn(statement, file: file, line: line) { send in
            let writer = PostgresCopyWriter(send: send)
            try body(writer)
            try writer.flush()
        }
    }

    /// Bulk-loads rows with `COPY … FROM STDIN (FORMAT binary)`: the server reads each value's
    /// binary form instead of parsing its text (for rows of uuids and timestamps, about half the
    /// server's work of a text COPY into an unindexed table, measured with 200,000 archive rows).
    /// Each value's Swift type must have the column's binary form: `Int32` for `integer`, `Int`
    /// for `bigint`, ``PostgresJSONText`` for `json`, ``PostgresJSON`` for `jsonb`; a mismatch is
    /// refused by the server ("incorrect binary data format") and nothing is stored.
    ///
    /// ```swift
    /// try db.copyBinaryFromStdin("COPY leads (id, name, score) FROM STDIN (FORMAT binary)") { writer in
    ///     for lead in leads { try writer.appendRow(lead.id, lead.name, Int32(lead.score)) }
    /// }
    /// ```
    @discardableResult
    public func copyBinaryFromStdin(
        _ statement: PostgresQuery, file: String = #fileID, line: Int = #line,
        _ body: @Sendable (PostgresBinaryCopyWriter) throws -> Void
    ) throws -> Int {
        try copyIn(statement, file: file, line: line) { send in
            let writer = PostgresBinaryCopyWriter(send: send)
            try body(writer)
            try writer.finish()
        }
    }

    /// Starts the COPY, lets `write` stream the data through `send`, ends it (aborting it when
    /// `write` throws, so nothing is stored) and returns the rows copied.
    private func copyIn(
        _ statement: PostgresQuery, file: String, line: Int,
        _ write: (@escaping ([UInt8]) throws -> Void) throws -> Void
    ) throws -> Int {
        try sendDeferred(file: file, line: line)
        let conn = try open(for: statement, file: file, line: line)
        let start = withParameters(statement.binds) { count, types, values, lengths, formats in
            PQexecParams(conn, statement.sql, count, types, values, lengths, formats, 0)
        }
        guard let start else { throw connectionFailure(query: statement, file: file, line: line) }
        guard PQresultStatus(start) == PGRES_COPY_IN else {
            _ = try consume(start, query: statement, file: file, line: line)
            throw PostgresError(code: .protocolViolation, message: "the statement did not start COPY FROM STDIN", query: statement.sql, file: file, line: line)
        }
        PQclear(start)

        let send: ([UInt8]) throws -> Void = { bytes in
            // Broken and closed (freed) by an earlier send: nothing more may touch it.
            guard self.connection != nil else {
                throw PostgresError(code: .connection, message: "the connection broke during COPY", query: statement.sql, file: file, line: line)
            }
            let sent = bytes.withUnsafeBufferPointer { raw in
                raw.withMemoryRebound(to: CChar.self) { PQputCopyData(conn, $0.baseAddress, Int32($0.count)) }
            }
            guard sent == 1 else { throw self.connectionFailure(query: statement, file: file, line: line) }
        }
        var bodyError: (any Error)?
        do {
            try write(send)
        } catch {
            bodyError = error
        }
        // The connection broke while sending (and was closed, freed): nothing more to end or read.
        if connection == nil {
            throw bodyError ?? PostgresError(code: .connection, message: "the connection broke during COPY", query: statement.sql, file: file, line: line)
        }
        // Ending with an error message makes the server abort the COPY: nothing is stored.
        let ended = bodyError == nil ? PQputCopyEnd(conn, nil) : PQputCopyEnd(conn, "aborted by the client")
        guard ended == 1 else { throw connectionFailure(query: statement, file: file, line: line) }
        var copied = 0
        var serverError: (any Error)?
        while let result = PQgetResult(conn) {
            do {
                copied = try consume(result, query: statement, file: file, line: line).affectedRows
            } catch {
                // The connection broke and was closed (freed): nothing more to read from it.
                if connection == nil { throw error }
                if serverError == nil { serverError = error }
            }
        }
        if let bodyError { throw bodyError }
        if let serverError { throw serverError }
        return copied
    }

    // MARK: libpq

    private func open() throws {
        closeConnection()
        // Our defaults come first; what the URL says (expanded from `dbname`) overrides them.
        let keywords = ["application_name", "connect_timeout", "dbname"]
        let values = [configuration.applicationName, String(configuration.connectTimeoutSeconds), configuration.url]
        let conn = withCStrings(keywords) { k in
            withCStrings(values) { v in PQconnectdbParams(k, v, 1) }
        }
        guard let conn else {
            throw PostgresError(code: .connection, message: "libpq could not allocate a connection")
        }
        guard PQstatus(conn) == CONNECTION_OK else {
            // libpq's message spans lines ("…failed: Connection refused\n\tIs the server running…").
            let text = Self.trimmed(PQerrorMessage(conn)).split(whereSeparator: \.isWhitespace).joined(separator: " ")
            PQfinish(conn)
            var error = PostgresError(code: .connection, message: "cannot connect to \(configuration.description): \(text)")
            if text.contains("password authentication failed") {
                error.sqlState = "28P01"
                error.hint = "Check the user and password in DATABASE_URL."
            } else if text.contains("Connection refused") || text.contains("No such file") {
                error.hint = "Is Postgres running? Start the local one with `tools/dev-env start`, or check DATABASE_URL."
            } else if text.contains("does not exist") {
                error.hint = "Create the role or database, or fix DATABASE_URL (`tools/dev-env start` creates the local ones)."
            }
            if let hint = error.hint { error.message += (error.message.last?.isPunctuation == true ? " " : ". ") + hint }
            throw error
        }
        // Notices ("relation already exists, skipping") would go to stderr; a library stays quiet.
        PQsetNoticeProcessor(conn, { _, _ in }, nil)
        connection = conn
        transactionDepth = 0
        deferred = []
        prepared = [:]
        preparedCount = 0
        try simpleQuery(unsafeSQL: "SET TIME ZONE 'UTC'; SET DateStyle TO ISO, YMD; SET bytea_output TO hex")
    }

    private func closeConnection() {
        if let connection {
            PQfinish(connection)
            self.connection = nil
        }
    }

    /// The open connection. One lost since the last statement is replaced first, unless a
    /// transaction is open (its earlier statements died with the old session: the transaction
    /// fails whole, and the next one reconnects) or the owner closed it.
    private func open(for query: PostgresQuery, file: String, line: Int) throws -> OpaquePointer {
        if let connection { return connection }
        guard transactionDepth == 0 else {
            throw PostgresError(code: .connectionClosed, message: "the connection was lost during the transaction; it was not committed",
                                query: query.sql, file: file, line: line)
        }
        try reopen(for: query.sql, file: file, line: line)
        guard let connection else {
            throw PostgresError(code: .connectionClosed, message: "the connection closed while opening", query: query.sql, file: file, line: line)
        }
        return connection
    }

    /// Connects again when the schedule allows; otherwise fails at once saying when it will.
    private func reopen(for sql: String, file: String, line: Int) throws {
        if closedByOwner || !configuration.reconnectsAutomatically {
            throw PostgresError(code: .connectionClosed, message: "the connection is closed; call reconnect()", query: sql, file: file, line: line)
        }
        let now = ContinuousClock.now
        if let wait = schedule.wait(at: now) {
            var error = PostgresError(code: .connection, message: "Postgres is unreachable (\(lastConnectError?.message ?? "the connection was lost")); next attempt in \(Int(wait / .milliseconds(1))) ms",
                                      sqlState: lastConnectError?.sqlState, query: sql, file: file, line: line)
            error.hint = lastConnectError?.hint
            throw error
        }
        do {
            try open()
        } catch let error as PostgresError {
            schedule.failed(at: now)
            if schedule.failures == 1 || schedule.failures % 20 == 0 {
                logger.warning("Postgres unreachable; reconnecting with backoff", metadata: ["attempts": "\(schedule.failures)", "error": "\(error.message)"])
            }
            lastConnectError = error
            throw error
        }
        if schedule.failures > 0 { logger.info("reconnected to Postgres", metadata: ["attempts": "\(schedule.failures + 1)"]) }
        schedule.succeeded()
        lastConnectError = nil
    }

    /// Turns a result into rows or an error, and frees it.
    private func consume(_ result: OpaquePointer?, query: PostgresQuery, file: String, line: Int) throws -> PostgresRows {
        guard let result else { throw connectionFailure(query: query, file: file, line: line) }
        defer { PQclear(result) }
        let status = PQresultStatus(result)
        switch status {
        case PGRES_COMMAND_OK, PGRES_TUPLES_OK, PGRES_EMPTY_QUERY:
            return Self.rows(of: result)
        case PGRES_FATAL_ERROR, PGRES_NONFATAL_ERROR, PGRES_BAD_RESPONSE:
            if let connection, PQstatus(connection) == CONNECTION_BAD {
                throw connectionFailure(query: query, file: file, line: line)
            }
            throw Self.serverError(result, query: query, file: file, line: line)
        default:
            throw PostgresError(code: .protocolViolation, message: "unexpected result status \(String(cString: PQresStatus(status)))", query: query.sql, file: file, line: line)
        }
    }

    private func connectionFailure(query: PostgresQuery, file: String, line: Int) -> PostgresError {
        let text = connection.map { Self.trimmed(PQerrorMessage($0)) } ?? "no connection"
        closeConnection()
        return PostgresError(code: .connection, message: "the connection to \(configuration.description) failed: \(text); call reconnect()", query: query.sql, file: file, line: line)
    }

    private static func serverError(_ result: OpaquePointer, query: PostgresQuery, file: String, line: Int) -> PostgresError {
        func field(_ code: Int32) -> String? {
            guard let value = PQresultErrorField(result, code) else { return nil }
            return String(cString: value)
        }
        var error = PostgresError(
            code: .server,
            message: field(VC_PG_DIAG_MESSAGE_PRIMARY) ?? trimmed(PQresultErrorMessage(result)),
            sqlState: field(VC_PG_DIAG_SQLSTATE),
            query: query.sql, file: file, line: line
        )
        error.severity = field(VC_PG_DIAG_SEVERITY)
        error.detail = field(VC_PG_DIAG_MESSAGE_DETAIL)
        error.hint = field(VC_PG_DIAG_MESSAGE_HINT)
        error.constraint = field(VC_PG_DIAG_CONSTRAINT_NAME)
        error.table = field(VC_PG_DIAG_TABLE_NAME)
        error.column = field(VC_PG_DIAG_COLUMN_NAME)
        error.position = field(VC_PG_DIAG_STATEMENT_POSITION).flatMap { Int($0) }
        return error
    }

    private static func rows(of result: OpaquePointer) -> PostgresRows {
        let rowCount = Int(PQntuples(result))
        let columnCount = Int(PQnfields(result))
        let index = ColumnIndex(names: (0..<columnCount).map { String(cString: PQfname(result, Int32($0))) })
        var rows: [PostgresRow] = []
        rows.reserveCapacity(rowCount)
        for r in 0..<Int32(rowCount) {
            var values: [[UInt8]?] = []
            values.reserveCapacity(columnCount)
            for c in 0..<Int32(columnCount) {
                if PQgetisnull(result, r, c) == 1 {
                    values.append(nil)
                } else {
                    let length = Int(PQgetlength(result, r, c))
                    let pointer = PQgetvalue(result, r, c)
                    values.append(pointer.map { p in
                        p.withMemoryRebound(to: UInt8.self, capacity: length) { Array(UnsafeBufferPointer(start: $0, count: length)) }
                    } ?? [])
                }
            }
            rows.append(PostgresRow(columnIndex: index, values: values))
        }
        let tag = String(cString: PQcmdStatus(result))
        let affected = Int(String(cString: PQcmdTuples(result))) ?? rowCount
        return PostgresRows(columns: index.names, rows: rows, affectedRows: affected, commandTag: tag)
    }

    private static func trimmed(_ text: UnsafePointer<CChar>?) -> String {
        guard let text else { return "unknown error" }
        return String(cString: text).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Lays out binds as libpq wants them: type OIDs and NUL-terminated text values.
    /// The binds as libpq takes them: type OIDs, values, lengths and formats (0 text, 1 binary).
    /// Text values are NUL-terminated copies; binary ones are read by their length.
    private func withParameters<R>(
        _ binds: [PostgresBind],
        _ body: (Int32, UnsafePointer<Oid>?, UnsafePointer<UnsafePointer<CChar>?>?, UnsafePointer<Int32>?, UnsafePointer<Int32>?) -> R
    ) -> R {
        if binds.isEmpty { return body(0, nil, nil, nil, nil) }
        let types = binds.map { Oid($0.type.rawValue) }
        let lengths = binds.map { Int32($0.bytes?.count ?? 0) }
        let formats = binds.map { Int32($0.isBinary ? 1 : 0) }
        var storage: [UnsafeMutablePointer<CChar>?] = []
        storage.reserveCapacity(binds.count)
        for bind in binds {
            guard let bytes = bind.bytes else {
                storage.append(nil)
                continue
            }
            let pointer = UnsafeMutablePointer<CChar>.allocate(capacity: bytes.count + 1)
            bytes.withUnsafeBufferPointer { source in
                source.withMemoryRebound(to: CChar.self) { pointer.update(from: $0.baseAddress!, count: bytes.count) }
            }
            pointer[bytes.count] = 0
            storage.append(pointer)
        }
        defer { for pointer in storage { pointer?.deallocate() } }
        let values: [UnsafePointer<CChar>?] = storage.map { $0.map { UnsafePointer($0) } }
        return types.withUnsafeBufferPointer { t in
            values.withUnsafeBufferPointer { v in
                lengths.withUnsafeBufferPointer { l in
                    formats.withUnsafeBufferPointer { f in body(Int32(binds.count), t.baseAddress, v.baseAddress, l.baseAddress, f.baseAddress) }
                }
            }
        }
    }

    private func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafePointer<CChar>?>) -> R) -> R {
        var pointers: [UnsafeMutablePointer<CChar>?] = strings.map { strdup($0) }
        pointers.append(nil)
        defer { for pointer in pointers { free(pointer) } }
        let constant: [UnsafePointer<CChar>?] = pointers.map { $0.map { UnsafePointer($0) } }
        return constant.withUnsafeBufferPointer { body($0.baseAddress!) }
    }
}
