import Foundation
import Logging
import VoiceCoreExecutors
import VoiceCoreRedis

/// Where an entry stands in the one order a ``StreamTail`` gives many streams: by entry id, ties
/// (equal ids in different streams) broken by stream name.
///
/// Written `<milliseconds>-<sequence>@<stream>` (`1765102833123-0@vc:{p03}:calls`): the SSE feed's
/// event id, so `Last-Event-ID` names a place in that order and "everything after it" is defined.
public struct TailPosition: Sendable, Hashable, Comparable, LosslessStringConvertible {
    public var entry: StreamEntryID
    public var stream: String

    public init(entry: StreamEntryID, stream: String) {
        self.entry = entry
        self.stream = stream
    }

    /// Parses `<milliseconds>-<sequence>@<stream>`; nil for anything else.
    public init?(_ text: String) {
        guard let at = text.firstIndex(of: "@"), let entry = StreamEntryID(String(text[..<at])) else { return nil }
        let stream = String(text[text.index(after: at)...])
        guard !stream.isEmpty, !stream.contains(where: { $0.isNewline || $0 == " " }) else { return nil }
        self.init(entry: entry, stream: stream)
    }

    public var description: String { "\(entry)@\(stream)" }

    public static func < (lhs: TailPosition, rhs: TailPosition) -> Bool {
        lhs.entry != rhs.entry ? lhs.entry < rhs.entry : lhs.stream < rhs.stream
    }

    /// The last place before every entry whose id is `entry` or later (no real entry has the
    /// largest sequence number, and no stream name is empty).
    static func justBefore(_ entry: StreamEntryID) -> TailPosition {
        TailPosition(entry: entry.predecessor, stream: "")
    }
}

extension StreamEntryID {
    /// The id right before this one (`0-0` stays `0-0`).
    var predecessor: StreamEntryID {
        if sequence > 0 { return StreamEntryID(milliseconds: milliseconds, sequence: sequence - 1) }
        if milliseconds == 0 { return .zero }
        return StreamEntryID(milliseconds: milliseconds - 1, sequence: .max)
    }
}

/// One entry read by a ``StreamTail``, with its place in the tail's order.
public struct TailEntry: Sendable {
    public var position: TailPosition
    public var entry: StreamEntry

    public init(position: TailPosition, entry: StreamEntry) {
        self.position = position
        self.entry = entry
    }
}

/// Follows many streams as they grow, as one sequence in one order: the shared reader under the
/// edge's live event feed. Plain `XREAD`, no consumer group: it keeps no state in Redis, and any
/// number of edges tail the same streams.
///
/// **Order.** Entries are delivered by ``TailPosition`` (entry id, then stream name), merged across
/// streams, and an entry is delivered only once no entry before it can still appear. On one Redis
/// server every `XADD *` takes its id from the server's clock, never below it: each read sends
/// `TIME` and then `XREAD` in one pipeline, so the read saw every entry whose id is below the time
/// `TIME` answered, and those are released; later ones wait for the next read (the one after a
/// blocking read that returned comes at once, after ``Configuration/settle``). A stream that filled
/// its `COUNT` may hold more entries right after the last returned: release stops there until the
/// next read. So "everything after position P" is well defined and the same for every reader, and a
/// client that saw P resumes from it with no gap (``entries(after:through:count:)``).
///
/// An entry whose id is below what was already released (the Redis host's clock stepped back, or a
/// writer chose its own ids) is delivered at once, out of order, and logged: late rather than lost.
///
/// **Outages.** A failed read is retried with the connection's backoff, from the same positions: an
/// entry written during or after the outage is delivered once Redis answers again. Only a single
/// Redis server is tailed; on a Redis Cluster each master has its own clock and a read cannot span
/// slots, so ``run(deliver:)`` refuses a cluster (see the edge guide).
///
/// ```swift
/// let tail = try await StreamTail.connect(redis, clientName: "vc-edge:feed",
///                                         configuration: .init(streams: naming.allEventStreams), logger: logger)
/// try await tail.run { entries, through in hub.publish(entries, through: through) }
/// ```
public final class StreamTail: Sendable {
    /// What a tail follows and how.
    public struct Configuration: Sendable {
        /// The streams followed.
        public var streams: [String]
        /// Entries read per stream per read (`COUNT`).
        public var count: Int
        /// How long a read waits for a new entry when nothing is held back.
        public var block: Duration
        /// The pause before reading the clock again while entries wait for it to pass their id.
        public var settle: Duration
        /// How long a read waits while only some of the streams are followed (see
        /// ``run(following:deliver:)``): how soon the tail asks again which streams to follow.
        public var recheck: Duration

        public init(streams: [String], count: Int = 256, block: Duration = .seconds(2), settle: Duration = .milliseconds(1),
                    recheck: Duration = .milliseconds(100)) {
            self.streams = streams
            self.count = max(1, count)
            self.block = block
            self.settle = settle
            self.recheck = recheck
        }
    }

    public let configuration: Configuration
    /// The connection the tail reads on (its blocking reads hold it).
    private let live: RedisClient
    /// The connection catch-up reads use, so they never wait behind a blocking read.
    private let history: RedisClient
    private let logger: Logger

    init(live: RedisClient, history: RedisClient, configuration: Configuration, logger: Logger) {
        self.live = live
        self.history = history
        self.configuration = configuration
        self.logger = logger
    }

    /// Connects a tail with two connections of its own (named `clientName` and `clientName:history`).
    public static func connect(_ redis: RedisConfiguration, clientName: String, configuration: Configuration,
                               logger: Logger = Logger(label: "voicecore.bus.tail")) async throws -> StreamTail {
        var liveConfiguration = redis
        liveConfiguration.clientName = clientName.replacingOccurrences(of: " ", with: "_")
        var historyConfiguration = redis
        historyConfiguration.clientName = liveConfiguration.clientName.map { $0 + ":history" }
        let live = try await RedisClient.connect(liveConfiguration, logger: logger)
        let history: RedisClient
        do {
            history = try await RedisClient.connect(historyConfiguration, logger: logger)
        } catch {
            await live.close()
            throw error
        }
        return StreamTail(live: live, history: history, configuration: configuration, logger: logger)
    }

    /// Closes both connections.
    public func close() async {
        await live.close()
        await history.close()
    }

    // MARK: Following

    /// Follows the streams from now until the task is cancelled: calls `deliver` with each run of
    /// entries released, in order, and `through`, the position up to which everything has been
    /// delivered (`deliver` is also called with no entries when only `through` moved, at least
    /// once per ``Configuration/block``). Outages are waited out.
    ///
    /// - Parameter following: asked before every read which of the streams to read (nil: all of
    ///   them). A stream left out is not read at all (no Redis work, no decoding) and its entries
    ///   are skipped: `through` still moves past them. A stream taken back in is read from the
    ///   entry after `through`. While only some are followed, a read waits at most
    ///   ``Configuration/recheck``, so a change is picked up that soon. The edge's live feed reads
    ///   every event stream only while someone is connected.
    /// - Throws: only `RedisError` of kind `invalidConfiguration` for a Redis Cluster.
    public func run(following: @Sendable () -> Set<String>? = { nil },
                    deliver: @Sendable (_ entries: [TailEntry], _ through: TailPosition) async -> Void) async throws {
        if live.isCluster {
            throw RedisError(kind: .invalidConfiguration,
                             message: "the live event feed tails a single Redis server; a Redis Cluster has one clock per master, so its streams have no one order")
        }
        var schedule = ReconnectSchedule(initial: .milliseconds(100), maximum: .seconds(2))
        var after: [String: StreamEntryID] = [:]
        var released: TailPosition?
        var held: [TailEntry] = []
        var followed = Set(configuration.streams)
        while !Task.isCancelled {
            do {
                if released == nil {
                    // Start at the server's now: entries from here on are delivered.
                    let now = try await live.execute(.serverTime())
                    let start = TailPosition.justBefore(StreamEntryID(milliseconds: now, sequence: 0))
                    for stream in configuration.streams { after[stream] = start.entry }
                    released = start
                    await deliver([], start)
                }
                guard let through = released else { continue }
                if !held.isEmpty { try await Task.sleep(for: configuration.settle) }
                let wanted = following()
                let streams = wanted.map { wanted in configuration.streams.filter(wanted.contains) } ?? configuration.streams
                for stream in streams where !followed.contains(stream) {
                    // Taken back in: from the first entry after `through` (an entry with its very id
                    // comes after it when the stream's name does).
                    after[stream] = stream > through.stream ? through.entry.predecessor : through.entry
                    // Entries still held from before it was left out are read again from there.
                    held.removeAll { $0.position.stream == stream }
                }
                followed = Set(streams)
                let block = streams.count < configuration.streams.count ? min(configuration.block, configuration.recheck) : configuration.block
                let now: UInt64
                let read: [StreamReadResult]
                if streams.isEmpty {
                    // Nothing to read: only the clock moves `through`.
                    if held.isEmpty { try await Task.sleep(for: block) }
                    (now, read) = (try await live.execute(.serverTime()), [])
                } else {
                    let positions = streams.map { ($0, after[$0] ?? through.entry) }
                    (now, read) = try await live.execute(.serverTime(),
                                                         .xread(streams: positions, count: configuration.count, block: held.isEmpty ? block : nil))
                }
                if schedule.failures > 0 { logger.info("event tail reading again", metadata: ["after": "\(through)"]) }
                schedule.succeeded()
                // Everything below the time TIME answered was in Redis when XREAD ran after it.
                var limit = TailPosition.justBefore(StreamEntryID(milliseconds: now, sequence: 0))
                var late: [TailEntry] = []
                for batch in read {
                    guard let last = batch.entries.last else { continue }
                    after[batch.stream] = last.id
                    if batch.entries.count >= configuration.count { limit = min(limit, TailPosition(entry: last.id, stream: batch.stream)) }
                    for entry in batch.entries where !entry.isDeleted {
                        let tailEntry = TailEntry(position: TailPosition(entry: entry.id, stream: batch.stream), entry: entry)
                        if tailEntry.position <= through { late.append(tailEntry) } else { held.append(tailEntry) }
                    }
                }
                if !late.isEmpty {
                    logger.warning("entries behind the feed's position delivered out of order (clock stepped back, or explicit ids)",
                                   metadata: ["count": "\(late.count)", "first": "\(late[0].position)", "through": "\(through)"])
                    await deliver(late.sorted { $0.position < $1.position }, through)
                }
                // Nothing newly final (the clock has not passed the held entries' id yet).
                guard limit > through else { continue }
                held.sort { $0.position < $1.position }
                let cut = held.firstIndex { $0.position > limit } ?? held.count
                let ready = Array(held[..<cut])
                held.removeFirst(cut)
                released = limit
                await deliver(ready, limit)
            } catch is CancellationError {
                return
            } catch {
                schedule.failed(at: .now)
                if schedule.failures == 1 {
                    logger.warning("event tail cannot read; waiting for Redis", metadata: ["error": "\(error)"])
                }
                let pause = schedule.wait(at: .now) ?? .milliseconds(100)
                do { try await Task.sleep(for: pause) } catch { return }
            }
        }
    }

    // MARK: Catching up

    /// What a catch-up read found.
    public struct CatchUp: Sendable {
        /// The entries after the position asked, up to ``reached``, in order.
        public var entries: [TailEntry]
        /// Everything up to here has been read (ask again from here until it is `through`).
        public var reached: TailPosition
    }

    /// The entries after `position` up to `through` (inclusive), in the tail's order, at most
    /// `count` per stream: one page of a catch-up. Read on a connection of their own, one `XREAD`
    /// per stream in one pipeline (so on a cluster each goes to its own node).
    public func entries(after position: TailPosition, through: TailPosition, count: Int) async throws -> CatchUp {
        guard position < through else { return CatchUp(entries: [], reached: through) }
        let count = max(1, count)
        // Streams after `position`'s own in the order also owe the entries with its very id.
        let commands = configuration.streams.map { stream in
            RedisCommand<[StreamReadResult]>.xread(streams: [(stream, stream > position.stream ? position.entry.predecessor : position.entry)], count: count)
        }
        var reached = through
        var found: [TailEntry] = []
        for result in try await history.pipeline(commands) {
            for batch in try result.get() {
                guard let last = batch.entries.last else { continue }
                if batch.entries.count >= count { reached = min(reached, TailPosition(entry: last.id, stream: batch.stream)) }
                for entry in batch.entries where !entry.isDeleted {
                    found.append(TailEntry(position: TailPosition(entry: entry.id, stream: batch.stream), entry: entry))
                }
            }
        }
        found = found.filter { $0.position > position && $0.position <= reached }
        found.sort { $0.position < $1.position }
        return CatchUp(entries: found, reached: reached)
    }

    /// The newest entries of one stream, newest first, at most `count` (`XREVRANGE + - COUNT n`),
    /// read on the catch-up connection: a bounded look back for what was written before the tail
    /// started following (the edge's turn replies look up a reply their cache never saw).
    public func latestEntries(of stream: String, count: Int) async throws -> [StreamEntry] {
        try await history.execute(.xrevrange(stream, count: max(1, count)))
    }

    /// Whether every entry after `position` is still in its stream: false when deletion (Redis 7's
    /// `max-deleted-entry-id`) removed an entry after it, or trimming removed entries and the
    /// oldest one left is after it (trimming leaves no record of the ids it removed, so this errs
    /// towards saying entries may have been missed): a reader resuming there may have missed some.
    public func retainsEverything(after position: TailPosition) async throws -> Bool {
        let commands = configuration.streams.map { RedisCommand<StreamInfo>.xinfoStream($0) }
        for (stream, result) in zip(configuration.streams, try await history.pipeline(commands)) {
            switch result {
            case .success(let info):
                if let deleted = info.maxDeletedEntryID, TailPosition(entry: deleted, stream: stream) > position { return false }
                // Trimming (MAXLEN/MINID retention) removes from the front and does not move
                // max-deleted-entry-id: entries were removed (more added than are left) and the
                // oldest left is after the position, so the removed ones may have been too.
                if let added = info.entriesAdded, added > info.length,
                   let oldestLeft = info.firstEntry?.id.predecessor ?? info.lastGeneratedID,
                   TailPosition(entry: oldestLeft, stream: stream) > position {
                    return false
                }
            case .failure(let error) where error.kind == .server:
                continue  // no such stream yet: nothing was removed from it
            case .failure(let error):
                throw error
            }
        }
        return true
    }
}

extension RedisCommand where Response == UInt64 {
    /// `TIME` → the server's clock in milliseconds (the clock `XADD *` takes its ids from).
    static func serverTime() -> Self {
        RedisCommand(RESPCommand("TIME")) { value in
            guard let parts = value.array, parts.count == 2, let seconds = parts[0].int, let micros = parts[1].int, seconds >= 0, micros >= 0 else {
                throw RedisError(kind: .unexpectedReply, message: "TIME answered \(value)")
            }
            return UInt64(seconds) * 1000 + UInt64(micros) / 1000
        }
    }
}
