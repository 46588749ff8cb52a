import Logging
import Metrics
import ServiceLifecycle
import VoiceCoreEvents
import VoiceCorePostgres
import VoiceCoreRedis

/// Samples ``ProjectionStatus`` every `interval` and reports each projection's gap and the age of
/// its oldest unprojected event as gauges (`voicecore_projection_gap`,
/// `voicecore_projection_oldest_unprojected_seconds`). `voicecore project` runs one beside its
/// runner.
public final class ProjectionLagCollector: Service, Sendable {
    private let projections: [any Projection]
    private let naming: StreamNaming
    private let redis: RedisConfiguration
    private let postgres: PostgresConfiguration
    private let interval: Duration
    private let factory: MetricsFactory
    private let logger: Logger

    public init(projections: [any Projection], naming: StreamNaming, redis: RedisConfiguration, postgres: PostgresConfiguration,
                interval: Duration = .seconds(10), factory: MetricsFactory = MetricsSystem.factory,
                logger: Logger = Logger(label: "voicecore.projector.metrics")) {
        self.projections = projections
        self.naming = naming
        self.redis = redis
        self.postgres = postgres
        self.interval = interval
        self.factory = factory
        self.logger = logger
    }

    public func run() async throws {
        let redis = try await RedisClient.connect(self.redis, logger: logger)
        let db = try await PostgresConnection.connect(postgres, logger: logger)
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            do {
                try await sample(redis: redis, db: db)
            } catch {
                // The connections reconnect by themselves at the next sample.
                logger.info("projection lag not sampled", metadata: ["error": "\(error)"])
            }
            try? await Task.sleep(for: interval)
        }
    }

    /// One sample (public for tests and one-shot use).
    public func sample(redis: RedisClient, db: PostgresConnection) async throws {
        for status in try await ProjectionStatus.read(projections, naming: naming, redis: redis, db: db) {
            status.recordMetrics(factory: factory)
        }
    }
}
