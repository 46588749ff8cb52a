import Foundation
import Logging
import Metrics
import ServiceLifecycle
import Synchronization
import VoiceCoreEvents
import VoiceCoreRedis
import VoiceCoreTime

/// Trims the streams to their retention, but never below what a registered reader still needs.
///
/// Once per ``RetentionConfiguration/interval`` one pass visits every command and event stream:
/// it reads each consumer group's progress (below its oldest pending entry, at or below its
/// last-delivered id; for the projector's groups, their checkpoints through a
/// ``ReaderProgressSource``), and trims with one `XTRIM … MINID` (or `MAXLEN` for a length bound)
/// to whichever is lower: the retention point or the first entry some reader has not processed.
/// A consumer down over a weekend therefore finds its commands still there; the age and length
/// bounds only say how much *processed* history is kept (the SSE feed resumes from it).
///
/// A group that has entries left to process while none of its consumers has been seen (read or
/// claimed; `XINFO CONSUMERS` idle, or since a trimmer first saw it without consumers) for
/// ``RetentionConfiguration/abandonAfter`` (7 days) stops holding retention back, with a warning and
/// `voicecore_bus_retention_abandoned_group` = 1, so an abandoned group cannot grow Redis without
/// bound. What is held back is reported as gauges (see ``BusMetricNames``) and by
/// `voicecore streams`.
///
/// Several processes may run a trimmer (`voicecore up` and every `voicecore project` do): a lease
/// in Redis (`<prefix>:retention:lease`, held for three intervals and renewed by its holder) lets
/// one of them make the passes; if it dies another takes over. Two passes at once would still be
/// safe: a trim removes only entries below what every reader had processed when it looked, and
/// readers only move forward. (A group created *after* a pass looked, at an old position, gets
/// what retention kept, as it always did.)
///
/// Publishers do not trim. Redis' `maxmemory` with `maxmemory-policy noeviction` is the hard
/// bound: when it is reached `XADD` fails with `OOM` (the edge answers 503) instead of history
/// being dropped silently.
///
/// ```swift
/// let trimmer = RetentionTrimmer(redis: redisConfiguration, configuration: try .fromEnvironment(naming: naming),
///                                readers: [ProjectionCheckpointProgress(projections: StandardProjections.all, postgres: postgres)])
/// ServiceGroup(services: [trimmer, …], logger: logger)
/// ```
public final class RetentionTrimmer: Service, Sendable {
    public let configuration: RetentionConfiguration
    private let redis: RedisConfiguration
    private let readers: [any ReaderProgressSource]
    private let factory: any MetricsFactory
    private let logger: Logger
    private let instance = UUID().uuidString
    /// Groups reported abandoned by this process (warned once, again after they come back).
    private let abandoned = Mutex<Set<String>>([])
    private let trimmedCounter: Counter

    public init(redis: RedisConfiguration, configuration: RetentionConfiguration, readers: [any ReaderProgressSource] = [],
                factory: any MetricsFactory = MetricsSystem.factory, logger: Logger = Logger(label: "voicecore.bus.retention")) {
        self.redis = redis
        self.configuration = configuration
        self.readers = readers
        self.factory = factory
        self.logger = logger
        trimmedCounter = Counter(label: BusMetricNames.retentionTrimmed, factory: factory)
    }

    public func run() async throws {
        let connection = try await RedisClient.connect(redis, logger: logger)
        // Nothing to drain: a pass cut short by shutdown leaves every stream trimmed or not, each
        // XTRIM being atomic, so shutdown cancels the wait (and a pass) at once.
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                do {
                    if try await self.holdLease(connection) { _ = try await self.pass(connection) }
                } catch {
                    if Task.isCancelled { break }
                    // The connection reconnects by itself at the next pass.
                    self.logger.info("retention pass skipped", metadata: ["error": "\(error)"])
                }
                try? await Task.sleep(for: self.configuration.interval)
            }
        }
        await connection.close()
    }

    /// The lease key (one per deployment prefix).
    var leaseKey: String { "\(configuration.naming.prefix):retention:lease" }

    /// Since when (ms) each consumer group without consumers has been seen so: a hash, field
    /// ``StreamRetentionStatus/consumerlessKey(stream:group:)``, so the abandonment time of a group
    /// nobody ever read with survives restarts and is shared by every trimmer.
    var consumerlessRecordKey: String { Self.consumerlessRecordKey(configuration) }

    static func consumerlessRecordKey(_ configuration: RetentionConfiguration) -> String { "\(configuration.naming.prefix):retention:consumerless" }

    /// Takes the lease, or renews it when this trimmer holds it.
    func holdLease(_ connection: RedisClient) async throws -> Bool {
        let ttl = RESPArgument.integer(Int(max(1000, configuration.interval.milliseconds * 3)))
        if case .simpleString = try await connection.execute(.raw("SET", .string(leaseKey), .string(instance), "NX", "PX", ttl)) { return true }
        guard try await connection.execute(.raw("GET", .string(leaseKey))).string == instance else { return false }
        _ = try await connection.execute(.raw("PEXPIRE", .string(leaseKey), ttl))
        return true
    }

    /// Reads every stream's retention status and trims each as far as its bound and its readers
    /// allow; records the gauges and warns of abandoned groups. Public for tests and one-shot use
    /// (it does not take the lease).
    @discardableResult
    public func pass(_ connection: RedisClient) async throws -> [StreamRetentionStatus] {
        var statuses = try await Self.status(connection: connection, configuration: configuration, readers: readers)
        try await recordConsumerless(statuses, connection: connection)
        for index in statuses.indices {
            guard let trim = statuses[index].trimClause else { continue }
            let removed = try await connection.execute(.xtrim(statuses[index].stream, trim))
            statuses[index].recordTrimmed(removed)
            if removed > 0 { trimmedCounter.increment(by: removed) }
        }
        record(statuses)
        return statuses
    }

    /// Notes groups newly seen without consumers, forgets those that have consumers again or are gone.
    private func recordConsumerless(_ statuses: [StreamRetentionStatus], connection: RedisClient) async throws {
        let now = Timestamp.now.millisecondsSinceEpoch
        var consumerless = Set<String>()
        for status in statuses {
            for reader in status.readers where reader.consumers == 0 {
                let field = StreamRetentionStatus.consumerlessKey(stream: status.stream, group: reader.group)
                consumerless.insert(field)
                if reader.lastSeenSeconds == nil {
                    _ = try await connection.execute(.raw("HSETNX", .string(consumerlessRecordKey), .string(field), .string(String(now))))
                }
            }
        }
        let recorded = try await Self.consumerlessSince(connection: connection, configuration: configuration)
        let stale = recorded.keys.filter { !consumerless.contains($0) }
        if !stale.isEmpty {
            _ = try await connection.execute(.raw(["HDEL", .string(consumerlessRecordKey)] + stale.map { .string($0) }))
        }
    }

    static func consumerlessSince(connection: RedisClient, configuration: RetentionConfiguration) async throws -> [String: UInt64] {
        guard case .array(let items) = try await connection.execute(.raw("HGETALL", .string(consumerlessRecordKey(configuration)))) else { return [:] }
        var result: [String: UInt64] = [:]
        var index = 0
        while index + 1 < items.count {
            if let field = items[index].string, let value = items[index + 1].string.flatMap({ UInt64($0) }) { result[field] = value }
            index += 2
        }
        return result
    }

    /// The retention status of every stream of `configuration` that exists, without trimming
    /// (what `voicecore streams` shows).
    public static func status(connection: RedisClient, configuration: RetentionConfiguration, readers: [any ReaderProgressSource]) async throws -> [StreamRetentionStatus] {
        var progress: [(source: any ReaderProgressSource, reading: ReaderProgress)] = []
        for reader in readers { progress.append((reader, try await reader.progress())) }
        let consumerless = try await consumerlessSince(connection: connection, configuration: configuration)
        var statuses: [StreamRetentionStatus] = []
        for (stream, retention) in configuration.streams {
            if let status = try await StreamRetentionStatus.read(stream, retention: retention, connection: connection, configuration: configuration,
                                                                 progress: progress, consumerlessSince: consumerless) {
                statuses.append(status)
            }
        }
        return statuses
    }

    private func record(_ statuses: [StreamRetentionStatus]) {
        var abandonedNow: [String: [String]] = [:]
        for status in statuses {
            Gauge(label: BusMetricNames.retentionHeldBackEntries, dimensions: [("stream", status.stream)], factory: factory).record(status.heldBackEntries)
            for reader in status.readers {
                let dimensions = [("stream", status.stream), ("group", reader.group)]
                Gauge(label: BusMetricNames.retentionHeldBackSeconds, dimensions: dimensions, factory: factory).record(reader.heldBackSeconds)
                Gauge(label: BusMetricNames.retentionAbandonedGroup, dimensions: dimensions, factory: factory).record(reader.abandoned ? 1 : 0)
                if reader.abandoned { abandonedNow[reader.group, default: []].append(status.stream) }
            }
        }
        let (newlyAbandoned, back) = abandoned.withLock { known -> ([String], [String]) in
            let now = Set(abandonedNow.keys)
            let newly = now.subtracting(known).sorted()
            let back = known.subtracting(now).sorted()
            known = now
            return (newly, back)
        }
        for group in newlyAbandoned {
            logger.warning("consumer group abandoned: no consumer seen for longer than the abandonment time; it no longer holds retention back, and entries it has not processed are trimmed by age", metadata: [
                "group": "\(group)", "streams": "\(abandonedNow[group]?.count ?? 0)",
                "abandon_after_seconds": "\(configuration.abandonAfter.components.seconds)",
            ])
        }
        for group in back {
            logger.info("consumer group active again: it holds retention back", metadata: ["group": "\(group)"])
        }
    }
}
