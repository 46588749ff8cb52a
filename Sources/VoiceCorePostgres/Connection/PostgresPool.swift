import Logging
import Synchronization

/// A bounded pool of ``PostgresConnection``s for request/response work (the edge's read API).
///
/// Each connection keeps its own thread (libpq blocks), so a request never blocks an event loop or
/// the cooperative pool: it waits, suspended, for a free connection. At most ``size`` connections
/// are open; connections open lazily, on first need. A request that finds none free within
/// ``acquireTimeout`` fails with ``PostgresPoolError/exhausted`` rather than queueing without
/// bound, so overload turns into quick 503s instead of growing latency.
///
/// A connection that broke reconnects by itself at its next statement
/// (``PostgresConfiguration/reconnectsAutomatically``); while Postgres is unreachable every
/// request fails fast with the connection's ``PostgresError`` (``PostgresError/isOutage``).
///
/// ```swift
/// let pool = PostgresPool(configuration: try PostgresConfiguration(url: url), size: 8)
/// let n = try await pool.withConnection { db in try db.query("SELECT 1 AS n")[0].decode(Int.self, "n") }
/// ```
public final class PostgresPool: Sendable {
    public let configuration: PostgresConfiguration
    /// The most connections open at once.
    public let size: Int
    /// How long a request waits for a free connection before ``PostgresPoolError/exhausted``.
    public let acquireTimeout: Duration
    private let logger: Logger
    private let state: Mutex<State>

    private struct Waiter {
        let id: Int
        let continuation: CheckedContinuation<PostgresConnection?, any Error>
    }

    private struct State {
        var idle: [PostgresConnection] = []
        /// Connections open or being opened (idle + lent + connecting).
        var count = 0
        var waiters: [Waiter] = []
        var nextWaiter = 0
        var closed = false
    }

    public init(configuration: PostgresConfiguration, size: Int, acquireTimeout: Duration = .seconds(2),
                logger: Logger = Logger(label: "voicecore.postgres.pool")) {
        precondition(size > 0, "a pool needs at least one connection")
        var configuration = configuration
        configuration.reconnectsAutomatically = true
        self.configuration = configuration
        self.size = size
        self.acquireTimeout = acquireTimeout
        self.logger = logger
        self.state = Mutex(State())
    }

    /// Runs `body` on a connection of the pool, on that connection's thread, with no other
    /// request's statement in between; the connection returns to the pool afterwards.
    /// - Throws: ``PostgresPoolError`` when no connection is free in time or the pool is closed;
    ///   ``PostgresError`` when connecting or a statement fails; whatever `body` throws.
    public func withConnection<Result: Sendable>(_ body: @Sendable (isolated PostgresConnection) throws -> Result) async throws -> Result {
        let connection = try await acquire()
        defer { release(connection) }
        return try await connection.withConnection(body)
    }

    /// Closes every idle connection and fails the waiting requests; connections lent out close
    /// when they come back.
    public func close() async {
        let (idle, waiters) = state.withLock { state -> ([PostgresConnection], [Waiter]) in
            state.closed = true
            defer {
                state.count -= state.idle.count
                state.idle = []
                state.waiters = []
            }
            return (state.idle, state.waiters)
        }
        for waiter in waiters { waiter.continuation.resume(throwing: PostgresPoolError.closed) }
        for connection in idle { await connection.close() }
    }

    /// Connections open now, idle now (for metrics and tests).
    public var counts: (open: Int, idle: Int) {
        state.withLock { ($0.count, $0.idle.count) }
    }

    // MARK: Lending

    private enum Acquisition {
        case lend(PostgresConnection)
        case open
        case wait
        case closed
    }

    private func acquire() async throws -> PostgresConnection {
        let next = state.withLock { state -> Acquisition in
            if state.closed { return .closed }
            if let connection = state.idle.popLast() { return .lend(connection) }
            if state.count < size {
                state.count += 1
                return .open
            }
            return .wait
        }
        switch next {
        case .lend(let connection):
            return connection
        case .closed:
            throw PostgresPoolError.closed
        case .open:
            do {
                return try await PostgresConnection.connect(configuration, logger: logger)
            } catch {
                // The slot is free again: a waiter may try to open it.
                openSlotFreed()
                throw error
            }
        case .wait:
            return try await waitForConnection()
        }
    }

    private func waitForConnection() async throws -> PostgresConnection {
        let id = state.withLock { state -> Int in
            state.nextWaiter += 1
            return state.nextWaiter
        }
        let timeout = acquireTimeout
        let timer = Task { [weak self] in
            try? await Task.sleep(for: timeout)
            self?.timeOut(waiter: id)
        }
        defer { timer.cancel() }
        let handed = try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<PostgresConnection?, any Error>) in
            let closed = state.withLock { state -> Bool in
                if state.closed { return true }
                state.waiters.append(Waiter(id: id, continuation: continuation))
                return false
            }
            if closed { continuation.resume(throwing: PostgresPoolError.closed) }
        }
        if let handed { return handed }
        // Handed a free slot instead of a connection: open one.
        do {
            return try await PostgresConnection.connect(configuration, logger: logger)
        } catch {
            openSlotFreed()
            throw error
        }
    }

    private func timeOut(waiter id: Int) {
        let waiter = state.withLock { state -> Waiter? in
            guard let index = state.waiters.firstIndex(where: { $0.id == id }) else { return nil }
            return state.waiters.remove(at: index)
        }
        waiter?.continuation.resume(throwing: PostgresPoolError.exhausted(size: size, waited: acquireTimeout))
    }

    private func release(_ connection: PostgresConnection) {
        let outcome = state.withLock { state -> (Waiter?, Bool) in
            if state.closed {
                state.count -= 1
                return (nil, true)
            }
            if !state.waiters.isEmpty { return (state.waiters.removeFirst(), false) }
            state.idle.append(connection)
            return (nil, false)
        }
        if let waiter = outcome.0 {
            waiter.continuation.resume(returning: connection)
        } else if outcome.1 {
            Task { await connection.close() }
        }
    }

    /// A connection that failed to open gives its slot to the first waiter (who opens one), or
    /// back to the pool.
    private func openSlotFreed() {
        let waiter = state.withLock { state -> Waiter? in
            if !state.closed, !state.waiters.isEmpty { return state.waiters.removeFirst() }
            state.count -= 1
            return nil
        }
        waiter?.continuation.resume(returning: nil)
    }
}

/// Why the pool lent no connection.
public enum PostgresPoolError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Every connection stayed busy for the whole wait: the database is overloaded or slow.
    case exhausted(size: Int, waited: Duration)
    /// The pool was closed.
    case closed

    public var description: String {
        switch self {
        case .exhausted(let size, let waited):
            return "all \(size) Postgres connections of the pool stayed busy for \(waited)"
        case .closed:
            return "the Postgres pool is closed"
        }
    }
}
