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
    private let redisConfiguration: RedisConfiguration
    private let handlers: MessageHandlers
    private let registry: MessageRegistry
    private let logger: Logger
    private let metrics: ConsumerMetrics
    private let state = Mutex(Statistics())
    /// Deliveries Redis counted only because this process read its own pending entries again
    /// after an outage (`XREADGROUP … 0` counts one per entry it returns): not the entries' fault,
    /// so they do not count toward a dead letter. By "<stream> <id>", dropped once an entry is
    /// acknowledged or dead-lettered. (A restart's re-read does count: a message that crashes
    /// the process must reach its dead letter.)
    private let outageRereads = Mutex<[String: Int]>([:])
    /// The consumer's decisions (ack, retry, dead letter, outage wait, claims), as a value.
    private let decisions: ConsumerStateMachine

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
        metricsFactory: MetricsFactory = MetricsSystem.factory
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
    private final class Session {
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

    private func clientName(_ role: String) -> String {
        "vc-consumer:\(configuration.group):\(configuration.consumer):\(role)".replacingOccurrences(of: " ", with: "_")
    }

    /// Reads of up to this many entries are handled on the reader's thread; a larger read has the
    /// next one read ahead while it is handled (a backlog; a small read is the live tail, where an
    /// extra read would only cost round trips).
    static let inlineEntries = 64

    private var readerConfiguration: StreamGroupReader.Configuration {
        StreamGroupReader.Configuration(group: configuration.group, consumer: configuration.consumer, batchSize: configuration.batchSize,
                                        block: configuration.block, readInterval: configuration.readInterval, readAheadAfter: Self.inlineEntries)
    }

    // MARK: The loop

    /// Reads and handles until a graceful shutdown, then handles what was read ahead and sends the
    /// last acknowledgements.
    private func consume(_ session: Session, until stopping: borrowing Mutex<Bool>) async throws {
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
    private func nextRead(_ session: Session) async throws -> StreamGroupReader.Read? {
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
    private func checkLeasesIfDue(_ session: Session) async throws {
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
    private func handle(_ read: StreamGroupReader.Read, _ session: Session) async throws {
        do {
            session.reader.startReadAhead(after: read, unlessLeaseCheckDue: decisions.leaseCheckDue(session.schedule, at: .now))
            try await handleAcknowledgingWithNextRead(read.batches, fresh: !read.ownPending, session)
            for work in decisions.housekeeping(&session.schedule, at: .now) {
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
    private func handleAcknowledgingWithNextRead(_ batches: [StreamReadResult], fresh: Bool, _ session: Session) async throws {
        var handled: [(stream: String, ids: [StreamEntryID])] = []
        defer { session.reader.acknowledgeWithNextRead(handled) }
        try await handleRenewing(batches, fresh: fresh, session, handled: &handled)
    }

    /// At shutdown: entries read ahead are delivered already, so they are handled too (the
    /// consumer stops with nothing of its own pending), and the last acknowledgements are sent.
    private func finish(_ session: Session) async {
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
    private func handleRenewing(_ batches: [StreamReadResult], fresh: Bool, _ session: Session,
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

    private func ensureGroups(_ control: RedisClient) async throws {
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
    private func recoverReadingPendingAgain(from error: any Error, _ session: Session) async throws {
        let afterOutage = try await recover(from: error, session)
        session.reader.readOwnPendingAgain(of: configuration.streams, afterOutage: afterOutage)
    }

    /// After a failed read, acknowledgement or batch: recreates a missing group, or waits until
    /// Redis answers both connections again (they reconnect by themselves), or pauses. Returns at
    /// once on shutdown.
    /// - Returns: whether it waited out an outage (the pending entries read next are re-reads).
    @discardableResult
    private func recover(from error: any Error, _ session: Session) async throws -> Bool {
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
    private func pause(for delay: Duration) async -> Bool {
        if Self.stopping { return false }
        do {
            try await cancelWhenGracefulShutdown { try await Task.sleep(for: delay) }
        } catch {
            return false
        }
        return !Self.stopping
    }

    /// Counts `body` as a wait for a dependency (``Statistics/waitingOnOutage``, the gauge).
    private func waitingOnOutage<T>(_ body: () async throws -> T) async rethrows -> T {
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
    private func waitOutOutage(_ error: any Error, stream: String, entry: StreamEntryID?, pause: ConsumerStateMachine.Pause, log: Bool) async -> Bool {
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
    private func noteOutageRereads(_ batches: [StreamReadResult]) {
        outageRereads.withLock { rereads in
            for batch in batches { for entry in batch.entries { rereads["\(batch.stream) \(entry.id)", default: 0] += 1 } }
        }
    }

    /// Deliveries of the entry as Redis counts them, less the re-reads an outage caused here.
    private func deliveryCount(_ stream: String, _ id: StreamEntryID, _ control: RedisClient) async throws -> Int {
        let rows = try await control.execute(.xpending(stream, group: configuration.group, from: id, to: id, count: 1))
        let rereads = outageRereads.withLock { $0["\(stream) \(id)"] ?? 0 }
        return ConsumerStateMachine.deliveries(new: false, countedByRedis: rows.first?.deliveryCount, rereadsAfterOutage: rereads)
    }

    // MARK: Handling a read

    private enum Outcome {
        case acknowledge
        case deadLettered
        /// Left pending (shutting down mid-retry, or the entry was taken over): not acked here.
        case leavePending
    }

    /// What a partition's batch came to: the entries to acknowledge, and the failure that ended it.
    private struct PartitionOutcome: Sendable {
        var stream: String
        var acknowledged: [StreamEntryID]
        var failure: (any Error)?
    }

    /// How far a partition's batch got. `settled`: dead-lettered or taken over by another
    /// consumer, which stays so even when a batch scope's failure makes the batch run again.
    private final class PartitionProgress: Sendable {
        private let state = Mutex<(done: Int, acknowledged: [StreamEntryID], settled: Set<StreamEntryID>)>((0, [], []))

        var done: Int { state.withLock { $0.done } }
        var acknowledged: [StreamEntryID] { state.withLock { $0.acknowledged } }
        func isSettled(_ id: StreamEntryID) -> Bool { state.withLock { $0.settled.contains(id) } }
        func passSettled() { state.withLock { $0.done += 1 } }

        func record(_ id: StreamEntryID, _ outcome: Outcome) {
            state.withLock {
                $0.done += 1
                switch outcome {
                case .acknowledge: $0.acknowledged.append(id)
                case .deadLettered, .leavePending: $0.settled.insert(id)
                }
            }
        }

        /// A batch scope failed and applied none of its effects: its entries are all handled again.
        func restart() { state.withLock { $0.done = 0; $0.acknowledged = [] } }
    }

    /// Handles each stream's entries in order, the streams concurrently, and adds what was handled
    /// to `handled`. The acknowledgements are not sent here: they go out ahead of the next read in
    /// its round trip (one round trip per batch instead of two, and none per stream). A stream
    /// whose handling failed still has the entries handled before the failure acknowledged, unless
    /// a batch scope failed (it applied none of its batch's effects); the failure is rethrown.
    private func handle(_ batches: [StreamReadResult], fresh: Bool, control: RedisClient,
                        handled: inout [(stream: String, ids: [StreamEntryID])]) async throws {
        guard batches.contains(where: { !$0.entries.isEmpty }) else { return }
        // A small read is handled where the loop runs (the reader's thread: no thread hop, the
        // lowest latency); a large one on the shared pool, so partitions use every core.
        let entries = batches.reduce(0) { $0 + $1.entries.count }
        let executor: (any TaskExecutor)? = entries > Self.inlineEntries ? globalConcurrentExecutor : nil
        let outcomes = await withTaskGroup(of: PartitionOutcome.self) { group in
            for batch in batches where !batch.entries.isEmpty {
                group.addTask(executorPreference: executor) { await self.handlePartition(batch, fresh: fresh, control: control) }
            }
            var outcomes: [PartitionOutcome] = []
            for await outcome in group { outcomes.append(outcome) }
            return outcomes
        }
        for outcome in outcomes where !outcome.acknowledged.isEmpty { handled.append((outcome.stream, outcome.acknowledged)) }
        if !outageRereads.withLock({ $0.isEmpty }) {
            outageRereads.withLock { rereads in
                for outcome in outcomes { for id in outcome.acknowledged { rereads.removeValue(forKey: "\(outcome.stream) \(id)") } }
            }
        }
        if let failure = outcomes.first(where: { $0.failure != nil })?.failure { throw failure }
    }

    /// One partition's batch, inside the batch scope when there is one. Redis or Postgres out (the
    /// batch's publishes or writes, a delivery count): the partition waits for it, its entries
    /// pending, and goes on where it stopped; no delivery is used up.
    private func handlePartition(_ batch: StreamReadResult, fresh: Bool, control: RedisClient) async -> PartitionOutcome {
        let progress = PartitionProgress()
        let scope = handlers.batchScope
        // A requeued entry is its origin partition's: the scope is the origin's.
        let partition = configuration.origin(ofRetryStream: batch.stream) ?? batch.stream
        var decision = ConsumerStateMachine.Batch(scoped: scope != nil)
        while true {
            do {
                if let scope {
                    try await scope(partition) { try await self.handleEntries(of: batch, fresh: fresh, control: control, progress: progress) }
                } else {
                    try await handleEntries(of: batch, fresh: fresh, control: control, progress: progress)
                }
                return PartitionOutcome(stream: batch.stream, acknowledged: progress.acknowledged, failure: nil)
            } catch {
                switch decisions.next(&decision, afterFailure: error.isDependencyOutage) {
                case .fail(let restart):
                    if restart { progress.restart() }
                    return PartitionOutcome(stream: batch.stream, acknowledged: progress.acknowledged, failure: error)
                case .waitOutOutage(let pause, let log, let restart):
                    if restart { progress.restart() }
                    let resume = await waitOutOutage(error, stream: batch.stream, entry: batch.entries.first?.id, pause: pause, log: log)
                    guard resume else { return PartitionOutcome(stream: batch.stream, acknowledged: progress.acknowledged, failure: nil) }
                }
            }
        }
    }

    /// The batch's entries not done yet, in order.
    private func handleEntries(of batch: StreamReadResult, fresh: Bool, control: RedisClient, progress: PartitionProgress) async throws {
        for entry in batch.entries.dropFirst(progress.done) {
            if progress.isSettled(entry.id) {
                progress.passSettled()
                continue
            }
            let deliveries = fresh ? 1 : try await deliveryCount(batch.stream, entry.id, control)
            let outcome = try await process(entry, stream: batch.stream, deliveries: deliveries, control: control)
            if case .leavePending = outcome, Self.stopping { return }
            progress.record(entry.id, outcome)
        }
    }

    // MARK: Handling an entry

    /// An entry ready for its handler.
    private struct PreparedMessage {
        var consumed: ConsumedMessage
        var handler: MessageHandlers.Handler
        var timer: Metrics.Timer
    }

    private enum Preparation {
        case ready(PreparedMessage)
        /// Not for a handler: deleted, of a type not handled, or undecodable (with the error).
        case refused(ConsumerStateMachine.EntryEvent, (any Error)?)
    }

    /// Handles one entry as the state machine decides: attempts, retries, outage waits, then an
    /// acknowledgement, a dead letter, or left pending.
    private func process(_ entry: StreamEntry, stream: String, deliveries: Int, control: RedisClient) async throws -> Outcome {
        var delivery = ConsumerStateMachine.Entry(deliveries: deliveries)
        let message: PreparedMessage
        switch prepare(entry, stream: stream, deliveries: deliveries) {
        case .ready(let prepared):
            message = prepared
        case .refused(let event, let error):
            return try await conclude(decisions.next(&delivery, after: event), entry, stream: stream, error: error, control: control) ?? .leavePending
        }
        var (event, error) = await attempt(message, deliveries: delivery.deliveries, stream: stream)
        while true {
            let action = decisions.next(&delivery, after: event)
            if let outcome = try await conclude(action, entry, stream: stream, error: error, control: control) { return outcome }
            switch action {
            case .retry(let pause):
                event = try await retry(entry, stream: stream, after: pause, control: control)
            case .waitOutOutage(let pause, let log):
                guard await waitOutOutage(error ?? CancellationError(), stream: stream, entry: entry.id, pause: pause, log: log) else {
                    event = .stopping
                    continue
                }
                (event, error) = await attempt(message, deliveries: delivery.deliveries, stream: stream)
            case .attempt:
                (event, error) = await attempt(message, deliveries: delivery.deliveries, stream: stream)
            case .acknowledge, .skip, .deadLetter, .leavePending:
                continue  // concluded above
            }
        }
    }

    private func prepare(_ entry: StreamEntry, stream: String, deliveries: Int) -> Preparation {
        // Deleted (trimmed) while pending: nothing to handle.
        guard let fields = entry.fields else { return .refused(.deleted, nil) }
        // A type this consumer does not handle is skipped before anything is decoded: most
        // consumers read streams that carry many types (every call event), and decoding the ones
        // they ignore was most of their work.
        if let type = fields.first(where: { $0.name == "type" })?.value, !handlers.handles(type) { return .refused(.notHandled, nil) }
        let consumed: ConsumedMessage
        do {
            let envelope = try EventEnvelope(fields: fields.map { EnvelopeField(name: $0.name, value: $0.value) })
            // A requeued entry is its origin's (its partition's state, its stream name), read elsewhere.
            consumed = ConsumedMessage(stream: configuration.origin(ofRetryStream: stream) ?? stream, entryID: entry.id, envelope: envelope,
                                       decoded: try registry.decode(envelope), deliveryCount: deliveries)
        } catch {
            return .refused(.undecodable, error)
        }
        guard let handler = handlers.handler(for: consumed.envelope.type) else { return .refused(.notHandled, nil) }
        return .ready(PreparedMessage(consumed: consumed, handler: handler, timer: metrics.handlerTimer(consumed.envelope.type)))
    }

    /// One call of the handler: what happened, and the error it threw.
    private func attempt(_ message: PreparedMessage, deliveries: Int, stream: String) async -> (ConsumerStateMachine.EntryEvent, (any Error)?) {
        var consumed = message.consumed
        consumed.deliveryCount = deliveries
        do {
            let start = ContinuousClock.now
            try await message.handler(consumed)
            message.timer.record(since: start)
            state.withLock { $0.handled += 1 }
            metrics.handled.increment()
            return (.handled, nil)
        } catch where error.isDependencyOutage {
            return (.outage, error)
        } catch {
            state.withLock { $0.failedAttempts += 1 }
            metrics.failed.increment()
            logger.info("handler failed", metadata: [
                "stream": "\(stream)", "entry": "\(consumed.entryID)", "type": "\(consumed.envelope.type)",
                "tenant": "\(consumed.envelope.tenantID)", "delivery": "\(deliveries)", "error": "\(error)",
            ])
            return (.failed, error)
        }
    }

    /// After the retry's pause, re-claims the entry: Redis counts the delivery; if another
    /// consumer took it over meanwhile, it is theirs now.
    private func retry(_ entry: StreamEntry, stream: String, after pause: ConsumerStateMachine.Pause, control: RedisClient) async throws -> ConsumerStateMachine.EntryEvent {
        guard await self.pause(for: pause.duration) else { return .stopping }
        let reclaimed = try await control.execute(.xclaim(stream, group: configuration.group, consumer: configuration.consumer, minIdle: .zero, ids: [entry.id]))
        guard !reclaimed.isEmpty else { return .takenOver }
        return .reclaimed(deliveries: try await deliveryCount(stream, entry.id, control))
    }

    /// Carries out an action that ends the entry's handling (`nil` for one that does not).
    private func conclude(_ action: ConsumerStateMachine.EntryAction, _ entry: StreamEntry, stream: String, error: (any Error)?,
                          control: RedisClient) async throws -> Outcome? {
        switch action {
        case .acknowledge:
            return .acknowledge
        case .skip:
            state.withLock { $0.skipped += 1 }
            return .acknowledge
        case .deadLetter(let reason, let attempts):
            try await deadLetter(entry, fields: entry.fields ?? [], stream: stream, reason: reason, error: error.map { "\($0)" } ?? reason,
                                 attempts: attempts, control: control)
            return .deadLettered
        case .leavePending:
            return .leavePending
        case .retry, .waitOutOutage, .attempt:
            return nil
        }
    }

    // MARK: Dead letters

    private static let deadLetterScript = RedisScript("""
        local id = redis.call('XADD', KEYS[2], '*', unpack(ARGV, 3))
        redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
        return id
        """)

    /// Moves an entry to its origin's dead-letter stream and acknowledges it where it was read (its
    /// origin, or the group's requeue stream, whose entries name their origin id).
    private func deadLetter(_ entry: StreamEntry, fields: [StreamField], stream: String, reason: String, error: String, attempts: Int, control: RedisClient) async throws {
        var arguments: [RESPArgument] = [.string(configuration.group), .string(entry.id.description)]
        let origin = configuration.origin(ofRetryStream: stream) ?? stream
        let originID = origin == stream ? entry.id.description : entry[DeadLetters.originIDField] ?? entry.id.description
        let metadata: [(String, String)] = [
            ("dlq.reason", reason), ("dlq.error", String(error.prefix(2000))), ("dlq.attempts", String(attempts)),
            ("dlq.origin_stream", origin), ("dlq.origin_id", originID), ("dlq.group", configuration.group),
            ("dlq.consumer", configuration.consumer), ("dlq.time", Timestamp.now.rfc3339),
        ]
        for (name, value) in metadata { arguments += [.string(name), .string(value)] }
        for field in fields where field.name != DeadLetters.originIDField { arguments += [.string(field.name), .bytes(field.value)] }
        _ = try await Self.deadLetterScript.run(on: control, keys: [stream, configuration.deadLetterStream(of: origin)], arguments: arguments)
        _ = outageRereads.withLock { $0.removeValue(forKey: "\(stream) \(entry.id)") }
        state.withLock { $0.deadLettered += 1 }
        metrics.deadLettered.increment()
        logger.warning("entry dead-lettered", metadata: ["stream": "\(stream)", "entry": "\(entry.id)", "reason": "\(reason)"])
    }

    // MARK: Between reads: claims and requeues

    /// Carries out housekeeping on `streams` (partitions held), with no read outstanding.
    private func perform(_ work: ConsumerStateMachine.Housekeeping, on streams: [String], _ session: Session) async throws {
        switch work {
        case .claimIdle(let minIdle):
            for stream in streams { try await claim(stream, idleAtLeast: minIdle, session) }
        case .handleRequeued:
            try await handleRequeued(in: streams, session)
        }
    }

    /// Handles what an operator requeued for this group (``DeadLetters/requeue(_:ids:maxRequeues:force:)``)
    /// on the partitions it holds: each partition's requeue stream, when it exists, own pending
    /// entries first (a crash mid-handling), then new ones. Called between reads, like the claims,
    /// so a requeued entry is never handled beside its partition's batch.
    private func handleRequeued(in streams: [String], _ session: Session) async throws {
        let control = session.control
        let candidates = streams.map(configuration.retryStream(of:))
        guard !candidates.isEmpty else { return }
        let exists = try await control.send(candidates.map { RESPCommand("EXISTS", .string($0)) })
        let present = zip(candidates, exists).filter { $0.1.int == 1 }.map(\.0)
        guard !present.isEmpty else { return }
        for fresh in [false, true] {
            while true {
                let position: GroupReadPosition = fresh ? .newEntries : .pending(after: .zero)
                let batches: [StreamReadResult]
                do {
                    batches = try await control.readGroup(group: configuration.group, consumer: configuration.consumer,
                                                          streams: present.map { ($0, position) }, count: configuration.batchSize, block: nil)
                } catch let error as RedisError where error.serverCode == "NOGROUP" {
                    return  // deleted meanwhile; the next requeue creates it again
                }
                try await handleAcknowledgingAtOnce(batches, fresh: fresh, session)
                // Own pending entries are read once (those left pending stay so until the next pass).
                if !fresh || !batches.contains(where: { $0.entries.count >= configuration.batchSize }) || Self.stopping { break }
            }
        }
    }

    /// Claims (XAUTOCLAIM) and handles every entry of `stream` pending at least `minIdle`: at zero,
    /// a partition just leased (a previous owner's unfinished work, older than anything new); at
    /// ``ConsumerConfiguration/claimIdle``, entries of other (presumably dead) consumers.
    private func claim(_ stream: String, idleAtLeast minIdle: Duration, _ session: Session) async throws {
        var start = StreamEntryID.zero
        repeat {
            let result: AutoClaimResult
            do {
                result = try await session.control.execute(.xautoclaim(stream, group: configuration.group, consumer: configuration.consumer,
                                                                        minIdle: minIdle, start: start, count: configuration.batchSize))
            } catch let error as RedisError where error.serverCode == "NOGROUP" {
                try await ensureGroups(session.control)
                return
            }
            if !result.entries.isEmpty {
                state.withLock { $0.claimed += result.entries.count }
                metrics.claimed.increment(by: result.entries.count)
                logger.info("claimed pending entries", metadata: ["stream": "\(stream)", "count": "\(result.entries.count)"])
                try await handleAcknowledgingAtOnce([StreamReadResult(stream: stream, entries: result.entries)], fresh: false, session)
            }
            start = result.nextStart
        } while start != .zero
    }

    /// Handles entries read outside the reader (claims, requeues) and acknowledges them at once
    /// (also those handled before a failure).
    private func handleAcknowledgingAtOnce(_ batches: [StreamReadResult], fresh: Bool, _ session: Session) async throws {
        var handled: [(stream: String, ids: [StreamEntryID])] = []
        do {
            try await handleRenewing(batches, fresh: fresh, session, handled: &handled)
        } catch {
            try? await session.control.acknowledge(group: configuration.group, handled)
            throw error
        }
        try await session.control.acknowledge(group: configuration.group, handled)
    }
}
