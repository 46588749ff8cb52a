import Foundation
import Logging
import ServiceLifecycle
import VoiceCoreBus
import VoiceCoreEvents
import VoiceCorePostgres
import VoiceCoreTenants
import VoiceCoreTime

/// How often the privacy service looks for work.
public struct PrivacyServiceConfiguration: Sendable, Hashable {
    /// Between two looks at the open erasures.
    public var pollInterval: Duration = .seconds(1)
    /// Between two retention runs (`VOICECORE_RETENTION_INTERVAL`, seconds; default one hour).
    public var retentionInterval: Duration = .seconds(3600)
    /// Before the first retention run after start (so a restart loop does not run it each time).
    public var firstRetentionAfter: Duration = .seconds(300)
    /// Between two sweeps for events that arrived about callers after their erasure completed
    /// (``LateEventSweep``); the first runs at start.
    public var lateEventInterval: Duration = .seconds(60)

    public init(pollInterval: Duration = .seconds(1), retentionInterval: Duration = .seconds(3600), firstRetentionAfter: Duration = .seconds(300),
                lateEventInterval: Duration = .seconds(60)) {
        self.pollInterval = pollInterval
        self.retentionInterval = retentionInterval
        self.firstRetentionAfter = firstRetentionAfter
        self.lateEventInterval = lateEventInterval
    }

    /// The environment variable of ``retentionInterval`` (whole seconds, at least 1).
    public static let retentionIntervalVariable = "VOICECORE_RETENTION_INTERVAL"

    /// The defaults, with ``retentionInterval`` from the environment when set.
    /// - Throws: ``CallerEraser/EraserError`` naming the variable when it is not a positive number of seconds.
    public static func fromEnvironment(_ environment: [String: String] = ProcessInfo.processInfo.environment) throws -> PrivacyServiceConfiguration {
        var configuration = PrivacyServiceConfiguration()
        if let text = environment[retentionIntervalVariable], !text.isEmpty {
            guard let seconds = Int(text), seconds >= 1 else {
                throw CallerEraser.EraserError(description: "\(retentionIntervalVariable) must be a whole number of seconds, at least 1 (got \(text))")
            }
            configuration.retentionInterval = .seconds(seconds)
        }
        return configuration
    }
}

/// The privacy service: advances every open caller erasure each second (``CallerEraser``; an
/// erasure another process runs is skipped, the advisory lock decides), erases again what arrived
/// about erased callers after their erasure completed every
/// ``PrivacyServiceConfiguration/lateEventInterval`` (``LateEventSweep``), and runs the
/// ``RetentionJob`` for every tenant every ``PrivacyServiceConfiguration/retentionInterval``.
///
/// Run by `voicecore up` and alone by `voicecore privacy serve`. A failing erasure or run is logged
/// and tried again at the next look (its state is saved); nothing here stops the service but a
/// shutdown, which it honours between steps (a batch's transaction is never cut in two).
///
/// ```swift
/// let service = try await PrivacyService.connect(postgres: postgresConfiguration, redis: redisConfiguration,
///                                                naming: naming, secrets: try SecretBox.fromEnvironment())
/// let group = ServiceGroup(services: [service, …], logger: logger)
/// ```
public final class PrivacyService: Service, Sendable {
    public let eraser: CallerEraser
    public let retention: RetentionJob
    /// Nil: late events are not swept here.
    public let lateEvents: LateEventSweep?
    public let configuration: PrivacyServiceConfiguration
    private let logger: Logger
    private let resources: [@Sendable () async -> Void]

    public convenience init(eraser: CallerEraser, retention: RetentionJob, lateEvents: LateEventSweep? = nil,
                            configuration: PrivacyServiceConfiguration = PrivacyServiceConfiguration(), logger: Logger = Logger(label: "voicecore.privacy")) {
        self.init(eraser: eraser, retention: retention, lateEvents: lateEvents, configuration: configuration, logger: logger, closing: [])
    }

    private init(eraser: CallerEraser, retention: RetentionJob, lateEvents: LateEventSweep?, configuration: PrivacyServiceConfiguration, logger: Logger,
                 closing: [@Sendable () async -> Void]) {
        self.eraser = eraser
        self.retention = retention
        self.lateEvents = lateEvents
        self.configuration = configuration
        self.logger = logger
        self.resources = closing
    }

    /// A service with connections of its own: two Postgres connections (the eraser's, which holds
    /// the erasures' locks, and the retention job's, which the late-event sweep shares), a Redis connection for the streams and the
    /// publisher, and the projections' checkpoints as readers (an erasure waits for them too).
    public static func connect(postgres: PostgresConfiguration, redis: RedisConfiguration, naming: StreamNaming, secrets: SecretBox,
                               projections: [any Projection] = StandardProjections.all,
                               configuration: PrivacyServiceConfiguration = PrivacyServiceConfiguration(),
                               logger: Logger = Logger(label: "voicecore.privacy")) async throws -> PrivacyService {
        let eraserDB = try await PostgresConnection.connect(postgres, logger: logger)
        let retentionDB = try await PostgresConnection.connect(postgres, logger: logger)
        let bus = try await BusConnection.connect(redis, name: "privacy", logger: logger)
        let progress = ProjectionCheckpointProgress(projections: projections, naming: naming, postgres: postgres)
        let streams = StreamErasure(connection: bus, naming: naming, readers: [progress], logger: logger)
        let publisher = Publisher(connection: bus, configuration: PublisherConfiguration(source: CallerEraser.source, naming: naming), logger: logger)
        let requests = ErasureRequests(directory: TenantDirectory(connection: eraserDB, secrets: secrets, logger: logger))
        let eraser = CallerEraser(postgres: eraserDB, streams: streams, publisher: publisher, requests: requests, logger: logger)
        let retention = RetentionJob(postgres: retentionDB, streams: streams, logger: logger)
        let lateEvents = LateEventSweep(postgres: retentionDB, streams: streams, logger: logger)
        return PrivacyService(eraser: eraser, retention: retention, lateEvents: lateEvents, configuration: configuration, logger: logger, closing: [
            { await publisher.close() }, { await bus.close() }, { await eraserDB.close() }, { await retentionDB.close() },
        ])
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            var nextRetention = ContinuousClock.now.advanced(by: self.configuration.firstRetentionAfter)
            var nextSweep = ContinuousClock.now
            while !Task.isCancelled {
                await self.advanceOpenErasures()
                if ContinuousClock.now >= nextSweep {
                    await self.sweepLateEvents()
                    nextSweep = ContinuousClock.now.advanced(by: self.configuration.lateEventInterval)
                }
                if ContinuousClock.now >= nextRetention {
                    await self.runRetention()
                    nextRetention = ContinuousClock.now.advanced(by: self.configuration.retentionInterval)
                }
                try? await Task.sleep(for: self.configuration.pollInterval)
            }
        }
        await close()
    }

    /// Closes the connections ``connect(postgres:redis:naming:secrets:projections:configuration:logger:)``
    /// opened (after a one-shot use of ``eraser`` or ``retention``; ``run()`` closes them itself).
    public func close() async {
        for close in resources { await close() }
    }

    /// One look at the open erasures: each advanced as far as it goes now.
    public func advanceOpenErasures() async {
        let open: [Identifier]
        do {
            open = try await eraser.openErasures()
        } catch {
            logger.warning("open erasures could not be read", metadata: ["error": "\(error)"])
            return
        }
        for erasure in open {
            if Task.isCancelled { return }
            do {
                try await eraser.advance(erasure)
            } catch {
                logger.warning("caller erasure stopped; it is tried again", metadata: ["erasure": "\(erasure)", "error": "\(error)"])
            }
        }
    }

    /// One sweep for events that arrived about erased callers after their erasure completed.
    public func sweepLateEvents() async {
        guard let lateEvents else { return }
        do {
            let outcome = try await lateEvents.sweep()
            if outcome.lateEvents > 0 || outcome.redone > 0 {
                logger.info("late events of erased callers erased", metadata: [
                    "events": "\(outcome.lateEvents)", "erasures_redone": "\(outcome.redone)", "erasures_waiting": "\(outcome.waiting)",
                ])
            }
        } catch {
            logger.warning("late-event sweep stopped; it is tried again at the next interval", metadata: ["error": "\(error)"])
        }
    }

    /// One retention run over every tenant (a tenant's failure is logged and recorded by the job;
    /// the others run).
    public func runRetention() async {
        do {
            let runs = try await retention.run()
            logger.info("retention runs finished", metadata: ["tenants": "\(runs.count)", "failed": "\(runs.filter { $0.error != nil }.count)"])
        } catch {
            logger.warning("retention run failed; it is tried again at the next interval", metadata: ["error": "\(error)"])
        }
    }
}
