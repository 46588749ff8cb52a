import Foundation
import VoiceCoreEvents
import VoiceCoreRedis

/// How a ``Publisher`` names streams, bounds them and batches writes.
///
/// Retention trims streams as they are written (`XADD … MAXLEN ~` or `MINID ~`): Redis is the
/// transport, Postgres' `event_log` the archive. Defaults keep events for 7 days and commands for
/// 24 hours. An entry trimmed while still pending in a consumer group is reported to that group as
/// deleted (`XAUTOCLAIM`), so retention must exceed the longest outage a consumer may have.
///
/// ```swift
/// var configuration = PublisherConfiguration(source: "/edge/twilio")
/// configuration.retention[.calls] = .maxLength(5_000_000)
/// ```
public struct PublisherConfiguration: Sendable {
    /// How long, or how many, entries a stream keeps.
    public enum Retention: Sendable, Hashable {
        /// Entries newer than this (`MINID`, computed from the clock at each write). Approximate
        /// trimming (the default) removes whole radix-tree nodes only, so a stream may keep up to
        /// about a hundred older entries; `exact` trims precisely (slower).
        case maxAge(Duration, exact: Bool = false)
        /// About this many newest entries (approximate `MAXLEN`); `exact` trims precisely (slower).
        case maxLength(Int, exact: Bool = false)
        /// Never trimmed by the publisher.
        case unbounded
    }

    /// The CloudEvents `source` of what this publisher sends, e.g. `/edge/twilio`.
    public var source: String
    /// Stream names and partitions (must match every other part of the deployment).
    public var naming: StreamNaming
    /// Retention of event streams per category.
    public var eventRetention: [StreamCategory: Retention]
    /// Retention of command streams per category.
    public var commandRetention: [StreamCategory: Retention]
    /// The most XADDs sent in one pipeline; more waiting callers go in the next one.
    public var maxBatch: Int
    /// When set, a publish succeeds only after that many replicas have the entry (`WAIT` at the
    /// end of each pipeline); otherwise it fails with ``RedisError/Kind/replication`` (it may still
    /// be in the stream: at-least-once, the caller retries). Redis replicates asynchronously, so
    /// without it a master that dies right after acknowledging can take entries with it when its
    /// replica is promoted. Costs a replication round trip per pipeline (see the README's Redis
    /// Cluster section for the measured cost). Off by default; `VOICECORE_REDIS_WAIT_REPLICAS=N`
    /// (and `VOICECORE_REDIS_WAIT_TIMEOUT_MS`, default 500) turn it on for every publisher of a process.
    public var replicaAcknowledgement: ReplicaAcknowledgement?

    public init(
        source: String,
        naming: StreamNaming = StreamNaming(),
        eventRetention: [StreamCategory: Retention] = Dictionary(uniqueKeysWithValues: StreamCategory.allCases.map { ($0, .maxAge(.seconds(7 * 86_400))) }),
        commandRetention: [StreamCategory: Retention] = Dictionary(uniqueKeysWithValues: StreamCategory.allCases.map { ($0, .maxAge(.seconds(86_400))) }),
        maxBatch: Int = 512,
        replicaAcknowledgement: ReplicaAcknowledgement? = PublisherConfiguration.replicaAcknowledgementFromEnvironment()
    ) {
        self.replicaAcknowledgement = replicaAcknowledgement
        self.source = source
        self.naming = naming
        self.eventRetention = eventRetention
        self.commandRetention = commandRetention
        self.maxBatch = max(1, maxBatch)
    }

    /// `VOICECORE_REDIS_WAIT_REPLICAS` (a positive number) and `VOICECORE_REDIS_WAIT_TIMEOUT_MS`.
    public static func replicaAcknowledgementFromEnvironment(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> ReplicaAcknowledgement? {
        guard let text = environment["VOICECORE_REDIS_WAIT_REPLICAS"], let replicas = Int(text), replicas > 0 else { return nil }
        let milliseconds = environment["VOICECORE_REDIS_WAIT_TIMEOUT_MS"].flatMap { Int($0) }.map { max(1, $0) } ?? 500
        return ReplicaAcknowledgement(replicas: replicas, timeout: .milliseconds(milliseconds))
    }

    /// The trim clause for a stream of this category and kind, at `nowMilliseconds`.
    func trim(_ category: StreamCategory, _ kind: MessageKind, nowMilliseconds: Int64) -> StreamTrim? {
        switch (kind == .event ? eventRetention[category] : commandRetention[category]) ?? .unbounded {
        case .unbounded:
            return nil
        case .maxLength(let count, let exact):
            return .maxLength(count, approximate: !exact)
        case .maxAge(let age, let exact):
            return .minID(StreamEntryID(milliseconds: UInt64(max(0, nowMilliseconds - age.milliseconds))), approximate: !exact)
        }
    }
}
