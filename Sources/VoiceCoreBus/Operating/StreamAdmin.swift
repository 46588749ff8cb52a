import VoiceCoreRedis

/// What `voicecore streams` shows: every stream of a deployment with its groups' progress.
public struct StreamAdmin: Sendable {
    /// One stream and its consumer groups.
    public struct StreamReport: Sendable, Hashable, Codable {
        public var stream: String
        public var length: Int
        public var firstID: String?
        public var lastID: String?
        public var groups: [GroupReport]
        /// How far retention is held back on a command or event stream, when asked for
        /// (``reports(prefix:retention:readers:)``).
        public var retention: StreamRetentionStatus?
    }

    /// One consumer group of a stream.
    public struct GroupReport: Sendable, Hashable, Codable {
        public var name: String
        /// Entries not yet delivered to the group (`nil` when Redis cannot tell, after deletions).
        public var lag: Int?
        public var pending: Int
        /// How long the oldest pending entry has waited since its last delivery, in milliseconds.
        public var oldestPendingIdleMs: Int?
        public var consumers: [ConsumerReport]
    }

    public struct ConsumerReport: Sendable, Hashable, Codable {
        public var name: String
        public var pending: Int
        public var idleMs: Int
    }

    let connection: RedisClient

    public init(connection: RedisClient) {
        self.connection = connection
    }

    /// Every stream whose key starts with `prefix:` (dead-letter streams included), sorted.
    public func streams(prefix: String) async throws -> [String] {
        try await connection.scanAll(match: "\(prefix):*", type: "stream")
    }

    /// The report of every stream under `prefix`; with a retention configuration, each command and
    /// event stream carries its ``StreamRetentionStatus`` (what its groups and the readers of
    /// `readers` hold back). Reading it trims nothing.
    public func reports(prefix: String, retention: RetentionConfiguration? = nil, readers: [any ReaderProgressSource] = []) async throws -> [StreamReport] {
        var statuses: [String: StreamRetentionStatus] = [:]
        if let retention {
            for status in try await RetentionTrimmer.status(connection: connection, configuration: retention, readers: readers) {
                statuses[status.stream] = status
            }
        }
        var reports: [StreamReport] = []
        for stream in try await streams(prefix: prefix) {
            var report = try await report(stream)
            report.retention = statuses[stream]
            reports.append(report)
        }
        return reports
    }

    /// The report of one stream.
    public func report(_ stream: String) async throws -> StreamReport {
        let info = try await connection.execute(.xinfoStream(stream))
        var groups: [GroupReport] = []
        for group in try await connection.execute(.xinfoGroups(stream)) {
            let consumers = try await connection.execute(.xinfoConsumers(stream, group: group.name))
            var oldestIdle: Int?
            if group.pending > 0 {
                let rows = try await connection.execute(.xpending(stream, group: group.name, count: 1))
                oldestIdle = rows.first.map { Int($0.idle.milliseconds) }
            }
            groups.append(GroupReport(
                name: group.name, lag: group.lag, pending: group.pending, oldestPendingIdleMs: oldestIdle,
                consumers: consumers.map { ConsumerReport(name: $0.name, pending: $0.pending, idleMs: Int($0.idle.milliseconds)) }
            ))
        }
        return StreamReport(stream: stream, length: info.length, firstID: info.firstEntry?.id.description, lastID: info.lastEntry?.id.description,
                            groups: groups, retention: nil)
    }
}
