/// When a broken connection may try to connect again: the one reconnect policy of both clients
/// (``RedisConnection`` and ``PostgresConnection`` live in modules that share only this one).
///
/// A connection whose socket failed reconnects by itself when the next command arrives, never
/// by resending the command that was in flight (whether the server applied it is unknown; the
/// caller decides). While the server stays unreachable, attempts are spaced out: after the n-th
/// failed attempt the next one waits `initial · 2ⁿ⁻¹` (at most `maximum`), scaled by a random
/// factor in 0.5…1 so that many connections of many processes do not reconnect in lockstep.
/// Commands that arrive before then fail at once, saying when the next attempt is due: a
/// consumer's retry loop or an HTTP handler gets an answer without a connect timeout each.
///
/// ```swift
/// var schedule = ReconnectSchedule()
/// if let wait = schedule.wait(at: .now) { throw unreachable(retryIn: wait) }
/// do { try open(); schedule.succeeded() } catch { schedule.failed(at: .now); throw error }
/// ```
public struct ReconnectSchedule: Sendable, Hashable {
    /// The pause after the first failed attempt.
    public var initial: Duration
    /// The longest pause between attempts.
    public var maximum: Duration
    /// Failed attempts since the connection last worked.
    public private(set) var failures = 0
    private var notBefore: ContinuousClock.Instant?

    public init(initial: Duration = .milliseconds(50), maximum: Duration = .seconds(2)) {
        self.initial = initial
        self.maximum = max(initial, maximum)
    }

    /// How long until the next attempt is allowed; `nil` when one may be made now.
    public func wait(at now: ContinuousClock.Instant) -> Duration? {
        guard let notBefore, now < notBefore else { return nil }
        return notBefore - now
    }

    /// An attempt failed: the next waits longer.
    public mutating func failed(at now: ContinuousClock.Instant) {
        failures += 1
        var pause = initial
        for _ in 1..<min(failures, 32) where pause < maximum { pause *= 2 }
        notBefore = now + min(pause, maximum) * Double.random(in: 0.5...1.0)
    }

    /// The connection works again.
    public mutating func succeeded() {
        failures = 0
        notBefore = nil
    }
}

/// An error that may say a dependency (Redis, Postgres) is unreachable or not serving for now,
/// rather than that the work was wrong. Consumers use it to tell an outage, which they wait out
/// with the entry still pending, from a failure of the message, which counts toward its dead
/// letter. `RedisError` and `PostgresError` conform; wrap neither in another error type where
/// this distinction matters.
public protocol DependencyFailure: Error {
    /// True when the dependency was unreachable, restarting, read-only or overloaded: the same
    /// work may succeed unchanged once it answers again.
    var isOutage: Bool { get }
    /// True when the dependency refused the values it was given (out of range, a broken
    /// constraint, too long): the request's fault, never an outage. An HTTP edge answers 4xx.
    var refusesInput: Bool { get }
}

extension DependencyFailure {
    public var refusesInput: Bool { false }
}

extension Error {
    /// Whether this error says a dependency is unavailable (see ``DependencyFailure``).
    public var isDependencyOutage: Bool { (self as? any DependencyFailure)?.isOutage ?? false }
    /// Whether a dependency refused the input as invalid (see ``DependencyFailure/refusesInput``).
    public var isRefusedInput: Bool { (self as? any DependencyFailure)?.refusesInput ?? false }
}

/// A connection made at its first use and kept after. Once made, a connection reconnects by itself
/// (``ReconnectSchedule``); making the first one needs the server up, so a sampler that starts while
/// it is down keeps asking here, at each sample, instead of failing for good.
///
/// ```swift
/// var redis = LazyConnection { try await RedisClient.connect(configuration) }
/// let client = try await redis.get()
/// ```
public struct LazyConnection<Connection: Sendable>: Sendable {
    private let make: @Sendable () async throws -> Connection
    /// The connection, once one was made.
    public private(set) var current: Connection?

    public init(_ make: @escaping @Sendable () async throws -> Connection) {
        self.make = make
    }

    /// The connection, made now if it is the first use (or every earlier attempt failed).
    public mutating func get() async throws -> Connection {
        if let current { return current }
        let made = try await make()
        current = made
        return made
    }
}
