import Logging
import Metrics
import ServiceLifecycle
import Synchronization
import VoiceCoreBus
import VoiceCoreEvents
import VoiceCoreExecutors
import VoiceCorePostgres

/// The readiness of a projector runner, and the projection-gap gauges: samples every projection's
/// ``ProjectionStatus`` each `interval`, records its gap and the age of its oldest unprojected
/// event (`voicecore_projection_gap`, `voicecore_projection_oldest_unprojected_seconds`: one
/// sample serves the gauges and readiness), and offers one ``ReadinessCheck`` per projection.
///
/// A projection is not ready when
/// - Redis or Postgres does not answer this sampler (its own connections, reconnected at the next
///   sample), or the read-model tables are missing;
/// - it is stalled: its gap grew while the runner applied, passed over, skipped or recorded as
///   failed none of its entries for `stallLimit` (see ``ProgressWatch``);
/// - or it has not been sampled yet, or not for three intervals (the sampler is stuck).
///
/// ```swift
/// let readiness = ProjectorReadiness(runner: runner, naming: naming, redis: redisConfiguration, postgres: postgresConfiguration)
/// // run `readiness` beside the runner; serve `readiness.checks` at /ready
/// ```
public final class ProjectorReadiness: Service, Sendable {
    private struct Sample: Sendable {
        var watches: [String: ProgressWatch]
        var sampledAt: ContinuousClock.Instant?
        var failure: String?
    }

    private let runner: ProjectorRunner
    private let naming: StreamNaming
    private let redis: RedisConfiguration
    private let postgres: PostgresConfiguration
    private let interval: Duration
    private let factory: any MetricsFactory
    private let logger: Logger
    private let state: Mutex<Sample>

    /// - Parameters:
    ///   - interval: how often the projections' status is read (a few commands per stream).
    ///   - stallLimit: how long a growing gap may go with nothing applied.
    public init(runner: ProjectorRunner, naming: StreamNaming, redis: RedisConfiguration, postgres: PostgresConfiguration,
                interval: Duration = .seconds(5), stallLimit: Duration = .seconds(30), factory: any MetricsFactory = MetricsSystem.factory,
                logger: Logger = Logger(label: "voicecore.projector.readiness")) {
        self.runner = runner
        self.naming = naming
        self.redis = redis
        self.postgres = postgres
        self.interval = interval
        self.factory = factory
        self.logger = logger
        state = Mutex(Sample(watches: Dictionary(runner.projections.map { ($0.name, ProgressWatch(stallLimit: stallLimit)) }, uniquingKeysWith: { first, _ in first })))
    }

    /// One check per projection, named `projector:<projection>`.
    public var checks: [ReadinessCheck] {
        runner.projections.map { projection in
            ReadinessCheck("projector:\(projection.name)") { self.readiness(of: projection.name, at: .now) }
        }
    }

    /// The projection's readiness from the last sample.
    public func readiness(of projection: String, at now: ContinuousClock.Instant) -> Readiness {
        let sample = state.withLock { $0 }
        if let failure = sample.failure { return .notReady(failure) }
        guard let sampledAt = sample.sampledAt else { return .notReady("starting: its gap has not been sampled yet") }
        let age = now - sampledAt
        if age > interval * 3 {
            return .notReady("its gap was last sampled \(age.components.seconds) s ago (every \(interval) expected)")
        }
        return sample.watches[projection]?.readiness(at: now) ?? .ready
    }

    public func run() async throws {
        let (redis, postgres, logger) = (self.redis, self.postgres, self.logger)
        var redisConnection = LazyConnection { try await BusConnection.connect(redis, name: "vc-readiness:projector", logger: logger) }
        var db = LazyConnection { try await PostgresConnection.connect(postgres, logger: logger) }
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            var failure: String?
            do {
                let client = try await redisConnection.get()
                do {
                    try await sample(streams: StreamInspector(connection: client), db: try await db.get(), at: .now)
                } catch let error as PostgresError where error.sqlState == "42P01" {
                    failure = "the read-model tables are missing: run `voicecore migrate up`"
                } catch let error as PostgresError {
                    failure = "Postgres does not answer: \(error)"
                }
            } catch let error as RedisError {
                failure = "Redis does not answer: \(error)"
            } catch {
                failure = "the projections' status could not be read: \(error)"
            }
            if let failure {
                let first = state.withLock { sample in
                    defer { sample.failure = failure }
                    return sample.failure == nil
                }
                if first { logger.warning("projection status not sampled; not ready until it is", metadata: ["error": "\(failure)"]) }
            }
            // A graceful shutdown ends the wait: the process's drain bound is not spent here.
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: self.interval) }
        }
        await redisConnection.current?.close()
        await db.current?.close()
    }

    /// Reads every projection's status once, records the gauges and the runner's progress
    /// (public for tests and one-shot use).
    public func sample(streams: StreamInspector, db: PostgresConnection, at now: ContinuousClock.Instant) async throws {
        let statuses = try await ProjectionStatus.read(runner.projections, naming: naming, streams: streams, db: db)
        for status in statuses { status.recordMetrics(factory: factory) }
        let statistics = runner.statistics
        state.withLock { sample in
            for status in statuses {
                let counts = statistics[status.projection] ?? ProjectorRunner.Statistics()
                sample.watches[status.projection]?.observe(
                    backlog: status.gap, processed: counts.applied + counts.passedOver + counts.skipped + counts.failed, at: now)
            }
            sample.sampledAt = now
            sample.failure = nil
        }
    }
}
