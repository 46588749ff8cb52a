import VoiceCoreRedis

/// Tells the ``RetentionTrimmer`` how far readers that keep their progress outside Redis have
/// processed their streams.
///
/// A consumer group's own state says what it processed: everything below its oldest pending entry
/// and at or below its last-delivered id. A reader that reads with `NOACK` and checkpoints
/// elsewhere (the projector: `XREADGROUP … NOACK`, checkpoints in Postgres) has no pending list,
/// and its group's last-delivered id runs ahead of what it committed. Such a reader still reads
/// through a consumer group (that is how it is registered on a stream, and its consumers' idle
/// time says whether it is alive); a source answers, for the groups it ``answers(forGroup:)``, what
/// that group has processed on each stream.
///
/// The bus knows nothing of where the progress lives: the projections module provides the source
/// for its checkpoints table (`ProjectionCheckpointProgress`), and the process that runs both
/// hands it to the trimmer.
///
/// ```swift
/// let trimmer = RetentionTrimmer(redis: redis, configuration: retention,
///                                readers: [ProjectionCheckpointProgress(projections: StandardProjections.all, postgres: postgres)])
/// ```
public protocol ReaderProgressSource: Sendable {
    /// Whether this source answers for `group` (e.g. every `projector:` group).
    func answers(forGroup group: String) -> Bool

    /// Reads the progress of every reader this source answers for, once per trim pass. Throwing
    /// skips the pass: retention is never applied on a guess.
    func progress() async throws -> ReaderProgress
}

/// One reading of a ``ReaderProgressSource``.
public struct ReaderProgress: Sendable {
    private let lookup: @Sendable (_ group: String, _ stream: String) -> StreamEntryID?

    /// `processed(group, stream)` answers the last entry `group` has processed on `stream`, or
    /// `nil` when it has processed nothing there (which holds the whole stream).
    public init(processed: @escaping @Sendable (_ group: String, _ stream: String) -> StreamEntryID?) {
        lookup = processed
    }

    /// The last entry `group` has processed on `stream`; `nil`: nothing yet.
    public func processed(group: String, stream: String) -> StreamEntryID? {
        lookup(group, stream)
    }
}
