import Logging
import ServiceLifecycle
import Synchronization
import VoiceCoreExecutors
import VoiceCoreRedis

/// The readiness of a process's consumer groups: one ``ReadinessCheck`` per runner, and the
/// service that samples their lag for it.
///
/// A consumer is not ready when
/// - it is paused by an outage: some of its partitions wait for Redis or Postgres to answer
///   (``ConsumerGroupRunner/Statistics/waitingOnOutage``);
/// - Redis does not answer this sampler (its own connection, reconnected at each sample);
/// - it is stalled: its group's lag (entries not yet delivered, summed over its streams) grew while
///   it handled nothing for `stallLimit` (see ``ProgressWatch``; handled, acknowledged without a
///   handler and dead-lettered entries all count as progress);
/// - or its lag has not been sampled yet, or not for three intervals (the sampler is stuck).
///
/// The lag is the group's, not this member's: with several members sharing the partitions, one
/// that is idle while another's partitions pile up is reported too, which is the operator's cue
/// either way. A stream whose lag Redis cannot tell (entries deleted with XDEL after the group's
/// position) counts as no lag.
///
/// ```swift
/// let readiness = ConsumerReadiness(runners: runners, redis: redisConfiguration)
/// // run `readiness` beside the runners; serve `readiness.checks` at /ready
/// ```
public final class ConsumerReadiness: Service, Sendable {
    private struct Sample: Sendable {
        var watches: [String: ProgressWatch]
        var sampledAt: ContinuousClock.Instant?
        var failure: String?
    }

    private let runners: [ConsumerGroupRunner]
    private let redis: RedisConfiguration
    private let interval: Duration
    private let logger: Logger
    private let state: Mutex<Sample>

    /// - Parameters:
    ///   - interval: how often the groups' lag is sampled (one pipelined `XINFO GROUPS` per stream).
    ///   - stallLimit: how long a growing lag may go with nothing handled.
    public init(runners: [ConsumerGroupRunner], redis: RedisConfiguration, interval: Duration = .seconds(5), stallLimit: Duration = .seconds(30),
                logger: Logger = Logger(label: "voicecore.bus.readiness")) {
        self.runners = runners
        var redis = redis
        redis.clientName = "vc-readiness:consumers"
        self.redis = redis
        self.interval = interval
        self.logger = logger
        let watches = Dictionary(runners.map { ($0.configuration.group, ProgressWatch(stallLimit: stallLimit)) }, uniquingKeysWith: { first, _ in first })
        state = Mutex(Sample(watches: watches))
    }

    /// One check per runner, named `consumer:<group>`.
    public var checks: [ReadinessCheck] {
        runners.map { runner in
            ReadinessCheck("consumer:\(runner.configuration.group)") { self.readiness(of: runner, at: .now) }
        }
    }

    /// The runner's readiness from its statistics and the last sample.
    public func readiness(of runner: ConsumerGroupRunner, at now: ContinuousClock.Instant) -> Readiness {
        let waiting = runner.statistics.waitingOnOutage
        if waiting > 0 {
            return .notReady("paused by an outage: \(waiting) of its partitions or readers are waiting for Redis or Postgres to answer")
        }
        let sample = state.withLock { $0 }
        if let failure = sample.failure { return .notReady("Redis does not answer: \(failure)") }
        guard let sampledAt = sample.sampledAt else { return .notReady("starting: its lag has not been sampled yet") }
        let age = now - sampledAt
        if age > interval * 3 {
            return .notReady("its lag was last sampled \(age.components.seconds) s ago (every \(interval) expected)")
        }
        return sample.watches[runner.configuration.group]?.readiness(at: now) ?? .ready
    }

    public func run() async throws {
        let (redis, logger) = (self.redis, self.logger)
        var connection = LazyConnection { try await RedisClient.connect(redis, logger: logger) }
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            do {
                try await sample(try await connection.get(), at: .now)
            } catch {
                let first = state.withLock { sample in
                    defer { sample.failure = "\(error)" }
                    return sample.failure == nil
                }
                if first { logger.warning("consumer lag not sampled; not ready until Redis answers", metadata: ["error": "\(error)"]) }
            }
            // A graceful shutdown ends the wait: the process's drain bound is not spent here.
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: self.interval) }
        }
        await connection.current?.close()
    }

    /// Samples every group's lag once and records it with the runners' progress (public for
    /// tests and one-shot use).
    public func sample(_ redis: RedisClient, at now: ContinuousClock.Instant) async throws {
        let streams = Array(Set(runners.flatMap(\.configuration.streams))).sorted()
        let replies = try await redis.pipeline(streams.map { RedisCommand.xinfoGroups($0) })
        var lag: [String: Int] = [:]
        for reply in replies {
            switch reply {
            case .success(let groups):
                for group in groups { lag[group.name, default: 0] += group.lag ?? 0 }
            case .failure(let error) where error.kind == .server && !error.isOutage:
                continue  // no such stream yet: nothing published to it, nothing to lag behind
                          // (LOADING and the like are outages: not ready)
            case .failure(let error):
                throw error
            }
        }
        let progress = runners.map { runner in
            let statistics = runner.statistics
            return (runner.configuration.group, statistics.handled + statistics.skipped + statistics.deadLettered)
        }
        state.withLock { sample in
            for (group, processed) in progress {
                sample.watches[group]?.observe(backlog: lag[group] ?? 0, processed: processed, at: now)
            }
            sample.sampledAt = now
            sample.failure = nil
        }
    }
}
