import VoiceCoreRedis
import VoiceCoreTime

/// Where retention stands on one stream: what its age or length bound would trim, what each
/// reader has processed, and how far the readers hold trimming back.
///
/// ``read(_:connection:configuration:progress:nowMilliseconds:)`` computes it; the
/// ``RetentionTrimmer`` trims to ``trim`` and `voicecore streams` shows it.
public struct StreamRetentionStatus: Sendable, Hashable, Codable {
    /// How a reader's progress was learned.
    public enum ProgressSource: String, Sendable, Hashable, Codable {
        /// The consumer group's own state: below its oldest pending entry, at or below its last-delivered id.
        case group
        /// A ``ReaderProgressSource`` (the projector's checkpoints).
        case checkpoints
        /// A checkpointed group no source answered for: nothing is known to be processed, so it
        /// holds the whole stream.
        case unknown
    }

    /// One reader (consumer group) of the stream.
    public struct ReaderStatus: Sendable, Hashable, Codable {
        public var group: String
        public var source: ProgressSource
        /// The reader needs every entry from this id on (the successor of the last one it processed,
        /// or its oldest pending entry).
        public var keepsFrom: String
        /// Consumers the group has (`XINFO GROUPS`).
        public var consumers: Int
        /// Seconds since any of its consumers was last seen (read or claimed); for a group without
        /// consumers, since a trimmer first saw it without any (`nil`: not recorded yet).
        public var lastSeenSeconds: Double?
        /// Entries left to process and no consumer seen for ``RetentionConfiguration/abandonAfter``:
        /// it no longer holds retention back.
        public var abandoned: Bool
        /// How far (in entry time) this reader keeps the stream beyond its age bound: from the
        /// oldest entry it still needs to the retention point. 0 when it holds nothing back.
        public var heldBackSeconds: Double
    }

    public var stream: String
    /// The retention bound (``StreamRetention``'s description).
    public var retention: String
    /// Entries in the stream when read (before trimming).
    public var length: Int
    public var firstID: String?
    /// The age bound as an entry id: entries below it are older than the retention (`nil` for a
    /// length bound or none).
    public var retentionMinID: String?
    /// The first entry some active reader has not processed (`nil`: every reader has processed
    /// everything, or there are no readers).
    public var keepFrom: String?
    /// The trim the bounds and the readers allow (`MINID ~ id` or `MAXLEN ~ n`); `nil`: none.
    public var trim: String?
    /// How far (in entry time) the stream keeps entries beyond its age bound because a reader has
    /// not processed them.
    public var heldBackSeconds: Double
    /// Entries kept beyond the bound because a reader has not processed them.
    public var heldBackEntries: Int
    /// `true` when ``heldBackEntries`` is a lower bound (counted up to a cap).
    public var heldBackEntriesIsLowerBound: Bool
    public var readers: [ReaderStatus]
    /// Entries the last trim removed (0 when only read).
    public var trimmed: Int

    /// The trim as a command clause (internal: the trimmer sends it).
    var trimClause: StreamTrim? {
        switch plannedTrim {
        case .none: nil
        case .minID(let id, let exact): .minID(id, approximate: !exact)
        case .maxLength(let count, let exact): .maxLength(count, approximate: !exact)
        }
    }

    /// What the trimmer sends (not part of the report's JSON: ``trim`` says it in words).
    private var plannedTrim: PlannedTrim = .none

    enum PlannedTrim: Sendable, Hashable {
        case none
        case minID(StreamEntryID, exact: Bool)
        case maxLength(Int, exact: Bool)
    }

    enum CodingKeys: String, CodingKey {
        case stream, retention, length, firstID, retentionMinID, keepFrom, trim, heldBackSeconds, heldBackEntries, heldBackEntriesIsLowerBound, readers, trimmed
    }

    init(stream: String, retention: StreamRetention, info: StreamInfo) {
        self.stream = stream
        self.retention = retention.description
        length = info.length
        firstID = info.firstEntry?.id.description
        heldBackSeconds = 0
        heldBackEntries = 0
        heldBackEntriesIsLowerBound = false
        readers = []
        trimmed = 0
    }

    /// Entries counted one by one at most (per stream and pass) to say how many are held back.
    static let countCap = 10_000

    /// Reads the retention status of `stream`; `nil` when the stream does not exist.
    ///
    /// `progress` pairs each ``ReaderProgressSource`` with its reading for this pass;
    /// `consumerlessSince` says since when (ms) each group without consumers has been seen so, by
    /// ``consumerlessKey(stream:group:)``.
    public static func read(
        _ stream: String, retention: StreamRetention, connection: RedisClient, configuration: RetentionConfiguration,
        progress: [(source: any ReaderProgressSource, reading: ReaderProgress)], consumerlessSince: [String: UInt64] = [:],
        nowMilliseconds: UInt64 = UInt64(max(0, Timestamp.now.millisecondsSinceEpoch))
    ) async throws -> StreamRetentionStatus? {
        let info: StreamInfo
        do {
            info = try await connection.execute(.xinfoStream(stream))
        } catch let error as RedisError where error.kind == .server {
            return nil  // no such stream
        }
        var status = StreamRetentionStatus(stream: stream, retention: retention, info: info)
        let abandonAfterMilliseconds = Double(configuration.abandonAfter.milliseconds)
        // Per active reader: where it keeps from, and its group's delivery state (for counting).
        var active: [(keepFrom: StreamEntryID, group: StreamGroupInfo)] = []
        for group in try await connection.execute(.xinfoGroups(stream)) {
            let consumers = try await connection.execute(.xinfoConsumers(stream, group: group.name))
            let lastSeenMilliseconds: Double?
            if let idle = consumers.map(\.idle).min() {
                lastSeenMilliseconds = Double(idle.milliseconds)
            } else if let since = consumerlessSince[consumerlessKey(stream: stream, group: group.name)] {
                // No consumer to ask (created by XGROUP CREATE and never read with, or its
                // consumers deleted): counted from when a trimmer first saw it so.
                lastSeenMilliseconds = Double(nowMilliseconds &- min(nowMilliseconds, since))
            } else {
                lastSeenMilliseconds = nil
            }

            let source: ProgressSource
            var keepFrom: StreamEntryID
            if let answer = progress.first(where: { $0.source.answers(forGroup: group.name) }) {
                source = .checkpoints
                keepFrom = answer.reading.processed(group: group.name, stream: stream)?.successor ?? .zero
            } else if configuration.isCheckpointed(group.name) {
                source = .unknown
                keepFrom = .zero
            } else {
                source = .group
                keepFrom = group.lastDeliveredID?.successor ?? .zero
                if group.pending > 0, let oldest = try await connection.execute(.xpending(stream, group: group.name)).smallestID {
                    keepFrom = min(keepFrom, oldest)
                }
            }
            // Redis 7.0 refreshes a consumer's idle time only when a read returns entries (or its
            // own pending ones), so a live group on a quiet stream looks idle too: only a group
            // that has entries left to process, and no consumer seen for the abandonment time,
            // is abandoned.
            let hasUnprocessed = info.lastGeneratedID.map { keepFrom <= $0 } ?? false
            let abandoned = hasUnprocessed && (lastSeenMilliseconds.map { $0 >= abandonAfterMilliseconds } ?? false)
            status.readers.append(ReaderStatus(
                group: group.name, source: source, keepsFrom: keepFrom.description, consumers: consumers.count,
                lastSeenSeconds: lastSeenMilliseconds.map { $0 / 1000 }, abandoned: abandoned, heldBackSeconds: 0))
            if !abandoned { active.append((keepFrom, group)) }
        }
        let binding = active.min { $0.keepFrom < $1.keepFrom }
        // Nothing to keep for the readers when every one has processed the whole stream.
        var keepFrom: StreamEntryID?
        if let binding, let last = info.lastGeneratedID, binding.keepFrom <= last { keepFrom = binding.keepFrom }
        status.keepFrom = keepFrom?.description

        switch retention {
        case .unbounded:
            break
        case .maxAge(let age, let exact):
            let retentionMinID = StreamEntryID(milliseconds: nowMilliseconds &- min(nowMilliseconds, UInt64(max(0, age.milliseconds))))
            status.retentionMinID = retentionMinID.description
            let trimTo = keepFrom.map { min($0, retentionMinID) } ?? retentionMinID
            status.plannedTrim = .minID(trimTo, exact: exact)
            status.trim = "MINID \(exact ? "=" : "~") \(trimTo)"
            // What stays below the retention point after the trim is held back by a reader.
            if let first = info.firstEntry?.id {
                let kept = max(first, trimTo)
                if kept < retentionMinID {
                    status.heldBackSeconds = Double(retentionMinID.milliseconds - min(retentionMinID.milliseconds, kept.milliseconds)) / 1000
                    let counted = try await count(stream, from: kept, before: retentionMinID, cap: countCap, connection: connection)
                    status.heldBackEntries = counted.count
                    status.heldBackEntriesIsLowerBound = counted.capped
                }
                for index in status.readers.indices where !status.readers[index].abandoned {
                    guard let needs = StreamEntryID(status.readers[index].keepsFrom) else { continue }
                    let from = max(needs, first)
                    if from < retentionMinID {
                        status.readers[index].heldBackSeconds = Double(retentionMinID.milliseconds - min(retentionMinID.milliseconds, from.milliseconds)) / 1000
                    }
                }
            }
        case .maxLength(let limit, let exact):
            guard let keepFrom, let binding else {
                status.plannedTrim = .maxLength(limit, exact: exact)
                status.trim = "MAXLEN \(exact ? "=" : "~") \(limit)"
                break
            }
            // Keep the `limit` newest entries and everything from `keepFrom` on: trim at
            // `keepFrom` when at least `limit` entries are there, else to the newest `limit`.
            let needed = try await countFrom(stream, keepFrom, binding: binding.group, cap: limit + countCap, connection: connection)
            if needed.count >= limit {
                status.plannedTrim = .minID(keepFrom, exact: exact)
                status.trim = "MINID \(exact ? "=" : "~") \(keepFrom)"
                status.heldBackEntries = needed.count - limit
                status.heldBackEntriesIsLowerBound = needed.capped
            } else {
                status.plannedTrim = .maxLength(limit, exact: exact)
                status.trim = "MAXLEN \(exact ? "=" : "~") \(limit)"
            }
        }
        return status
    }

    /// The field of a group without consumers in the trimmer's record of when it first saw it so.
    public static func consumerlessKey(stream: String, group: String) -> String { stream + "\n" + group }

    /// Entries of `stream` in `[from, before)`, counted page by page up to `cap`.
    private static func count(_ stream: String, from: StreamEntryID, before: StreamEntryID?, cap: Int, connection: RedisClient) async throws -> (count: Int, capped: Bool) {
        var counted = 0
        var start = from
        while counted < cap {
            let want = min(1000, cap - counted)
            var page = try await connection.execute(.xrange(stream, from: start, to: nil, count: want))
            if let before, let cut = page.firstIndex(where: { $0.id >= before }) {
                page.removeSubrange(cut...)
                return (counted + page.count, false)
            }
            counted += page.count
            guard page.count == want, let last = page.last else { return (counted, false) }
            start = last.id.successor
        }
        return (counted, true)
    }

    /// Entries of `stream` from `keepFrom` on, up to `cap`. The binding group's lag counts those
    /// after its last-delivered id without reading them; only the ones between `keepFrom` and it
    /// (pending, or delivered but not checkpointed) are counted one by one.
    private static func countFrom(_ stream: String, _ keepFrom: StreamEntryID, binding: StreamGroupInfo, cap: Int, connection: RedisClient) async throws -> (count: Int, capped: Bool) {
        if let lag = binding.lag, let delivered = binding.lastDeliveredID, keepFrom <= delivered.successor {
            if lag >= cap { return (cap, true) }
            let inFlight = try await count(stream, from: keepFrom, before: delivered.successor, cap: cap - lag, connection: connection)
            return (lag + inFlight.count, inFlight.capped)
        }
        return try await count(stream, from: keepFrom, before: nil, cap: cap, connection: connection)
    }

    /// Records the trim's result.
    mutating func recordTrimmed(_ count: Int) {
        trimmed = count
    }
}
