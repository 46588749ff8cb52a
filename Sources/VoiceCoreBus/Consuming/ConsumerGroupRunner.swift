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
///   (a backlog drains with Redis and the handlers working at once; see `ReadAhead`).
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
        self.redisConfiguration = redis
        self.configuration = configuration
        self.handlers = handlers
        self.registry = registry
        var logger = logger
        logger[metadataKey: "group"] = "\(configuration.group)"
        logger[metadataKey: "consumer"] = "\(configuration.consumer)"
        self.logger = logger
    }

    public func run() async throws {
        var readerConfiguration = redisConfiguration
        readerConfiguration.clientName = "vc-consumer:\(configuration.group):\(configuration.consumer):reader".replacingOccurrences(of: " ", with: "_")
        var controlConfiguration = redisConfiguration
        controlConfiguration.clientName = "vc-consumer:\(configuration.group):\(configuration.consumer):control".replacingOccurrences(of: " ", with: "_")
        let reader = try await RedisClient.connect(readerConfiguration, logger: logger)
        let control = try await RedisClient.connect(controlConfiguration, logger: logger)
        let stopping = Mutex(false)
        try await ensureGroups(control)
        logger.info("consumer started", metadata: ["streams": "\(configuration.streams.count)"])

        let leases = configuration.leaseTTL.map {
            PartitionLeases(group: configuration.group, consumer: configuration.consumer, streams: configuration.streams, ttl: $0)
        }
        var held: Set<String> = leases == nil ? Set(configuration.streams) : []

        // The loop runs on the reader connection's thread: a read's reply resumes it without a
        // thread hop, and the partitions' handling starts there (handlers await their own
        // connections as usual; nothing here blocks the thread except the read it waits for).
        try await withTaskExecutorPreference(reader.taskExecutor) {
        try await withGracefulShutdownHandler {
            // Own pending entries first: they were delivered before a restart and never acked.
            var position = Dictionary(uniqueKeysWithValues: configuration.streams.map { ($0, StreamEntryID.zero) })
            var lastClaim = ContinuousClock.now
            var lastLeaseCheck: ContinuousClock.Instant?
            // Entries handled but not yet acknowledged: their XACKs go out ahead of the next read,
            // in its round trip (see `handle`).
            var unacknowledged: [(stream: String, ids: [StreamEntryID])] = []
            // A large batch's successor is read while it is handled (see `ReadAhead`).
            var readAhead: ReadAhead?
            // When the last blocking read of new entries started (`readInterval`).
            var lastRead: ContinuousClock.Instant?
            // The own pending entries are being read again because of an outage (`outageRereads`).
            var rereadingAfterOutage = false
            while !stopping.withLock({ $0 }) && !Task.isCancelled {
                var batches: [StreamReadResult] = []
                var fresh = true
                var readable: [String] = []
                if let ahead = readAhead {
                    readAhead = nil
                    do {
                        batches = try await ahead.task.value
                        readable = ahead.streams
                        // A lease check is due but waits for the batch in hand (partitions change
                        // hands only with none): renew the leases meanwhile, as the check would.
                        if let leases, !batches.isEmpty, lastLeaseCheck.map({ ContinuousClock.now - $0 >= leases.ttl / 3 }) ?? true {
                            try await leases.renew(held, on: control)
                        }
                    } catch let error as RedisError {
                        // Its acknowledgements may not have reached Redis: read own pending entries again.
                        if try await recover(from: error, reader: reader, control: control) { rereadingAfterOutage = true }
                        for stream in configuration.streams { position[stream] = .zero }
                        continue
                    }
                }
                if !batches.contains(where: { !$0.entries.isEmpty }) {
                    if let leases, lastLeaseCheck.map({ ContinuousClock.now - $0 >= leases.ttl / 3 }) ?? true {
                        lastLeaseCheck = ContinuousClock.now
                        do {
                            // Acknowledge before a partition may change hands, so its next holder
                            // does not take over entries this consumer has already handled.
                            try await acknowledge(&unacknowledged, control)
                            let (nowHeld, acquired) = try await leases.maintain(holding: held, on: control)
                            held = nowHeld
                            for stream in acquired {
                                await handlers.acquired?(stream)
                                try await takeOver(stream, leases: leases, held: held, control)
                            }
                        } catch let error as RedisError {
                            try await recover(from: error, reader: reader, control: control)
                            continue
                        }
                    }
                    let history = position.filter { held.contains($0.key) }
                    let readingHistory = !history.isEmpty
                    readable = configuration.streams.filter { held.contains($0) }
                    if readable.isEmpty {
                        // Every partition is leased to other members: wait for a rebalance.
                        try await Task.sleep(for: min(configuration.block, (leases?.ttl ?? configuration.block) / 3))
                        continue
                    }
                    let streams: [(key: String, position: GroupReadPosition)] = readingHistory
                        ? history.map { ($0.key, .pending(after: $0.value)) }
                        : readable.map { ($0, .newEntries) }
                    if !readingHistory, let interval = configuration.readInterval, let last = lastRead, ContinuousClock.now - last < interval {
                        try await Task.sleep(until: last + interval)
                    }
                    if !readingHistory { lastRead = ContinuousClock.now }
                    do {
                        batches = try await reader.readGroup(
                            group: configuration.group, consumer: configuration.consumer, streams: streams,
                            count: configuration.batchSize, block: readingHistory ? nil : configuration.block,
                            acknowledging: unacknowledged)
                        unacknowledged = []
                    } catch let error as RedisError {
                        // On a cluster, the partitions of other nodes may have delivered entries before
                        // this failure: they are pending to this consumer, so read its pending entries again.
                        if try await recover(from: error, reader: reader, control: control) { rereadingAfterOutage = true }
                        for stream in configuration.streams { position[stream] = .zero }
                        continue
                    }
                    if readingHistory && rereadingAfterOutage {
                        outageRereads.withLock { rereads in
                            for batch in batches { for entry in batch.entries { rereads["\(batch.stream) \(entry.id)", default: 0] += 1 } }
                        }
                    }
                    if !readingHistory { rereadingAfterOutage = false }
                    if readingHistory {
                        for (stream, _) in history {
                            if let last = batches.first(where: { $0.stream == stream })?.entries.last?.id { position[stream] = last } else { position[stream] = nil }
                        }
                    }
                    fresh = !readingHistory
                }
                do {
                    if fresh {
                        let leaseCheckDue = leases.map { leases in lastLeaseCheck.map { ContinuousClock.now - $0 >= leases.ttl / 3 } ?? true } ?? false
                        readAhead = startReadAhead(after: batches, streams: readable, reader: reader, leaseCheckDue: leaseCheckDue, acknowledging: &unacknowledged)
                    }
                    try await handleRenewing(batches, fresh: fresh, leases: leases, held: held, control: control, handled: &unacknowledged)
                    if ContinuousClock.now - lastClaim >= configuration.claimInterval {
                        lastClaim = ContinuousClock.now
                        try await claimAbandoned(in: configuration.streams.filter { held.contains($0) }, leases: leases, held: held, control)
                        try await handleRequeued(in: configuration.streams.filter { held.contains($0) }, leases: leases, held: held, control)
                    }
                } catch {
                    // An acknowledgement or dead letter did not reach Redis: those entries are still
                    // pending to this consumer, so read its own pending entries again after recovering
                    // (what was read ahead is among them, and comes back in order).
                    _ = try? await readAhead?.task.value
                    readAhead = nil
                    if try await recover(from: error, reader: reader, control: control) { rereadingAfterOutage = true }
                    for stream in configuration.streams { position[stream] = .zero }
                }
            }
            // Entries read ahead are delivered already: handled too, so the consumer stops with
            // nothing of its own pending.
            if let ahead = readAhead, let batches = try? await ahead.task.value {
                do {
                    try await handleRenewing(batches, fresh: true, leases: leases, held: held, control: control, handled: &unacknowledged)
                } catch {
                    logger.warning("could not handle the entries read ahead; they stay pending and are handled again", metadata: ["error": "\(error)"])
                }
            }
            // What was handled last is acknowledged before the consumer stops.
            do {
                try await acknowledge(&unacknowledged, control)
            } catch {
                logger.warning("could not acknowledge the last handled entries; they stay pending and are handled again",
                               metadata: ["error": "\(error)"])
            }
        } onGracefulShutdown: {
            stopping.withLock { $0 = true }
        }
        }
        if let leases { await leases.releaseAll(held, on: control) }
        logger.info("consumer stopped", metadata: ["handled": "\(statistics.handled)"])
    }

    // MARK: Reading ahead

    /// The read of the batch after a large one, sent before that one is handled: Redis builds the
    /// next reply (and applies the acknowledgements it carries) while the handlers run, instead of
    /// each waiting for the other. Only after a read of more than ``inlineEntries`` (a backlog;
    /// a small read is the live tail, where an extra read would only cost round trips), never
    /// while reading own pending entries, and never when a lease check is due: partitions change
    /// hands only with no read outstanding. Entries are still handled batch after batch, so each
    /// partition keeps its order. The read does not block: when it finds nothing, the loop goes
    /// back to its blocking read.
    private struct ReadAhead {
        var task: Task<[StreamReadResult], any Error>
        var streams: [String]
    }

    private func startReadAhead(after batches: [StreamReadResult], streams: [String], reader: RedisClient, leaseCheckDue: Bool,
                                acknowledging unacknowledged: inout [(stream: String, ids: [StreamEntryID])]) -> ReadAhead? {
        guard !leaseCheckDue, batches.reduce(0, { $0 + $1.entries.count }) > Self.inlineEntries else { return nil }
        let acknowledged = unacknowledged
        unacknowledged = []
        let group = configuration.group, consumer = configuration.consumer, count = configuration.batchSize
        let task = Task(executorPreference: reader.taskExecutor) {
            try await reader.readGroup(group: group, consumer: consumer, streams: streams.map { ($0, GroupReadPosition.newEntries) },
                                       count: count, block: nil, acknowledging: acknowledged)
        }
        return ReadAhead(task: task, streams: streams)
    }

    /// Handles a read; with leases, renews them meanwhile (a batch may outlast the lease TTL), so
    /// no other member takes a partition in the middle of it.
    private func handleRenewing(_ batches: [StreamReadResult], fresh: Bool, leases: PartitionLeases?, held: Set<String>, control: RedisClient,
                                handled: inout [(stream: String, ids: [StreamEntryID])]) async throws {
        guard let leases else {
            try await handle(batches, fresh: fresh, control: control, handled: &handled)
            return
        }
        let renewal = Task { await leases.keepAlive(held, on: control) }
        defer { renewal.cancel() }
        try await handle(batches, fresh: fresh, control: control, handled: &handled)
    }

    // MARK: Groups

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

    /// After a failed read, acknowledgement or batch: recreates a missing group, or waits until
    /// Redis answers both connections again (they reconnect by themselves; `LOADING` after a
    /// restart answers but does not serve yet, so PING decides). Returns at once on shutdown.
    /// - Returns: whether it waited out an outage (the pending entries read next are re-reads).
    @discardableResult
    private func recover(from error: any Error, reader: RedisClient, control: RedisClient) async throws -> Bool {
        if let error = error as? RedisError, error.serverCode == "NOGROUP" {
            logger.warning("consumer group missing; creating it again", metadata: ["error": "\(error.message)"])
            do {
                try await ensureGroups(control)
                return false
            } catch {
                // Redis went away meanwhile: wait for it below, then the read creates it again.
            }
        }
        guard error.isDependencyOutage else {
            // Not an outage (a failure of the batch's own, already logged where it happened):
            // read the pending entries again after a pause, so a failure cannot spin.
            logger.warning("handling failed; reading the pending entries again", metadata: ["error": "\(error)"])
            _ = await pause(for: configuration.retryDelay)
            return false
        }
        logger.warning("Redis or Postgres unreachable; waiting for it with the entries pending", metadata: ["error": "\(error)"])
        await waitingOnOutage {
            var failures = 0
            while !Self.stopping {
                do {
                    _ = try await reader.send("PING")
                    _ = try await control.send("PING")
                    return
                } catch {
                    failures += 1
                    guard await pause(for: Self.outageBackoff.delay(afterFailures: failures)) else { return }
                }
            }
        }
        if !Self.stopping { logger.info("Redis answers again; reading the pending entries") }
        return true
    }

    /// How long a partition or reader waits between tries while a dependency is out.
    static let outageBackoff = RetryBackoff(initial: .milliseconds(50), maximum: .seconds(1))

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

    // MARK: Handling

    private enum Outcome {
        case acknowledge
        case deadLettered
        /// Left pending (shutting down mid-retry, or the entry was taken over): not acked here.
        case leavePending
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
        let results = await withTaskGroup(of: (stream: String, ids: [StreamEntryID], failure: (any Error)?).self) { group in
            for batch in batches where !batch.entries.isEmpty {
                group.addTask(executorPreference: executor) {
                    // Entries done (handled, dead-lettered or skipped), and of those the ones to
                    // acknowledge; `settled`: dead-lettered or taken over by another consumer, which
                    // stays so even when a batch scope's failure makes the batch run again.
                    let progress = Mutex<(done: Int, acknowledged: [StreamEntryID], settled: Set<StreamEntryID>)>((0, [], []))
                    let body: @Sendable () async throws -> Void = {
                        for entry in batch.entries.dropFirst(progress.withLock { $0.done }) {
                            if progress.withLock({ $0.settled.contains(entry.id) }) {
                                progress.withLock { $0.done += 1 }
                                continue
                            }
                            let deliveries = fresh ? 1 : try await self.deliveryCount(batch.stream, entry.id, control)
                            let outcome = try await self.process(entry, stream: batch.stream, deliveries: deliveries, control: control)
                            if case .leavePending = outcome, Self.stopping { return }
                            progress.withLock {
                                $0.done += 1
                                switch outcome {
                                case .acknowledge: $0.acknowledged.append(entry.id)
                                case .deadLettered, .leavePending: $0.settled.insert(entry.id)
                                }
                            }
                        }
                    }
                    let scope = self.handlers.batchScope
                    var failures = 0
                    while true {
                        do {
                            if let scope { try await scope(self.configuration.origin(ofRetryStream: batch.stream) ?? batch.stream, body) } else { try await body() }
                            return (batch.stream, progress.withLock { $0.acknowledged }, nil)
                        } catch {
                            // A batch scope applied none of its effects: its entries are all handled again.
                            if scope != nil { progress.withLock { $0.done = 0; $0.acknowledged = [] } }
                            guard error.isDependencyOutage else { return (batch.stream, progress.withLock { $0.acknowledged }, error) }
                            // Redis or Postgres is out (the batch's publishes or writes, a delivery
                            // count): the partition waits for it, its entries pending, and goes on
                            // where it stopped; no delivery is used up.
                            failures += 1
                            let resume = await self.waitOutOutage(error, stream: batch.stream, entry: batch.entries.first?.id, failures: failures)
                            guard resume else { return (batch.stream, progress.withLock { $0.acknowledged }, nil) }
                        }
                    }
                }
            }
            var results: [(stream: String, ids: [StreamEntryID], failure: (any Error)?)] = []
            for await result in group { results.append(result) }
            return results
        }
        for result in results where !result.ids.isEmpty { handled.append((result.stream, result.ids)) }
        if !outageRereads.withLock({ $0.isEmpty }) {
            outageRereads.withLock { rereads in
                for result in results { for id in result.ids { rereads.removeValue(forKey: "\(result.stream) \(id)") } }
            }
        }
        if let failure = results.first(where: { $0.failure != nil })?.failure { throw failure }
    }

    /// Reads of up to this many entries are handled on the reader's thread.
    static let inlineEntries = 64

    /// Sends the acknowledgements still held (used before a lease check and at the end).
    private func acknowledge(_ unacknowledged: inout [(stream: String, ids: [StreamEntryID])], _ control: RedisClient) async throws {
        try await control.acknowledge(group: configuration.group, unacknowledged)
        unacknowledged = []
    }

    private func process(_ entry: StreamEntry, stream: String, deliveries: Int, control: RedisClient) async throws -> Outcome {
        guard let fields = entry.fields else {
            // Deleted (trimmed) while pending: nothing to handle.
            state.withLock { $0.skipped += 1 }
            return .acknowledge
        }
        // A type this consumer does not handle is skipped before anything is decoded: most
        // consumers read streams that carry many types (every call event), and decoding the ones
        // they ignore was most of their work.
        if let type = fields.first(where: { $0.name == "type" })?.value, !handlers.handles(type) {
            state.withLock { $0.skipped += 1 }
            return .acknowledge
        }
        let envelopeFields = fields.map { EnvelopeField(name: $0.name, value: $0.value) }
        let consumed: ConsumedMessage
        do {
            let envelope = try EventEnvelope(fields: envelopeFields)
            // A requeued entry is its origin's (its partition's state, its stream name), read elsewhere.
            consumed = ConsumedMessage(stream: configuration.origin(ofRetryStream: stream) ?? stream, entryID: entry.id, envelope: envelope,
                                       decoded: try registry.decode(envelope), deliveryCount: deliveries)
        } catch {
            try await deadLetter(entry, fields: fields, stream: stream, reason: "undecodable", error: "\(error)", attempts: deliveries, control: control)
            return .deadLettered
        }
        guard let handler = handlers.handler(for: consumed.envelope.type) else {
            state.withLock { $0.skipped += 1 }
            return .acknowledge
        }
        var attempt = consumed
        let timer = metrics.handlerTimer(consumed.envelope.type)
        var outageFailures = 0
        while true {
            do {
                let start = ContinuousClock.now
                try await handler(attempt)
                timer.record(since: start)
                state.withLock { $0.handled += 1 }
                metrics.handled.increment()
                return .acknowledge
            } catch where error.isDependencyOutage {
                // Not the message's fault: the same attempt again once the dependency answers,
                // no delivery used up (see the type's documentation).
                outageFailures += 1
                guard await waitOutOutage(error, stream: stream, entry: entry.id, failures: outageFailures) else { return .leavePending }
            } catch {
                state.withLock { $0.failedAttempts += 1 }
                metrics.failed.increment()
                logger.info("handler failed", metadata: [
                    "stream": "\(stream)", "entry": "\(entry.id)", "type": "\(consumed.envelope.type)",
                    "tenant": "\(consumed.envelope.tenantID)", "delivery": "\(attempt.deliveryCount)", "error": "\(error)",
                ])
                if attempt.deliveryCount >= configuration.maxDeliveries {
                    try await deadLetter(entry, fields: fields, stream: stream, reason: "handler failed \(attempt.deliveryCount) times", error: "\(error)", attempts: attempt.deliveryCount, control: control)
                    return .deadLettered
                }
                guard await pause(for: backoff(after: attempt.deliveryCount)) else { return .leavePending }
                // Re-claiming the entry makes Redis count the delivery; if another consumer took
                // it over meanwhile, it is theirs now.
                let reclaimed = try await control.execute(.xclaim(stream, group: configuration.group, consumer: configuration.consumer, minIdle: .zero, ids: [entry.id]))
                guard !reclaimed.isEmpty else { return .leavePending }
                attempt.deliveryCount = try await deliveryCount(stream, entry.id, control)
            }
        }
    }

    /// One pause of a partition waiting for Redis or Postgres: counted and logged (the first and
    /// every 50th), then a backoff; `false` when the consumer is stopping instead.
    private func waitOutOutage(_ error: any Error, stream: String, entry: StreamEntryID?, failures: Int) async -> Bool {
        state.withLock { $0.outageRetries += 1 }
        metrics.outageRetries.increment()
        if failures == 1 || failures % 50 == 0 {
            logger.warning("Redis or Postgres unreachable; the partition waits with its entry pending", metadata: [
                "stream": "\(stream)", "entry": "\(entry.map { "\($0)" } ?? "-")", "tries": "\(failures)", "error": "\(error)",
            ])
        }
        return await waitingOnOutage { await pause(for: Self.outageBackoff.delay(afterFailures: failures)) }
    }

    private func backoff(after deliveries: Int) -> Duration {
        RetryBackoff(initial: configuration.retryDelay, maximum: configuration.maxRetryDelay).delay(afterFailures: deliveries)
    }

    /// Deliveries of the entry as Redis counts them, less the re-reads an outage caused here.
    private func deliveryCount(_ stream: String, _ id: StreamEntryID, _ control: RedisClient) async throws -> Int {
        let rows = try await control.execute(.xpending(stream, group: configuration.group, from: id, to: id, count: 1))
        let rereads = outageRereads.withLock { $0["\(stream) \(id)"] ?? 0 }
        return max(1, (rows.first?.deliveryCount ?? 1) - rereads)
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

    // MARK: Requeued dead letters

    /// Handles what an operator requeued for this group (``DeadLetters/requeue(_:ids:maxRequeues:force:)``)
    /// on the partitions it holds: each partition's requeue stream, when it exists, own pending
    /// entries first (a crash mid-handling), then new ones. Called between reads, like the claims,
    /// so a requeued entry is never handled beside its partition's batch.
    private func handleRequeued(in streams: [String], leases: PartitionLeases?, held: Set<String>, _ control: RedisClient) async throws {
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
                var handled: [(stream: String, ids: [StreamEntryID])] = []
                do {
                    try await handleRenewing(batches, fresh: fresh, leases: leases, held: held, control: control, handled: &handled)
                } catch {
                    try? await acknowledge(&handled, control)
                    throw error
                }
                try await acknowledge(&handled, control)
                // Own pending entries are read once (those left pending stay so until the next pass).
                if !fresh || !batches.contains(where: { $0.entries.count >= configuration.batchSize }) || Self.stopping { break }
            }
        }
    }

    // MARK: Claims

    /// A stream newly leased: whatever is still pending in it (a previous owner's unfinished work)
    /// is older than anything new, so it is claimed and handled first, in order.
    private func takeOver(_ stream: String, leases: PartitionLeases?, held: Set<String>, _ control: RedisClient) async throws {
        try await claim(stream, idleAtLeast: .zero, leases: leases, held: held, control)
    }

    /// Entries pending longer than `claimIdle` at other (presumably dead) consumers.
    private func claimAbandoned(in streams: [String], leases: PartitionLeases?, held: Set<String>, _ control: RedisClient) async throws {
        for stream in streams { try await claim(stream, idleAtLeast: configuration.claimIdle, leases: leases, held: held, control) }
    }

    /// Claims (XAUTOCLAIM) and handles every entry of `stream` pending at least `minIdle`.
    private func claim(_ stream: String, idleAtLeast minIdle: Duration, leases: PartitionLeases?, held: Set<String>, _ control: RedisClient) async throws {
        var start = StreamEntryID.zero
        repeat {
            let result: AutoClaimResult
            do {
                result = try await control.execute(.xautoclaim(stream, group: configuration.group, consumer: configuration.consumer,
                                                                minIdle: minIdle, start: start, count: configuration.batchSize))
            } catch let error as RedisError where error.serverCode == "NOGROUP" {
                try await ensureGroups(control)
                return
            }
            if !result.entries.isEmpty {
                state.withLock { $0.claimed += result.entries.count }
                metrics.claimed.increment(by: result.entries.count)
                logger.info("claimed pending entries", metadata: ["stream": "\(stream)", "count": "\(result.entries.count)"])
                var handled: [(stream: String, ids: [StreamEntryID])] = []
                do {
                    try await handleRenewing([StreamReadResult(stream: stream, entries: result.entries)], fresh: false, leases: leases, held: held,
                                             control: control, handled: &handled)
                } catch {
                    try? await acknowledge(&handled, control)
                    throw error
                }
                try await acknowledge(&handled, control)
            }
            start = result.nextStart
        } while start != .zero
    }
}
