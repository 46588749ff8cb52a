import Foundation
import Logging
import Metrics
import ServiceLifecycle
import Synchronization
import VoiceCoreEvents
import VoiceCoreExecutors
import VoiceCoreRedis
import VoiceCoreTime

/// Runs a consumer group: reads its streams, hands each entry to its handler, and acknowledges it
/// only after the handler succeeded (at-least-once; handlers must be idempotent).
///
/// - Order: entries of one stream (one partition) are handled one after another in stream order;
///   partitions are handled in parallel. Everything about one call is in one partition. With
///   several members, partition leases (``ConsumerConfiguration/leaseTTL``) give each stream to
///   one member at a time, spread evenly, and move them when members join, leave or die (see
///   `PartitionLeases`).
/// - Outage: a handler (or the batch's publishes and writes) failing because Redis or Postgres does
///   not answer — unreachable, restarting, loading, read-only, a cluster without a master
///   (``DependencyFailure/isOutage``) — is not the entry's fault. Its partition pauses with the
///   entry pending and tries the same entry again with backoff until the dependency answers,
///   without using up any of its deliveries; the connections reconnect by themselves. While it
///   waits, ``Statistics/waitingOnOutage`` and the `voicecore_bus_waiting_on_outage` gauge say so.
///   A graceful shutdown ends the wait at once and leaves the entry pending for the next start.
/// - Failure: a failing entry is retried with exponential backoff and jitter; each retry re-claims
///   it, so Redis counts the deliveries. After ``ConsumerConfiguration/maxDeliveries`` the entry is
///   moved to the group's dead-letter stream with the reason, error, attempts, origin stream and id
///   and its original fields, and acknowledged at its origin, in one atomic script. An entry of a
///   handled type that cannot be decoded goes there at once (entries of types without a handler
///   are acknowledged undecoded). The entries behind a poison entry wait for its retries, never
///   longer.
/// - Restarts: the consumer first handles its own pending entries, then new ones. Entries pending
///   longer than ``ConsumerConfiguration/claimIdle`` at another (dead) consumer are claimed.
/// - A group that disappears (stream deleted, Redis restarted empty) is created again.
/// - Round trips: the entries a read handled are acknowledged (one XACK per stream) in the round
///   trip of the next read, written ahead of it, so Redis applies them first; before a lease check
///   and at shutdown they are sent on their own. The loop runs on the reader connection's thread: a
///   small read (up to 64 entries) is handled right there, without a thread hop; a larger one on
///   the shared pool, so partitions use every core, and the next read is sent before it is handled
///   (a backlog drains with Redis and the handlers working at once). Reading — own pending entries
///   first, read-ahead, acknowledgements in the next read's round trip, per-slot reads on a
///   cluster — is the bus's one ``StreamGroupReader``, shared with the projector workers; every
///   decision on an entry (acknowledge, retry, dead letter, outage wait, claims) is
///   ``ConsumerStateMachine``'s.
/// - Graceful shutdown stops reading, finishes and acknowledges the batch in hand (and one read
///   ahead), and returns within about one ``ConsumerConfiguration/block`` plus that handling time.
///
/// ```swift
/// var handlers = MessageHandlers()
/// handlers.on(CallEnded.self) { message, ended in … }
/// let runner = ConsumerGroupRunner(redis: redisConfiguration, configuration: configuration, handlers: handlers)
/// try await ServiceGroup(services: [runner], logger: logger).run()
/// ```
public final class ConsumerGroupRunner: Service, Sendable {
    public let configuration: ConsumerConfiguration
    let redisConfiguration: RedisConfiguration
    let handlers: MessageHandlers
    let registry: MessageRegistry
    let logger: Logger
    let metrics: ConsumerMetrics
    let state = Mutex(Statistics())
    /// Deliveries Redis counted only because this process read its own pending entries again
    /// after an outage (`XREADGROUP … 0` counts one per entry it returns): not the entries' fault,
    /// so they do not count toward a dead letter. By "<stream> <id>", dropped once an entry is
    /// acknowledged or dead-lettered. (A restart's re-read does count: a message that crashes
    /// the process must reach its dead letter.)
    let outageRereads = Mutex<[String: Int]>([:])
    /// The consumer's decisions (ack, retry, dead letter, outage wait, claims), as a value.
    let decisions: ConsumerStateMachine

    /// Counters since the runner started.
    public struct Statistics: Sendable, Hashable {
        /// Entries handled successfully (acknowledged with the next read, or at shutdown).
        public var handled = 0
        /// Handler attempts that threw.
        public var failedAttempts = 0
        /// Entries moved to a dead-letter stream.
        public var deadLettered = 0
        /// Entries taken over from other consumers.
        public var claimed = 0
        /// Entries acknowledged without a handler (no handler for their type, or deleted).
        public var skipped = 0
        /// Attempts repeated because Redis or Postgres did not answer (they use up no delivery).
        public var outageRetries = 0
        /// Partitions and readers waiting right now for Redis or Postgres to answer; 0 when the
        /// consumer's dependencies answer (a readiness probe reports "not ready" otherwise).
        public var waitingOnOutage = 0
    }

    public var statistics: Statistics { state.withLock { $0 } }

    public init(
        redis: RedisConfiguration, configuration: ConsumerConfiguration, handlers: MessageHandlers,
        registry: MessageRegistry = .standard, logger: Logger = Logger(label: "voicecore.bus.consumer"),
        metricsFactory: any MetricsFactory = MetricsSystem.factory
    ) {
        self.metrics = ConsumerMetrics(group: configuration.group, factory: metricsFactory)
        self.decisions = ConsumerStateMachine(configuration: configuration)
        self.redisConfiguration = redis
        self.configuration = configuration
        self.handlers = handlers
        self.registry = registry
        var logger = logger
        logger[metadataKey: "group"] = "\(configuration.group)"
        logger[metadataKey: "consumer"] = "\(configuration.consumer)"
        self.logger = logger
    }



    /// What one run holds between reads: the reader, the control connection (acknowledgements
    /// outside a read, claims, dead letters, leases) and the partitions leased.
    final class Session {
        let reader: StreamGroupReader
        let control: RedisClient
        let leases: PartitionLeases?
        var held: Set<String>
        var schedule: ConsumerStateMachine.Schedule

        init(reader: StreamGroupReader, control: RedisClient, leases: PartitionLeases?, streams: [String]) {
            self.reader = reader
            self.control = control
            self.leases = leases
            held = leases == nil ? Set(streams) : []
            schedule = ConsumerStateMachine.Schedule(startedAt: .now)
        }
    }

    public func run() async throws {
        let reader = try await StreamGroupReader.connect(redisConfiguration, clientName: clientName("reader"), configuration: readerConfiguration, logger: logger)
        var controlConfiguration = redisConfiguration
        controlConfiguration.clientName = clientName("control")
        let control = try await RedisClient.connect(controlConfiguration, logger: logger)
        try await ensureGroups(control)
        logger.info("consumer started", metadata: ["streams": "\(configuration.streams.count)"])
        let leases = configuration.leaseTTL.map {
            PartitionLeases(group: configuration.group, consumer: configuration.consumer, streams: configuration.streams, ttl: $0)
        }
        let session = Session(reader: reader, control: control, leases: leases, streams: configuration.streams)
        let stopping = Mutex(false)
        // The loop runs on the reader connection's thread: a read's reply resumes it without a
        // thread hop, and the partitions' handling starts there (handlers await their own
        // connections as usual; nothing here blocks the thread except the read it waits for).
        try await withTaskExecutorPreference(reader.taskExecutor) {
            try await withGracefulShutdownHandler {
                try await consume(session, until: stopping)
            } onGracefulShutdown: {
                stopping.withLock { $0 = true }
            }
        }
        if let leases { await leases.releaseAll(session.held, on: control) }
        logger.info("consumer stopped", metadata: ["handled": "\(statistics.handled)"])
    }

    func clientName(_ role: String) -> String {
        "vc-consumer:\(configuration.group):\(configuration.consumer):\(role)".replacingOccurrences(of: " ", with: "_")
    }

    /// Reads of up to this many entries are handled on the reader's thread; a larger read has the
    /// next one read ahead while it is handled (a backlog; a small read is the live tail, where an
    /// extra read would only cost round trips).
    static let inlineEntries = 64

    var readerConfiguration: StreamGroupReader.Configuration {
        StreamGroupReader.Configuration(group: configuration.group, consumer: configuration.consumer, batchSize: configuration.batchSize,
                                        block: configuration.block, readInterval: configuration.readInterval, readAheadAfter: Self.inlineEntries)
    }

    // MARK: The loop

    /// Reads and handles until a graceful shutdown, then handles what was read ahead and sends the
    /// last acknowledgements.
    func consume(_ session: Session, until stopping: borrowing Mutex<Bool>) async throws {
        // Own pending entries first: they were delivered before a restart and never acked.
        session.reader.readOwnPendingAgain(of: configuration.streams, afterOutage: false)
        while !stopping.withLock({ $0 }) && !Task.isCancelled {
            guard let read = try await nextRead(session) else { continue }
            try await handle(read, session)
        }
        await finish(session)
    }

    /// The next read to handle: the one read ahead when it has entries, else a read of the
    /// partitions held (after the lease check, when one is due). `nil` after a failure the
    /// consumer recovered from, or while it holds no partition.
    func nextRead(_ session: Session) async throws -> StreamGroupReader.Read? {
        let reader = session.reader
        do {
            if let ahead = try await reader.collectReadAhead(), ahead.hasEntries {
                // A lease check is due but waits for the batch in hand (partitions change hands
                // only with none): renew the leases meanwhile, as the check would.
                if let leases = session.leases, decisions.leaseCheckDue(session.schedule, at: .now) {
                    try await leases.renew(session.held, on: session.control)
                }
                return ahead
            }
        } catch let error as RedisError {
            // Its acknowledgements may not have reached Redis: read own pending entries again.
            try await recoverReadingPendingAgain(from: error, session)
            return nil
        }
        do {
            try await checkLeasesIfDue(session)
        } catch let error as RedisError {
            try await recover(from: error, session)
            return nil
        }
        reader.own(configuration.streams.filter { session.held.contains($0) })
        if reader.owned.isEmpty {
            // Every partition is leased to other members: wait for a rebalance.
            try await Task.sleep(for: min(configuration.block, (session.leases?.ttl ?? configuration.block) / 3))
            return nil
        }
        let read: StreamGroupReader.Read
        do {
            read = try await reader.read()
        } catch let error as RedisError {
            // On a cluster, the partitions of other nodes may have delivered entries before this
            // failure: they are pending to this consumer, so read its pending entries again.
            try await recoverReadingPendingAgain(from: error, session)
            return nil
        }
        if read.ownPending && read.afterOutage { noteOutageRereads(read.batches) }
        return read
    }

    /// With leases, every third of their lifetime and with no read outstanding: acknowledges what
    /// was handled, renews, takes free partitions up to a fair share or gives extras back, and
    /// takes over what is pending in the partitions acquired.
    func checkLeasesIfDue(_ session: Session) async throws {
        guard let leases = session.leases, decisions.leaseCheckDue(session.schedule, at: .now) else { return }
        session.schedule.lastLeaseCheck = .now
        // Acknowledge before a partition may change hands, so its next holder does not take over
        // entries this consumer has already handled.
        try await session.reader.flushAcknowledgements(on: session.control)
        let (held, acquired) = try await leases.maintain(holding: session.held, on: session.control)
        session.held = held
        for stream in acquired {
            await handlers.acquired?(stream)
            try await perform(decisions.takeOver, on: [stream], session)
        }
    }

    /// Handles a read (its successor read ahead meanwhile when it is large), then the
    /// housekeeping due. After a failure, recovers and reads the own pending entries again.
    func handle(_ read: StreamGroupReader.Read, _ session: Session) async throws {
        do {
            // No read ahead when the lease check or the claims are due: both run with no read
            // outstanding, right after this batch.
            let due = decisions.leaseCheckDue(session.schedule, at: .now) || decisions.housekeepingDue(session.schedule, at: .now)
            session.reader.startReadAhead(after: read, unless: due)
            try await handleAcknowledgingWithNextRead(read.batches, fresh: !read.ownPending, session)
            let work = decisions.housekeeping(&session.schedule, at: .now, readOutstanding: session.reader.isReadingAhead)
            if !work.isEmpty {
                // The batch just handled is acknowledged first: a claim of idle entries would
                // otherwise take its entries back (after an outage they are idle long enough).
                try await session.reader.flushAcknowledgements(on: session.control)
            }
            for work in work {
                try await perform(work, on: configuration.streams.filter { session.held.contains($0) }, session)
            }
        } catch {
            // An acknowledgement or dead letter did not reach Redis: those entries are still
            // pending to this consumer, so read its own pending entries again after recovering
            // (what was read ahead is among them, and comes back in order).
            await session.reader.dropReadAhead()
            try await recoverReadingPendingAgain(from: error, session)
        }
    }

    /// Handles `batches`; what was handled (also before a failure) is acknowledged with the next read.
    func handleAcknowledgingWithNextRead(_ batches: [StreamReadResult], fresh: Bool, _ session: Session) async throws {
        var handled: [(stream: String, ids: [StreamEntryID])] = []
        defer { session.reader.acknowledgeWithNextRead(handled) }
        try await handleRenewing(batches, fresh: fresh, session, handled: &handled)
    }

    /// At shutdown: entries read ahead are delivered already, so they are handled too (the
    /// consumer stops with nothing of its own pending), and the last acknowledgements are sent.
    func finish(_ session: Session) async {
        if let ahead = try? await session.reader.collectReadAhead() {
            do {
                try await handleAcknowledgingWithNextRead(ahead.batches, fresh: true, session)
            } catch {
                logger.warning("could not handle the entries read ahead; they stay pending and are handled again", metadata: ["error": "\(error)"])
            }
        }
        do {
            try await session.reader.flushAcknowledgements(on: session.control)
        } catch {
            logger.warning("could not acknowledge the last handled entries; they stay pending and are handled again",
                           metadata: ["error": "\(error)"])
        }
    }

    /// Handles a read; with leases, renews them meanwhile (a batch may outlast the lease TTL), so
    /// no other member takes a partition in the middle of it.
    func handleRenewing(_ batches: [StreamReadResult], fresh: Bool, _ session: Session,
                                handled: inout [(stream: String, ids: [StreamEntryID])]) async throws {
        guard let leases = session.leases else {
            try await handle(batches, fresh: fresh, control: session.control, handled: &handled)
            return
        }
        let held = session.held, control = session.control
        let renewal = Task { await leases.keepAlive(held, on: control) }
        defer { renewal.cancel() }
        try await handle(batches, fresh: fresh, control: control, handled: &handled)
    }

    // MARK: Groups and recovery

    func ensureGroups(_ control: RedisClient) async throws {
        for stream in configuration.streams {
            do {
                try await control.execute(.xgroupCreate(stream, group: configuration.group, start: configuration.start, makeStream: true))
                logger.debug("created consumer group", metadata: ["stream": "\(stream)"])
            } catch let error as RedisError where error.serverCode == "BUSYGROUP" {
                continue
            }
        }
    }

    /// Recovers from a failed read, acknowledgement or batch; the next reads return the own
    /// pending entries first.
    func recoverReadingPendingAgain(from error: any Error, _ session: Session) async throws {
        let afterOutage = try await recover(from: error, session)
        session.reader.readOwnPendingAgain(of: configuration.streams, afterOutage: afterOutage)
    }

    /// After a failed read, acknowledgement or batch: recreates a missing group, or waits until
    /// Redis answers both connections again (they reconnect by themselves), or pauses. Returns at
    /// once on shutdown.
    /// - Returns: whether it waited out an outage (the pending entries read next are re-reads).
    @discardableResult
    func recover(from error: any Error, _ session: Session) async throws -> Bool {
        switch decisions.recovery(from: Self.readFailure(error)) {
        case .createGroups:
            logger.warning("consumer group missing; creating it again", metadata: ["error": "\((error as? RedisError)?.message ?? "\(error)")"])
            do {
                try await ensureGroups(session.control)
            } catch {
                // Redis went away meanwhile: pause, then the next read creates it again.
                _ = await pause(for: configuration.retryDelay)
            }
            return false
        case .pause(let delay):
            // Not an outage (a failure of the batch's own, already logged where it happened):
            // read the pending entries again after a pause, so a failure cannot spin.
            logger.warning("handling failed; reading the pending entries again", metadata: ["error": "\(error)"])
            _ = await pause(for: delay)
            return false
        case .waitForRedis:
            logger.warning("Redis or Postgres unreachable; waiting for it with the entries pending", metadata: ["error": "\(error)"])
            let backoff = decisions.outageBackoff
            await waitingOnOutage {
                guard !Self.stopping else { return }
                await session.reader.waitUntilAnswering(alsoPinging: [session.control]) { failures in
                    await self.pause(for: backoff.delay(afterFailures: failures))
                }
            }
            if !Self.stopping { logger.info("Redis answers again; reading the pending entries") }
            return true
        }
    }

    static func readFailure(_ error: any Error) -> ConsumerStateMachine.ReadFailure {
        if let error = error as? RedisError, error.serverCode == "NOGROUP" { return .groupMissing }
        return error.isDependencyOutage ? .outage : .other
    }

    /// Whether this task should stop waiting: graceful shutdown or cancellation.
    static var stopping: Bool { Task.isShuttingDownGracefully || Task.isCancelled }

    /// Sleeps; `false` when a graceful shutdown (or cancellation) came first, at once.
    func pause(for delay: Duration) async -> Bool {
        if Self.stopping { return false }
        do {
            try await cancelWhenGracefulShutdown { try await Task.sleep(for: delay) }
        } catch {
            return false
        }
        return !Self.stopping
    }

    /// Counts `body` as a wait for a dependency (``Statistics/waitingOnOutage``, the gauge).
    func waitingOnOutage<T>(_ body: () async throws -> T) async rethrows -> T {
        let waiting = state.withLock { $0.waitingOnOutage += 1; return $0.waitingOnOutage }
        metrics.waitingOnOutage.record(waiting)
        defer {
            let waiting = state.withLock { $0.waitingOnOutage -= 1; return $0.waitingOnOutage }
            metrics.waitingOnOutage.record(waiting)
        }
        return try await body()
    }

    /// One pause of a partition waiting for Redis or Postgres: counted and logged (when `log`),
    /// then the pause; `false` when the consumer is stopping instead.
    func waitOutOutage(_ error: any Error, stream: String, entry: StreamEntryID?, pause: ConsumerStateMachine.Pause, log: Bool) async -> Bool {
        state.withLock { $0.outageRetries += 1 }
        metrics.outageRetries.increment()
        if log {
            logger.warning("Redis or Postgres unreachable; the partition waits with its entry pending", metadata: [
                "stream": "\(stream)", "entry": "\(entry.map { "\($0)" } ?? "-")", "tries": "\(pause.failures)", "error": "\(error)",
            ])
        }
        return await waitingOnOutage { await self.pause(for: pause.duration) }
    }

    // MARK: Outage re-reads

    /// Counts the own pending entries read again because of an outage (see `outageRereads`).
    func noteOutageRereads(_ batches: [StreamReadResult]) {
        outageRereads.withLock { rereads in
            for batch in batches { for entry in batch.entries { rereads["\(batch.stream) \(entry.id)", default: 0] += 1 } }
        }
    }

    /// Deliveries of the entry as Redis counts them, less the re-reads an outage caused here.
    func deliveryCount(_ stream: String, _ id: StreamEntryID, _ control: RedisClient) async throws -> Int {
        let rows = try await control.execute(.xpending(stream, group: configuration.group, from: id, to: id, count: 1))
        let rereads = outageRereads.withLock { $0["\(stream) \(id)"] ?? 0 }
        return ConsumerStateMachine.deliveries(new: false, countedByRedis: rows.first?.deliveryCount, rereadsAfterOutage: rereads)
    }
}
