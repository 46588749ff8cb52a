import Logging
import VoiceCoreBus
import VoiceCoreEvents
import VoiceCorePostgres

/// The projector's checkpoints as reader progress, so the ``RetentionTrimmer`` never trims an
/// event a projection has not committed.
///
/// Projectors read with `NOACK` through groups named `projector:<a>+<b>…`, so Redis does not know
/// what they applied; `projection_checkpoints` does. For such a group on a stream, the processed
/// position is the lowest checkpoint among its projections that read that stream; a projection
/// that reads the stream and has no checkpoint there has processed nothing, which holds the whole
/// stream. A projection this process does not know (another version's) counts where it has a
/// checkpoint.
///
/// ```swift
/// let trimmer = RetentionTrimmer(redis: redis, configuration: retention, readers: [
///     ProjectionCheckpointProgress(projections: StandardProjections.all, naming: naming, postgres: postgres),
/// ])
/// ```
public actor ProjectionCheckpointProgress: ReaderProgressSource {
    private let postgres: PostgresConfiguration
    private let logger: Logger
    /// The streams each known projection reads.
    private let streamsRead: [String: Set<String>]
    private var connection: PostgresConnection?

    /// `projections`: every projection the deployment runs (all of them, even when this process
    /// runs only some), to know which streams each one reads.
    public init(projections: [any Projection], naming: StreamNaming, postgres: PostgresConfiguration,
                logger: Logger = Logger(label: "voicecore.projector.retention")) {
        self.postgres = postgres
        self.logger = logger
        var streamsRead: [String: Set<String>] = [:]
        for projection in projections {
            streamsRead[projection.name] = Set(projection.categories.flatMap { naming.streams($0, kind: projection.kind) })
        }
        self.streamsRead = streamsRead
    }

    public nonisolated func answers(forGroup group: String) -> Bool {
        group.hasPrefix(Self.groupPrefix)
    }

    public func progress() async throws -> ReaderProgress {
        let db = try await connected()
        let rows: PostgresRows
        // A failure skips this pass (the trimmer never guesses); a broken connection reconnects
        // by itself at the next.
        rows = try await db.query("SELECT projection, stream, last_entry_id FROM projection_checkpoints")
        var checkpoints: [String: [String: StreamEntryID]] = [:]
        for row in rows {
            guard let id = StreamEntryID(try row.decode(String.self, "last_entry_id")) else { continue }
            checkpoints[try row.decode(String.self, "projection"), default: [:]][try row.decode(String.self, "stream")] = id
        }
        let streamsRead = self.streamsRead, read = checkpoints
        return ReaderProgress { group, stream in
            Self.processed(group: group, stream: stream, checkpoints: read, streamsRead: streamsRead)
        }
    }

    private static let groupPrefix = "projector:"

    /// The lowest checkpoint on `stream` among the group's projections that read it; `nil` when
    /// one of them has none (it processed nothing there).
    static func processed(group: String, stream: String, checkpoints: [String: [String: StreamEntryID]], streamsRead: [String: Set<String>]) -> StreamEntryID? {
        var lowest: StreamEntryID?
        for name in group.dropFirst(groupPrefix.count).split(separator: "+").map(String.init) {
            let checkpoint = checkpoints[name]?[stream]
            let reads = streamsRead[name]?.contains(stream) ?? (checkpoint != nil)
            guard reads else { continue }
            guard let checkpoint else { return nil }
            lowest = min(lowest ?? checkpoint, checkpoint)
        }
        return lowest
    }

    private func connected() async throws -> PostgresConnection {
        if let connection { return connection }
        let made = try await PostgresConnection.connect(postgres, logger: logger)
        connection = made
        return made
    }
}

extension RetentionTrimmer {
    /// The trimmer `voicecore up` and `voicecore project` run: retention from the environment
    /// (``RetentionConfiguration/fromEnvironment(naming:environment:)``), every standard
    /// projection's checkpoints holding back its streams.
    /// - Throws: ``RetentionConfigurationError`` for a malformed `VOICECORE_RETENTION_*` variable.
    public static func holdingBackForProjections(naming: StreamNaming, redis: RedisConfiguration, postgres: PostgresConfiguration,
                                                 logger: Logger = Logger(label: "voicecore.bus.retention")) throws -> RetentionTrimmer {
        RetentionTrimmer(redis: redis, configuration: try .fromEnvironment(naming: naming),
                         readers: [ProjectionCheckpointProgress(projections: StandardProjections.all, naming: naming, postgres: postgres, logger: logger)],
                         logger: logger)
    }
}
