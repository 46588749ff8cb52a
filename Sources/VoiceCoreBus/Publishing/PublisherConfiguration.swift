import Foundation
import VoiceCoreEvents
import VoiceCoreRedis

/// How a ``Publisher`` names streams and batches writes.
///
/// A publisher does not trim: an `XADD` carries no `MAXLEN`/`MINID`. Retention is applied by the
/// ``RetentionTrimmer`` (`voicecore up`, `voicecore project`), which never trims what a consumer
/// group or the projector has not processed; Redis' `maxmemory` with `noeviction` is the hard
/// bound, so a full Redis fails publishes (the edge answers 503) rather than dropping history.
///
/// ```swift
/// var configuration = PublisherConfiguration(source: "/edge/twilio")
/// configuration.maxBatch = 256
/// ```
public struct PublisherConfiguration: Sendable {
    /// The CloudEvents `source` of what this publisher sends, e.g. `/edge/twilio`.
    public var source: String
    /// Stream names and partitions (must match every other part of the deployment).
    public var naming: StreamNaming
    /// The most XADDs sent in one pipeline; more waiting callers go in the next one.
    public var maxBatch: Int
    /// When set, a publish succeeds only after that many replicas have the entry (`WAIT` at the
    /// end of each pipeline); otherwise it fails with ``RedisError/Kind/replication`` (it may still
    /// be in the stream: at-least-once, the caller retries). Redis replicates asynchronously, so
    /// without it a master that dies right after acknowledging can take entries with it when its
    /// replica is promoted. Costs a replication round trip per pipeline (see docs/configuration.md, Redis
    /// Cluster section for the measured cost). Off by default; `VOICECORE_REDIS_WAIT_REPLICAS=N`
    /// (and `VOICECORE_REDIS_WAIT_TIMEOUT_MS`, default 500) turn it on for every publisher of a process.
    public var replicaAcknowledgement: ReplicaAcknowledgement?

    public init(
        source: String,
        naming: StreamNaming = StreamNaming(),
        maxBatch: Int = 512,
        replicaAcknowledgement: ReplicaAcknowledgement? = PublisherConfiguration.replicaAcknowledgementFromEnvironment()
    ) {
        self.replicaAcknowledgement = replicaAcknowledgement
        self.source = source
        self.naming = naming
        self.maxBatch = max(1, maxBatch)
    }

    /// `VOICECORE_REDIS_WAIT_REPLICAS` (a positive number) and `VOICECORE_REDIS_WAIT_TIMEOUT_MS`.
    public static func replicaAcknowledgementFromEnvironment(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> ReplicaAcknowledgement? {
        guard let text = environment["VOICECORE_REDIS_WAIT_REPLICAS"], let replicas = Int(text), replicas > 0 else { return nil }
        let milliseconds = environment["VOICECORE_REDIS_WAIT_TIMEOUT_MS"].flatMap { Int($0) }.map { max(1, $0) } ?? 500
        return ReplicaAcknowledgement(replicas: replicas, timeout: .milliseconds(milliseconds))
    }
}
