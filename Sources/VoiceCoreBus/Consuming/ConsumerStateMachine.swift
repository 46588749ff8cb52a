/// The decisions of a ``ConsumerGroupRunner`` as a value: given what happened to an entry, to a
/// partition's batch, to a read, or how much time has passed between reads, what to do next.
///
/// Every transition is a pure function of the machine's configuration and the state handed in;
/// the runner does the I/O (handlers, XACK, the dead-letter script, XCLAIM, sleeping) and reports
/// back. So the rules — success acknowledges; a failure is retried with backoff until
/// ``ConsumerConfiguration/maxDeliveries`` and then dead-lettered; an outage waits without using up
/// a delivery; idle entries of dead consumers are claimed and requeued ones handled every
/// ``ConsumerConfiguration/claimInterval`` — are tested without Redis.
///
/// ```swift
/// let machine = ConsumerStateMachine(configuration: configuration)
/// var entry = ConsumerStateMachine.Entry(deliveries: 1)
/// switch machine.next(&entry, after: .failed) {
/// case .retry(let pause): try await Task.sleep(for: pause.duration)
/// …
/// }
/// ```
public struct ConsumerStateMachine: Sendable, Hashable {
    /// Deliveries (counted by Redis) after which a failing entry is dead-lettered.
    public var maxDeliveries: Int
    /// Pauses between the attempts of a failing entry.
    public var retryBackoff: RetryBackoff
    /// Pauses between tries while Redis or Postgres does not answer.
    public var outageBackoff: RetryBackoff
    /// Entries pending this long at another consumer are claimed.
    public var claimIdle: Duration
    /// How often claims and requeued entries are looked for.
    public var claimInterval: Duration
    /// Partition leases' lifetime; `nil` when the consumer reads without leases.
    public var leaseTTL: Duration?

    /// How long a partition or reader waits between tries while a dependency is out.
    public static let defaultOutageBackoff = RetryBackoff(initial: .milliseconds(50), maximum: .seconds(1))

    public init(configuration: ConsumerConfiguration, outageBackoff: RetryBackoff = Self.defaultOutageBackoff) {
        maxDeliveries = configuration.maxDeliveries
        retryBackoff = RetryBackoff(initial: configuration.retryDelay, maximum: configuration.maxRetryDelay)
        self.outageBackoff = outageBackoff
        claimIdle = configuration.claimIdle
        claimInterval = configuration.claimInterval
        leaseTTL = configuration.leaseTTL
    }

    /// A pause before the next try: the `failures`-th of `backoff`.
    public struct Pause: Sendable, Hashable {
        public var backoff: RetryBackoff
        public var failures: Int

        public init(backoff: RetryBackoff, failures: Int) {
            self.backoff = backoff
            self.failures = failures
        }

        /// The pause's length, with the backoff's jitter.
        public var duration: Duration { backoff.delay(afterFailures: failures) }
    }

    // MARK: An entry

    /// One entry in the hands of the runner.
    public struct Entry: Sendable, Hashable {
        /// Deliveries of the entry to this group as Redis counts them, less re-reads an outage caused.
        public internal(set) var deliveries: Int
        /// Tries of the entry's handler that met an outage (its outage pauses grow with them).
        public internal(set) var outageFailures = 0

        public init(deliveries: Int) {
            self.deliveries = max(1, deliveries)
        }
    }

    /// What happened to an entry.
    public enum EntryEvent: Sendable, Hashable {
        /// Deleted (trimmed) while pending: no fields.
        case deleted
        /// Of a type this consumer has no handler for.
        case notHandled
        /// Of a handled type, but its envelope or payload cannot be decoded.
        case undecodable
        /// The handler succeeded.
        case handled
        /// The handler threw, not because of an outage.
        case failed
        /// The handler met an outage (``DependencyFailure/isOutage``): not the entry's fault.
        case outage
        /// A pause ended because the consumer is stopping.
        case stopping
        /// Re-claimed for its next attempt; Redis now counts `deliveries` (less outage re-reads).
        case reclaimed(deliveries: Int)
        /// The re-claim found the entry taken over by another consumer.
        case takenOver
    }

    /// What to do with an entry next.
    public enum EntryAction: Sendable, Hashable {
        /// Handled: acknowledge it with the next read.
        case acknowledge
        /// Nothing to handle: acknowledge it without handling (counted as skipped).
        case skip
        /// Move it to the dead-letter stream (acknowledging it at its origin).
        case deadLetter(reason: String, attempts: Int)
        /// Pause, then re-claim it (so Redis counts the delivery) and report the outcome.
        case retry(after: Pause)
        /// Pause with the entry pending, then try the same attempt again: no delivery is used up.
        /// `log`: the first and every 50th try is logged.
        case waitOutOutage(Pause, log: Bool)
        /// Call the handler again.
        case attempt
        /// Leave it pending, unacknowledged (stopping, or another consumer has it now).
        case leavePending
    }

    /// The transition of one entry.
    public func next(_ entry: inout Entry, after event: EntryEvent) -> EntryAction {
        switch event {
        case .deleted, .notHandled:
            return .skip
        case .undecodable:
            return .deadLetter(reason: "undecodable", attempts: entry.deliveries)
        case .handled:
            return .acknowledge
        case .failed:
            if entry.deliveries >= maxDeliveries {
                return .deadLetter(reason: "handler failed \(entry.deliveries) times", attempts: entry.deliveries)
            }
            return .retry(after: Pause(backoff: retryBackoff, failures: entry.deliveries))
        case .outage:
            entry.outageFailures += 1
            return .waitOutOutage(Pause(backoff: outageBackoff, failures: entry.outageFailures), log: Self.logs(entry.outageFailures))
        case .stopping, .takenOver:
            return .leavePending
        case .reclaimed(let deliveries):
            entry.deliveries = max(1, deliveries)
            return .attempt
        }
    }

    /// The deliveries to hand a handler: 1 for an entry read new; otherwise what Redis counts
    /// (`nil`: not pending any more, taken as 1) less the re-reads of own pending entries an outage
    /// caused here (not the entry's fault; a restart's re-read does count, so a message that
    /// crashes the process reaches its dead letter).
    public static func deliveries(new: Bool, countedByRedis: Int?, rereadsAfterOutage: Int) -> Int {
        new ? 1 : max(1, (countedByRedis ?? 1) - rereadsAfterOutage)
    }

    static func logs(_ failures: Int) -> Bool { failures == 1 || failures % 50 == 0 }

    // MARK: A partition's batch

    /// A partition's batch (its entries, in order, perhaps inside a batch scope) and its failures.
    public struct Batch: Sendable, Hashable {
        /// Whether a batch scope wraps it: a failed scope applied none of its effects.
        public var scoped: Bool
        /// Tries of the batch that met an outage.
        public internal(set) var outageFailures = 0

        public init(scoped: Bool) { self.scoped = scoped }
    }

    /// What to do after a partition's batch failed.
    public enum BatchAction: Sendable, Hashable {
        /// Wait for Redis or Postgres with the entries pending, then go on where it stopped (from
        /// the batch's first entry when `restart`: a batch scope applied none of them). No delivery
        /// is used up.
        case waitOutOutage(Pause, log: Bool, restart: Bool)
        /// Give up on the batch: report the failure (the runner reads its own pending entries again).
        /// When `restart`, none of its entries counts as handled.
        case fail(restart: Bool)
    }

    /// The transition of a partition's batch that threw (`outage`: the failure is an outage).
    public func next(_ batch: inout Batch, afterFailure outage: Bool) -> BatchAction {
        guard outage else { return .fail(restart: batch.scoped) }
        batch.outageFailures += 1
        return .waitOutOutage(Pause(backoff: outageBackoff, failures: batch.outageFailures), log: Self.logs(batch.outageFailures), restart: batch.scoped)
    }

    // MARK: A read

    /// Why a read, an acknowledgement or a batch failed.
    public enum ReadFailure: Sendable, Hashable {
        /// The consumer group is gone (stream deleted, Redis restarted empty): `NOGROUP`.
        case groupMissing
        /// Redis or Postgres does not answer.
        case outage
        /// Anything else (a batch's own failure, already logged where it happened).
        case other
    }

    /// How the runner recovers from a failed read, acknowledgement or batch.
    public enum Recovery: Sendable, Hashable {
        /// Create the groups again, then read on.
        case createGroups
        /// Wait until Redis answers on every connection, pausing by ``outageBackoff``; the own
        /// pending entries read next are re-reads that do not count toward a dead letter.
        case waitForRedis
        /// Pause, then read the pending entries again (a failure must not spin).
        case pause(Duration)
    }

    /// The recovery from a failure.
    public func recovery(from failure: ReadFailure) -> Recovery {
        switch failure {
        case .groupMissing: return .createGroups
        case .outage: return .waitForRedis
        case .other: return .pause(retryBackoff.initial)
        }
    }

    // MARK: Between reads

    /// When the housekeeping between reads last ran.
    public struct Schedule: Sendable, Hashable {
        public var lastClaim: ContinuousClock.Instant
        public var lastLeaseCheck: ContinuousClock.Instant?

        public init(startedAt start: ContinuousClock.Instant) { lastClaim = start }
    }

    /// Work done between reads, with no read outstanding.
    public enum Housekeeping: Sendable, Hashable {
        /// Claim and handle the entries pending at least this long at other consumers.
        case claimIdle(atLeast: Duration)
        /// Handle what an operator requeued for this group (`<stream>:retry:<group>`).
        case handleRequeued
    }

    /// The housekeeping due at `now` after a batch (claims, then requeues, every ``claimInterval``).
    ///
    /// Nothing is due while a read is outstanding (`readOutstanding`): XAUTOCLAIM takes entries
    /// idle long enough whoever holds them, this consumer included, so an entry read ahead while
    /// the batch before it waited out an outage would be claimed — delivered again, its delivery
    /// count raised — by its own consumer. The work waits for the next moment with none.
    public func housekeeping(_ schedule: inout Schedule, at now: ContinuousClock.Instant, readOutstanding: Bool = false) -> [Housekeeping] {
        guard !readOutstanding, housekeepingDue(schedule, at: now) else { return [] }
        schedule.lastClaim = now
        return [.claimIdle(atLeast: claimIdle), .handleRequeued]
    }

    /// Whether claims and requeues are due at `now` (every `claimInterval`): no read ahead is
    /// started then, so that they run right after the batch in hand.
    public func housekeepingDue(_ schedule: Schedule, at now: ContinuousClock.Instant) -> Bool {
        now - schedule.lastClaim >= claimInterval
    }

    /// The claim of a partition just leased: whatever is pending there, however idle, is older
    /// than anything new and is handled first.
    public var takeOver: Housekeeping { .claimIdle(atLeast: .zero) }

    /// Whether the leases are due for a check at `now` (every third of their lifetime): the check
    /// waits for a moment with no read outstanding (partitions change hands only then), so no read
    /// ahead is started when it is due.
    public func leaseCheckDue(_ schedule: Schedule, at now: ContinuousClock.Instant) -> Bool {
        guard let leaseTTL else { return false }
        return schedule.lastLeaseCheck.map { now - $0 >= leaseTTL / 3 } ?? true
    }
}
