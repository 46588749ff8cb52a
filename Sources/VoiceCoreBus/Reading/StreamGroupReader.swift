import Foundation
import Logging
import VoiceCoreExecutors
import VoiceCoreRedis

/// Reads a set of partitions (streams) as one member of a consumer group: the one stream-reading
/// runtime under both the ``ConsumerGroupRunner`` and the projector workers.
///
/// - Partitions: the caller owns them (partition leases for a consumer group, advisory locks for a
///   projector) and tells the reader which ones it holds (``own(_:)``); every read covers them all
///   in one `XREADGROUP`, and on a Redis Cluster each slot's partitions are read from the node
///   that owns them (see `RedisClient.readGroup`).
/// - Recovery: after a restart or a failure, ``readOwnPendingAgain(of:afterOutage:)`` makes the
///   next reads return this consumer's own pending entries (`XREADGROUP … 0`, in order, page by
///   page) before any new one (`>`). ``Read/afterOutage`` tells whether those re-reads were caused
///   by an outage (Redis counts them as deliveries; they are not the entries' fault).
/// - Acknowledgements: what was handled is acknowledged ahead of the next read, in its round trip
///   (``acknowledgeWithNextRead(_:)``): Redis applies them first, one round trip per batch.
/// - NOACK (``Configuration/noAck``): entries delivered are not added to the pending list, for a
///   reader whose progress lives elsewhere (the projector's checkpoints): no XACK afterwards, and
///   Redis writes no `XCLAIM` per entry to its AOF.
/// - Read-ahead (``startReadAhead(after:unless:)``): after a read of more than
///   ``Configuration/readAheadAfter`` new entries, the next read is sent (not blocking) before the
///   batch is handled, so Redis builds the next reply while the handlers run. The caller collects it
///   (``collectReadAhead()``) before its partitions change hands, so no read lands after another
///   member took a partition; entries read ahead for a partition given back are dropped (a NOACK
///   reader's next owner is delivered them again from its checkpoint).
/// - Outages: ``waitUntilAnswering(alsoPinging:pause:)`` waits, pausing, until Redis answers PING.
///
/// One loop drives a reader (it is not shared between tasks); its connection's thread is
/// ``taskExecutor``, where the loop may run to be resumed by a reply without a thread hop.
public final class StreamGroupReader {
    /// What a reader reads and how.
    public struct Configuration: Sendable {
        /// The consumer group.
        public var group: String
        /// This member's name in the group.
        public var consumer: String
        /// Entries read per stream per read.
        public var batchSize: Int
        /// How long a read of new entries waits for some.
        public var block: Duration
        /// The least time from the start of one read of new entries to the start of the next
        /// (``ConsumerConfiguration/readInterval``); `nil` reads again at once.
        public var readInterval: Duration?
        /// Reads with `NOACK`: nothing delivered becomes pending.
        public var noAck: Bool
        /// A read of more new entries than this has its successor read while it is handled.
        public var readAheadAfter: Int

        public init(group: String, consumer: String, batchSize: Int, block: Duration, readInterval: Duration? = nil,
                    noAck: Bool = false, readAheadAfter: Int = 0) {
            self.group = group
            self.consumer = consumer
            self.batchSize = max(1, batchSize)
            self.block = block
            self.readInterval = readInterval
            self.noAck = noAck
            self.readAheadAfter = readAheadAfter
        }
    }

    /// What one read returned.
    public struct Read: Sendable {
        /// Per stream, its entries in order.
        public var batches: [StreamReadResult]
        /// Own pending entries read again (from `0`), not new ones.
        public var ownPending: Bool
        /// Own pending entries read again because of an outage.
        public var afterOutage: Bool

        /// Entries in the read.
        public var entryCount: Int { batches.reduce(0) { $0 + $1.entries.count } }
        /// Whether the read returned any entry.
        public var hasEntries: Bool { batches.contains { !$0.entries.isEmpty } }
    }

    public let configuration: Configuration
    let connection: RedisClient
    /// The streams of the partitions held, in read order.
    public private(set) var owned: [String] = []
    /// Streams whose own pending entries are still to be read again, and after which entry.
    private var pendingAfter: [String: StreamEntryID] = [:]
    /// The pending entries being read again are there because of an outage.
    private var rereadingAfterOutage = false
    /// Handled entries whose acknowledgements go out ahead of the next read.
    private var unacknowledged: [(stream: String, ids: [StreamEntryID])] = []
    private var readAhead: Task<[StreamReadResult], any Error>?
    /// When the last read of new entries started (``Configuration/readInterval``).
    private var lastRead: ContinuousClock.Instant?

    init(connection: RedisClient, configuration: Configuration) {
        self.connection = connection
        self.configuration = configuration
    }

    /// Connects a reader with its own connection (named `clientName` in `CLIENT LIST`).
    public static func connect(_ redis: RedisConfiguration, clientName: String, configuration: Configuration,
                               logger: Logger) async throws -> StreamGroupReader {
        var redis = redis
        redis.clientName = clientName.replacingOccurrences(of: " ", with: "_")
        return StreamGroupReader(connection: try await RedisClient.connect(redis, logger: logger), configuration: configuration)
    }

    /// The thread of the reader's connection: a loop that runs there is resumed by a reply
    /// without a thread hop.
    public var taskExecutor: any TaskExecutor { connection.taskExecutor }

    // MARK: Partitions and positions

    /// The streams of the partitions held now, in read order. Call it with no read ahead
    /// outstanding (``collectReadAhead()`` first).
    public func own(_ streams: [String]) {
        owned = streams
    }

    /// The next reads return the own pending entries of `streams` (those held, as they are held)
    /// from the first, before any new entry: after a restart, or when acknowledgements may not
    /// have reached Redis. `afterOutage`: an outage is why (see ``Read/afterOutage``).
    public func readOwnPendingAgain(of streams: [String], afterOutage: Bool) {
        for stream in streams { pendingAfter[stream] = .zero }
        if afterOutage { rereadingAfterOutage = true }
    }

    /// Creates the group on `stream` (and the stream) delivering after `start`, or moves an
    /// existing group there (`XGROUP SETID`). A NOACK reader then acknowledges what an earlier
    /// reader of the group (one that acknowledged) left pending at or below it, so it does not
    /// linger in the group.
    public func moveGroup(on stream: String, after checkpoint: StreamEntryID?) async throws {
        let start: GroupStart = checkpoint.map { .after($0) } ?? .beginning
        do {
            try await connection.execute(.xgroupCreate(stream, group: configuration.group, start: start, makeStream: true))
        } catch let error as RedisError where error.serverCode == "BUSYGROUP" {
            try await connection.execute(.xgroupSetID(stream, group: configuration.group, start: start))
        }
        guard let checkpoint else { return }
        while true {
            let done = try await connection.execute(.xpending(stream, group: configuration.group, from: .zero, to: checkpoint, count: 1000))
            guard !done.isEmpty else { break }
            _ = try await connection.execute(.xack(stream, group: configuration.group, ids: done.map(\.id)))
        }
    }

    // MARK: Reading

    /// Reads the partitions held: the read collected ahead when it has entries of streams still
    /// held, else own pending entries still to be read again, else new entries (blocking up to
    /// ``Configuration/block``, spaced by ``Configuration/readInterval``). Sends the
    /// acknowledgements held ahead of it.
    public func read(continuing ahead: Read? = nil) async throws -> Read {
        if let ahead {
            let held = Set(owned)
            let batches = ahead.batches.filter { held.contains($0.stream) && !$0.entries.isEmpty }
            if !batches.isEmpty { return Read(batches: batches, ownPending: false, afterOutage: false) }
        }
        let pending = pendingAfter.filter { owned.contains($0.key) }
        if !pending.isEmpty { return try await readOwnPending(pending) }
        return try await readNew()
    }

    private func readOwnPending(_ pending: [String: StreamEntryID]) async throws -> Read {
        let batches = try await readGroup(pending.map { ($0.key, GroupReadPosition.pending(after: $0.value)) }, block: nil)
        for stream in pending.keys {
            // Read page by page: on from the last entry returned, done with a stream that returned none.
            pendingAfter[stream] = batches.first(where: { $0.stream == stream })?.entries.last?.id
        }
        return Read(batches: batches, ownPending: true, afterOutage: rereadingAfterOutage)
    }

    private func readNew() async throws -> Read {
        if let interval = configuration.readInterval, let last = lastRead, ContinuousClock.now - last < interval {
            try await Task.sleep(until: last + interval)
        }
        lastRead = ContinuousClock.now
        let batches = try await readGroup(owned.map { ($0, GroupReadPosition.newEntries) }, block: configuration.block)
        rereadingAfterOutage = false
        return Read(batches: batches, ownPending: false, afterOutage: false)
    }

    private func readGroup(_ streams: [(key: String, position: GroupReadPosition)], block: Duration?) async throws -> [StreamReadResult] {
        let batches = try await connection.readGroup(group: configuration.group, consumer: configuration.consumer, streams: streams,
                                                     count: configuration.batchSize, block: block, noAck: configuration.noAck,
                                                     acknowledging: unacknowledged)
        unacknowledged = []
        return batches
    }

    // MARK: Acknowledging

    /// Entries handled: acknowledged ahead of the next read, in its round trip.
    public func acknowledgeWithNextRead(_ handled: [(stream: String, ids: [StreamEntryID])]) {
        unacknowledged += handled.filter { !$0.ids.isEmpty }
    }

    /// Sends the acknowledgements held now, on `connection` (before partitions may change hands,
    /// so the next holder does not take over entries already handled, and at the end).
    func flushAcknowledgements(on connection: RedisClient) async throws {
        try await connection.acknowledge(group: configuration.group, unacknowledged)
        unacknowledged = []
    }

    // MARK: Reading ahead

    /// After a read of more than ``Configuration/readAheadAfter`` new entries, sends the next read
    /// of new entries (not blocking, carrying the acknowledgements held) before the batch is
    /// handled. Not after own pending entries, and not when a lease check is due: partitions change
    /// hands only with no read outstanding. Entries are still handled batch after batch, so each
    /// partition keeps its order.
    public func startReadAhead(after read: Read, unless somethingDue: Bool = false) {
        guard !somethingDue, !read.ownPending, read.entryCount > configuration.readAheadAfter else { return }
        let acknowledged = unacknowledged
        unacknowledged = []
        let connection = self.connection, configuration = self.configuration
        let streams = owned.map { ($0, GroupReadPosition.newEntries) }
        readAhead = Task(executorPreference: connection.taskExecutor) {
            try await connection.readGroup(group: configuration.group, consumer: configuration.consumer, streams: streams,
                                           count: configuration.batchSize, block: nil, noAck: configuration.noAck,
                                           acknowledging: acknowledged)
        }
    }

    /// Waits for the read ahead, if one is outstanding; `nil` when none is.
    /// Whether a read ahead is outstanding (started, not yet collected or dropped).
    public var isReadingAhead: Bool { readAhead != nil }

    public func collectReadAhead() async throws -> Read? {
        guard let task = readAhead else { return nil }
        readAhead = nil
        return Read(batches: try await task.value, ownPending: false, afterOutage: false)
    }

    /// Waits for the read ahead, if one is outstanding, and drops what it read (its entries are
    /// read again: own pending ones by this consumer, a NOACK reader's from its checkpoint).
    public func dropReadAhead() async {
        _ = try? await readAhead?.value
        readAhead = nil
    }

    // MARK: Outages

    /// Waits until Redis answers PING on this reader's connection and on `others` (connections
    /// reconnect by themselves; `LOADING` after a restart answers but does not serve yet, so PING
    /// decides). `pause` sleeps after each failed try (the count of failures so far) and returns
    /// `false` to stop waiting (shutdown).
    func waitUntilAnswering(alsoPinging others: [RedisClient], pause: (Int) async -> Bool) async {
        var failures = 0
        while true {
            do {
                _ = try await connection.send("PING")
                for other in others { _ = try await other.send("PING") }
                return
            } catch {
                failures += 1
                guard await pause(failures) else { return }
            }
        }
    }

    /// Closes the reader's connection.
    public func close() async {
        await connection.close()
    }
}
