import Logging
import VoiceCoreBus
import VoiceCoreEdge
import VoiceCoreEvents
import VoiceCorePostgres
import VoiceCoreProjections
import VoiceCoreQueries
import VoiceCoreRedis

/// The projections' status for the operator's console (`/app/operator`), read as `voicecore
/// projections` reads it: the checkpoints in Postgres against the stream heads in Redis.
struct ConsoleProjections: ConsoleProjectionSource {
    let projections: [any Projection]
    let naming: StreamNaming
    let redis: BusConnection
    /// A connection of its own (it reconnects by itself after an outage): the status reads several
    /// statements, which the read pool's one-transaction reads do not suit.
    let db: PostgresConnection

    func projectionStatuses() async throws -> [ConsoleProjectionStatus] {
        try await ProjectionStatus.read(projections, naming: naming, streams: StreamInspector(connection: redis), db: db).map {
            ConsoleProjectionStatus(projection: $0.projection, gap: $0.gap, gapIsLowerBound: $0.gapIsLowerBound,
                                    oldestUnprojectedSeconds: $0.oldestUnprojectedSeconds, failures: $0.failures)
        }
    }
}

extension ConsoleOperatorBackends {
    /// What `voicecore edge` and `voicecore up` give the edge for the operator's pages: one Redis
    /// connection (streams, dead letters, projection heads) and one Postgres connection
    /// (checkpoints) of their own, and the read pool for the reads across tenants.
    static func connect(_ connections: ConnectionOptions, naming: StreamNaming, reads: TenantReads, logger: Logger) async throws -> ConsoleOperatorBackends {
        var redisConfiguration = try connections.redisConfiguration()
        redisConfiguration.clientName = "vc-edge:console"
        let redis = try await RedisClient.connect(redisConfiguration, logger: logger)
        var postgresConfiguration = try connections.postgresConfiguration()
        postgresConfiguration.reconnectsAutomatically = true
        let db = try await PostgresConnection.connect(postgresConfiguration, logger: logger)
        let projections = ConsoleProjections(projections: StandardProjections.all, naming: naming, redis: BusConnection(redis), db: db)
        return ConsoleOperatorBackends(prefix: naming.prefix, streams: StreamAdmin(connection: redis), deadLetters: DeadLetters(connection: redis),
                                       projections: projections, reads: reads)
    }
}
