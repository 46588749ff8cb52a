import Logging
import Metrics
import ServiceLifecycle
import Synchronization
import VoiceCoreBus
import VoiceCoreEvents
import VoiceCorePostgres

/// Runs projections: reads their streams through consumer groups and applies each batch to
/// Postgres exactly once in effect.
///
/// ## The commit protocol
/// A worker reads a batch (`XREADGROUP … NOACK`, every partition it owns), and in ONE transaction
/// applies it, records the entries it could not apply (`projection_failures`) and writes the
/// checkpoint (`projection_checkpoints`: projection, stream, last entry id), then commits. The
/// checkpoint is the truth; the consumer group only delivers, and whoever takes a partition moves
/// the group back to the checkpoint first (below), so:
/// - killed before COMMIT: nothing was written; the next owner is delivered the entries again;
/// - killed after COMMIT: the entries are at or below the checkpoint, so the next owner starts
///   after them (and an entry at or below it that is delivered again is skipped).
///
/// Nothing is acknowledged: with NOACK, Redis keeps no pending-entries list for the projector, so
/// a read costs no XACK round trip afterwards and Redis does not write an `XCLAIM` per entry to its
/// AOF (measured with `voicecore bench project`: Redis 5.2–6.6 µs of CPU per event with XACK,
/// 1.9–2.3 µs without). The group's position is only where delivery continues.
///
/// While a batch is applied, the worker already reads the next one (without blocking), so Redis
/// and Postgres work at the same time. That read is always finished before the worker's
/// partitions change (a rebalance, a recovery, shutdown): entries it read for a partition given
/// back are dropped, unapplied, and the new owner, moving the group back to the checkpoint, gets
/// them again.
///
/// ## Ownership: Postgres advisory locks
/// A partition of a projection is applied by one worker at a time: the worker holds the session
/// advisory lock (projection, partition) on the very connection it commits on. When a worker dies
/// its session ends and its locks with it; when its connection breaks it can no longer commit, so
/// there is no window in which two workers commit the same partition (no lease to expire, no
/// fencing token needed). Workers count each other through a second lock space (one lock per
/// live worker) and each aims for ⌈partitions ÷ workers⌉ partitions, giving extras back between
/// batches and taking free ones.
///
/// A worker that takes a partition moves the group's position on its streams back to the
/// checkpoint (`XGROUP SETID`): everything after it is delivered again, including entries a dead
/// owner had read but not committed.
///
/// The workers of one runner join (take their worker lock) before any of them takes partitions,
/// waiting up to a second for each other: a worker that counted only itself would take every
/// free partition and give the extras back only at its next rebalance, leaving the others idle
/// meanwhile (seen in `bench project` as 30–40 % of the machine idle for the first seconds).
///
/// ## Failures
/// A transient database error (deadlock, serialization failure) retries the batch with backoff. An
/// event the database rejects (a constraint, a bad value) is isolated by applying the batch event by
/// event under savepoints; the rejected ones are recorded in `projection_failures` with the error,
/// and the rest is applied. An entry that cannot be decoded is recorded there too. A lost database
/// connection drops every partition (the locks went with it) and reconnects; a Redis failure
/// reconnects and moves the groups back to the checkpoints.
public final class ProjectorRunner: Service, Sendable {
    public let projections: [any Projection]
    public let configuration: ProjectorConfiguration
    private let redisConfiguration: RedisConfiguration
    private let postgresConfiguration: PostgresConfiguration
    private let registry: MessageRegistry
    private let logger: Logger
    private let metricsFactory: any MetricsFactory
    private let counters: Mutex<[String: Statistics]>
    /// Batches committed by all workers (for ``ProjectorConfiguration/crashPoint``).
    private let committed = Mutex(0)
    /// Partitions owned, per worker.
    private let owned = Mutex<[String: Int]>([:])
    /// Workers that have joined (taken their worker lock) since the runner started.
    private let joined = Mutex(0)
    private let partitionGauge: Gauge

    /// The consumer group all workers read with: `projector:` and the projections' names.
    public var group: String { ProjectorConfiguration.group(of: projections.map(\.name)) }

    /// Per projection, since the runner started.
    public struct Statistics: Sendable, Hashable {
        /// Entries applied (committed with their checkpoint).
        public var applied = 0
        /// Entries of types the projection does not read, or deleted, passed over.
        public var passedOver = 0
        /// Entries at or below the checkpoint delivered again, skipped.
        public var skipped = 0
        /// Entries recorded in `projection_failures`.
        public var failed = 0
        /// Batches committed.
        public var batches = 0
        /// Partitions currently owned by this instance.
        public var partitions = 0

        public init() {}
    }

    public init(
        projections: [any Projection], redis: RedisConfiguration, postgres: PostgresConfiguration,
        configuration: ProjectorConfiguration, registry: MessageRegistry = .standard,
        logger: Logger = Logger(label: "voicecore.projector"), metricsFactory: any MetricsFactory = MetricsSystem.factory
    ) {
        self.projections = projections
        self.configuration = configuration
        self.redisConfiguration = redis
        self.postgresConfiguration = postgres
        self.registry = registry
        self.logger = logger
        self.metricsFactory = metricsFactory
        self.counters = Mutex(Dictionary(uniqueKeysWithValues: projections.map { ($0.name, Statistics()) }))
        self.partitionGauge = Gauge(label: ProjectorMetricNames.partitions, dimensions: [("group", ProjectorConfiguration.group(of: projections.map(\.name)))], factory: metricsFactory)
    }

    /// Counters per projection name.
    public var statistics: [String: Statistics] {
        let partitions = owned.withLock { $0.values.reduce(0, +) }
        return counters.withLock { counters in counters.mapValues { var s = $0; s.partitions = partitions; return s } }
    }

    func setPartitions(of worker: String, _ count: Int) {
        let total = owned.withLock { owned in
            owned[worker] = count
            return owned.values.reduce(0, +)
        }
        partitionGauge.record(total)
    }

    var committedBatches: Int { committed.withLock { $0 } }

    /// A worker has taken its worker lock for the first time.
    func noteJoined() { joined.withLock { $0 += 1 } }

    /// Waits until every worker of this runner has joined, or `limit` has passed (a worker that
    /// cannot connect must not hold the others back).
    func siblingsJoined(within limit: Duration) async {
        let deadline = ContinuousClock.now + limit
        while joined.withLock({ $0 }) < configuration.workers, ContinuousClock.now < deadline, !Task.isCancelled {
            try? await Task.sleep(for: .milliseconds(5))
        }
    }

    func noteCommitted() -> Int { committed.withLock { $0 += 1; return $0 } }

    func record(_ projection: String, _ update: (inout Statistics) -> Void) {
        counters.withLock { update(&$0[projection, default: Statistics()]) }
    }

    public func run() async throws {
        let names = projections.map(\.name)
        guard Set(names).count == names.count else { throw ProjectorError("a projection is listed twice: \(names)") }
        guard !names.isEmpty else { throw ProjectorError("no projection to run") }
        let stop = StopSignal()
        try await withGracefulShutdownHandler {
            try await withThrowingTaskGroup(of: Void.self) { group in
                let metrics = Dictionary(uniqueKeysWithValues: projections.map { ($0.name, ProjectorMetrics(projection: $0.name, factory: metricsFactory)) })
                for index in 0..<configuration.workers {
                    group.addTask {
                        let worker = ProjectorWorker(
                            runner: self, index: index, redis: self.redisConfiguration, postgres: self.postgresConfiguration,
                            registry: self.registry, logger: self.logger, metrics: metrics)
                        try await worker.run(stop: stop)
                    }
                }
                try await group.waitForAll()
            }
        } onGracefulShutdown: {
            stop.signal()
        }
    }
}

/// Set once when a graceful shutdown begins.
final class StopSignal: Sendable {
    private let flag = Mutex(false)
    func signal() { flag.withLock { $0 = true } }
    var isSet: Bool { flag.withLock { $0 } || Task.isCancelled }
}

/// The projector's metric names (Prometheus style).
///
/// | name | kind | meaning |
/// | --- | --- | --- |
/// | `voicecore_projector_applied_total` [projection] | counter | entries applied and checkpointed |
/// | `voicecore_projector_failed_total` [projection] | counter | entries recorded in projection_failures |
/// | `voicecore_projector_batch_seconds` [projection] | timer | one batch: transaction and acknowledgement |
/// | `voicecore_projector_partitions` [group] | gauge | partitions this instance owns |
/// | `voicecore_projection_gap` [projection] | gauge | entries after the checkpoints (`voicecore projections`) |
/// | `voicecore_projection_oldest_unprojected_seconds` [projection] | gauge | age of the oldest of them |
public enum ProjectorMetricNames {
    public static let applied = "voicecore_projector_applied_total"
    public static let failed = "voicecore_projector_failed_total"
    public static let batch = "voicecore_projector_batch_seconds"
    public static let partitions = "voicecore_projector_partitions"
    public static let gap = "voicecore_projection_gap"
    public static let oldestUnprojected = "voicecore_projection_oldest_unprojected_seconds"
}

struct ProjectorMetrics: Sendable {
    let applied: Counter
    let failed: Counter
    let batch: Metrics.Timer
    let projection: String
    let factory: any MetricsFactory

    init(projection: String, factory: any MetricsFactory) {
        let dimensions = [("projection", projection)]
        self.projection = projection
        self.factory = factory
        applied = Counter(label: ProjectorMetricNames.applied, dimensions: dimensions, factory: factory)
        failed = Counter(label: ProjectorMetricNames.failed, dimensions: dimensions, factory: factory)
        batch = Metrics.Timer(label: ProjectorMetricNames.batch, dimensions: dimensions, factory: factory)
    }
}
