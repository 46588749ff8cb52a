import VoiceCoreRedis

/// Where a stream stands, read without consuming it: its head, the first entry after a position,
/// its consumer groups' delivery and lag, and how many entries lie between two positions. What a
/// reader that keeps its own checkpoint (a projector) needs to say how far behind it is.
///
/// ```swift
/// let streams = StreamInspector(connection: connection)
/// if let head = try await streams.head(of: stream), let last = head.lastGeneratedID, last > checkpoint {
///     let behind = try await streams.count(stream, after: checkpoint, through: nil, cap: 10_000)
/// }
/// ```
public struct StreamInspector: Sendable {
    /// The end of a stream.
    public struct Head: Sendable, Hashable {
        /// Entries in the stream now.
        public var length: Int
        /// The last entry id Redis generated on the stream (that entry may have been deleted or trimmed).
        public var lastGeneratedID: StreamEntryID?
    }

    /// How far a consumer group has read a stream.
    public struct GroupPosition: Sendable, Hashable {
        public var name: String
        /// Entries not yet delivered to the group (`nil` when Redis cannot tell, after deletions).
        public var lag: Int?
        /// The last entry delivered to the group.
        public var lastDeliveredID: StreamEntryID?
    }

    private let connection: BusConnection

    public init(connection: BusConnection) {
        self.connection = connection
    }

    /// The stream's head; `nil` when there is no such stream (yet).
    public func head(of stream: String) async throws -> Head? {
        do {
            let info = try await connection.client.execute(.xinfoStream(stream))
            return Head(length: info.length, lastGeneratedID: info.lastGeneratedID)
        } catch let error as RedisError where error.kind == .server {
            return nil  // no such key (or not a stream)
        }
    }

    /// The id of the first entry after `position` (from the start when `nil`); `nil` when none.
    public func firstEntryID(of stream: String, after position: StreamEntryID?) async throws -> StreamEntryID? {
        try await connection.client.execute(.xrange(stream, from: position?.successor ?? .zero, count: 1)).first?.id
    }

    /// The stream's consumer groups, as Redis reports them.
    public func groups(of stream: String) async throws -> [GroupPosition] {
        try await connection.client.execute(.xinfoGroups(stream)).map {
            GroupPosition(name: $0.name, lag: $0.lag, lastDeliveredID: $0.lastDeliveredID)
        }
    }

    /// Entries of `stream` after `after` (from the start when `nil`) up to and including `through`
    /// (the end when `nil`), counted page by page up to `cap`; `capped` when it stopped there.
    public func count(_ stream: String, after: StreamEntryID?, through: StreamEntryID?, cap: Int) async throws -> (count: Int, capped: Bool) {
        var counted = 0
        var from = after?.successor ?? .zero
        while counted < cap {
            let want = min(1000, cap - counted)
            let page = try await connection.client.execute(.xrange(stream, from: from, to: through, count: want))
            counted += page.count
            guard page.count == want, let last = page.last else { return (counted, false) }
            from = last.id.successor
        }
        return (counted, true)
    }
}
