import VoiceCoreBus
import VoiceCoreQueries

/// Where one projection stands, as the operator's console shows it (the console's copy of
/// `ProjectionStatus`, which lives in a module the edge does not import).
public struct ConsoleProjectionStatus: Sendable, Hashable {
    public var projection: String
    /// Entries after the projection's checkpoints, summed over its streams.
    public var gap: Int
    /// `true` when ``gap`` is a lower bound (counted up to a cap).
    public var gapIsLowerBound: Bool
    /// Age of the oldest entry not yet projected; nil when there is none.
    public var oldestUnprojectedSeconds: Double?
    /// Entries the projection recorded as failed.
    public var failures: Int

    public init(projection: String, gap: Int, gapIsLowerBound: Bool, oldestUnprojectedSeconds: Double?, failures: Int) {
        self.projection = projection
        self.gap = gap
        self.gapIsLowerBound = gapIsLowerBound
        self.oldestUnprojectedSeconds = oldestUnprojectedSeconds
        self.failures = failures
    }
}

/// What the operator's console needs from outside the edge's module map: the projections'
/// status (their checkpoints in Postgres against the stream heads). The `voicecore` executable
/// implements it over `ProjectionStatus.read` (`ConsoleProjections`).
public protocol ConsoleProjectionSource: Sendable {
    /// Every projection's status, read now.
    func projectionStatuses() async throws -> [ConsoleProjectionStatus]
}

/// Everything the operator's pages read and change: the streams and their groups, the dead
/// letters (inspect, requeue), the projections' status and every tenant's calls of today.
/// `voicecore edge` and `voicecore up` give the edge one when there is an admin key
/// (``Edge/operatorConsole``); without it the operator pages say the data is not available.
public struct ConsoleOperatorBackends: Sendable {
    /// The deployment's stream key prefix: the pages show streams under `prefix:` only.
    public let prefix: String
    /// Every stream's length and its groups' lag, pending entries and oldest pending age.
    public let streams: StreamAdmin
    /// The dead-letter streams (`<stream>:dlq:<group>`).
    public let deadLetters: DeadLetters
    /// The projections' status.
    public let projections: any ConsoleProjectionSource
    /// The read pool, for the reads across tenants (``TenantReads/readAsPlatform(_:)``).
    public let reads: TenantReads

    /// - Parameters:
    ///   - streams, deadLetters: on a Redis connection of their own (a page's reads wait on it,
    ///     not on the publisher's).
    public init(prefix: String, streams: StreamAdmin, deadLetters: DeadLetters, projections: any ConsoleProjectionSource, reads: TenantReads) {
        self.prefix = prefix
        self.streams = streams
        self.deadLetters = deadLetters
        self.projections = projections
        self.reads = reads
    }
}
