/// Entries read from one stream by `XREAD` / `XREADGROUP`.
public struct StreamReadResult: Sendable, Hashable {
    public var stream: String
    public var entries: [StreamEntry]

    public init(stream: String, entries: [StreamEntry]) {
        self.stream = stream
        self.entries = entries
    }
}

/// The reply of `XAUTOCLAIM`: the cursor for the next call, the entries claimed, and the ids of
/// pending entries that no longer exist in the stream (Redis removed them from the pending list).
public struct AutoClaimResult: Sendable, Hashable {
    /// Where the next `XAUTOCLAIM` continues; `0-0` when the scan is complete.
    public var nextStart: StreamEntryID
    public var entries: [StreamEntry]
    public var deletedIDs: [StreamEntryID]
}

/// The summary form of `XPENDING key group`.
public struct PendingSummary: Sendable, Hashable {
    public var count: Int
    public var smallestID: StreamEntryID?
    public var greatestID: StreamEntryID?
    /// Pending count per consumer.
    public var consumers: [String: Int]
}

/// One row of the extended form of `XPENDING`.
public struct PendingEntry: Sendable, Hashable {
    public var id: StreamEntryID
    public var consumer: String
    /// Time since the entry was last delivered.
    public var idle: Duration
    /// How many times it has been delivered.
    public var deliveryCount: Int
}

/// `XINFO STREAM key`.
public struct StreamInfo: Sendable, Hashable {
    public var length: Int
    public var lastGeneratedID: StreamEntryID?
    /// Redis 7+: the greatest id deleted (or trimmed) from the stream.
    public var maxDeletedEntryID: StreamEntryID?
    /// Redis 7+: every entry ever added, including deleted ones.
    public var entriesAdded: Int?
    public var groups: Int
    public var firstEntry: StreamEntry?
    public var lastEntry: StreamEntry?
}

/// One row of `XINFO GROUPS key`.
public struct StreamGroupInfo: Sendable, Hashable {
    public var name: String
    public var consumers: Int
    public var pending: Int
    public var lastDeliveredID: StreamEntryID?
    /// Redis 7+: the logical read counter of the group.
    public var entriesRead: Int?
    /// Redis 7+: entries not yet delivered to the group; `nil` when Redis cannot tell.
    public var lag: Int?
}

/// One row of `XINFO CONSUMERS key group`.
public struct StreamConsumerInfo: Sendable, Hashable {
    public var name: String
    public var pending: Int
    /// Time since the consumer last interacted (read or claimed).
    public var idle: Duration
    /// Redis 7.2+: time since the consumer last read or claimed successfully.
    public var inactive: Duration?
}

/// How `XADD` or `XTRIM` bounds a stream.
public struct StreamTrim: Sendable, Hashable {
    enum Strategy: Sendable, Hashable {
        case maxLength(Int)
        case minID(StreamEntryID)
    }
    let strategy: Strategy
    /// `~`: let Redis trim whole nodes only, which is much cheaper; the stream may keep a few
    /// entries more than asked.
    public var approximate: Bool
    /// `LIMIT`: the most entries one approximate trim may evict.
    public var limit: Int?

    /// Keep about `count` newest entries.
    public static func maxLength(_ count: Int, approximate: Bool = true, limit: Int? = nil) -> StreamTrim {
        StreamTrim(strategy: .maxLength(count), approximate: approximate, limit: limit)
    }

    /// Drop entries older than `id` (for retention by age: `ms = now - retention`).
    public static func minID(_ id: StreamEntryID, approximate: Bool = true, limit: Int? = nil) -> StreamTrim {
        StreamTrim(strategy: .minID(id), approximate: approximate, limit: limit)
    }

    /// The trim clause as arguments (`MAXLEN ~ n` or `MINID ~ id`, with `LIMIT` if set).
    public var arguments: [RESPArgument] {
        var args: [RESPArgument]
        switch strategy {
        case .maxLength(let n): args = ["MAXLEN", approximate ? "~" : "=", .integer(n)]
        case .minID(let id): args = ["MINID", approximate ? "~" : "=", .string(id.description)]
        }
        if let limit, approximate { args += ["LIMIT", .integer(limit)] }
        return args
    }
}

/// Where a new consumer group starts reading.
public enum GroupStart: Sendable, Hashable {
    /// From the first entry (`0`).
    case beginning
    /// Only entries added from now on (`$`).
    case end
    /// After this entry id.
    case after(StreamEntryID)

    var argument: RESPArgument {
        switch self {
        case .beginning: return "0"
        case .end: return "$"
        case .after(let id): return .string(id.description)
        }
    }
}

/// Which entries `XREADGROUP` returns for one stream.
public enum GroupReadPosition: Sendable, Hashable {
    /// Entries never delivered to this group (`>`).
    case newEntries
    /// This consumer's own pending entries after the id (history; `0` for all).
    case pending(after: StreamEntryID)

    var argument: RESPArgument {
        switch self {
        case .newEntries: return ">"
        case .pending(let id): return .string(id.description)
        }
    }
}
