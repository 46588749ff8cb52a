import Metrics
import Synchronization

/// The bus's metric names (Prometheus style). Dimensions in brackets.
///
/// | name | kind | meaning |
/// | --- | --- | --- |
/// | `voicecore_bus_published_total` | counter | entries Redis acknowledged |
/// | `voicecore_bus_publish_failed_total` | counter | publishes that failed |
/// | `voicecore_bus_publish_batch_seconds` | timer | one pipeline round trip |
/// | `voicecore_bus_handled_total` [group] | counter | entries handled and acknowledged |
/// | `voicecore_bus_handler_failed_total` [group] | counter | handler attempts that threw (each retry counts) |
/// | `voicecore_bus_dead_lettered_total` [group] | counter | entries moved to a dead-letter stream |
/// | `voicecore_bus_claimed_total` [group] | counter | entries taken over from other consumers |
/// | `voicecore_bus_outage_retries_total` [group] | counter | handling retried because Redis or Postgres did not answer (the entry's delivery budget untouched) |
/// | `voicecore_bus_waiting_on_outage` [group] | gauge | partitions and readers waiting now for Redis or Postgres to answer |
/// | `voicecore_bus_handler_seconds` [group, type] | timer | handler latency |
/// | `voicecore_bus_group_lag` [stream, group] | gauge | entries not yet delivered to the group |
/// | `voicecore_bus_group_pending` [stream, group] | gauge | delivered, not acknowledged |
/// | `voicecore_bus_group_oldest_pending_seconds` [stream, group] | gauge | idle time of the oldest pending entry |
/// | `voicecore_bus_dead_letters` [stream] | gauge | entries in a dead-letter stream |
/// | `voicecore_bus_retention_held_back_seconds` [stream, group] | gauge | how far (entry time) the group keeps the stream beyond its age bound |
/// | `voicecore_bus_retention_held_back_entries` [stream] | gauge | entries kept beyond the bound because a reader has not processed them (counted up to 10,000) |
/// | `voicecore_bus_retention_abandoned_group` [stream, group] | gauge | 1: no consumer seen for the abandonment time, the group no longer holds retention back |
/// | `voicecore_bus_retention_trimmed_total` | counter | entries the retention trimmer removed |
public enum BusMetricNames {
    public static let published = "voicecore_bus_published_total"
    public static let publishFailed = "voicecore_bus_publish_failed_total"
    public static let publishBatch = "voicecore_bus_publish_batch_seconds"
    public static let handled = "voicecore_bus_handled_total"
    public static let handlerFailed = "voicecore_bus_handler_failed_total"
    public static let deadLettered = "voicecore_bus_dead_lettered_total"
    public static let claimed = "voicecore_bus_claimed_total"
    public static let outageRetries = "voicecore_bus_outage_retries_total"
    public static let waitingOnOutage = "voicecore_bus_waiting_on_outage"
    public static let handlerDuration = "voicecore_bus_handler_seconds"
    public static let lag = "voicecore_bus_group_lag"
    public static let pending = "voicecore_bus_group_pending"
    public static let oldestPending = "voicecore_bus_group_oldest_pending_seconds"
    public static let deadLetters = "voicecore_bus_dead_letters"
    public static let retentionHeldBackSeconds = "voicecore_bus_retention_held_back_seconds"
    public static let retentionHeldBackEntries = "voicecore_bus_retention_held_back_entries"
    public static let retentionAbandonedGroup = "voicecore_bus_retention_abandoned_group"
    public static let retentionTrimmed = "voicecore_bus_retention_trimmed_total"
}

/// The publisher's metrics.
struct PublisherMetrics: Sendable {
    let published: Counter
    let failed: Counter
    let batch: Metrics.Timer

    init(factory: any MetricsFactory) {
        published = Counter(label: BusMetricNames.published, factory: factory)
        failed = Counter(label: BusMetricNames.publishFailed, factory: factory)
        batch = Metrics.Timer(label: BusMetricNames.publishBatch, factory: factory)
    }
}

/// A consumer group runner's metrics.
final class ConsumerMetrics: Sendable {
    let handled: Counter
    let failed: Counter
    let deadLettered: Counter
    let claimed: Counter
    let outageRetries: Counter
    let waitingOnOutage: Gauge
    private let group: String
    private let factory: any MetricsFactory
    private let timers = Mutex<[String: Metrics.Timer]>([:])

    init(group: String, factory: any MetricsFactory) {
        self.group = group
        self.factory = factory
        handled = Counter(label: BusMetricNames.handled, dimensions: [("group", group)], factory: factory)
        failed = Counter(label: BusMetricNames.handlerFailed, dimensions: [("group", group)], factory: factory)
        deadLettered = Counter(label: BusMetricNames.deadLettered, dimensions: [("group", group)], factory: factory)
        claimed = Counter(label: BusMetricNames.claimed, dimensions: [("group", group)], factory: factory)
        outageRetries = Counter(label: BusMetricNames.outageRetries, dimensions: [("group", group)], factory: factory)
        waitingOnOutage = Gauge(label: BusMetricNames.waitingOnOutage, dimensions: [("group", group)], factory: factory)
    }

    /// The handler timer of a message type (made once per type).
    func handlerTimer(_ type: String) -> Metrics.Timer {
        timers.withLock { timers in
            if let timer = timers[type] { return timer }
            let timer = Metrics.Timer(label: BusMetricNames.handlerDuration, dimensions: [("group", group), ("type", type)], factory: factory)
            timers[type] = timer
            return timer
        }
    }
}

extension Metrics.Timer {
    /// Records the time since `start`.
    public func record(since start: ContinuousClock.Instant) {
        let elapsed = ContinuousClock.now - start
        recordNanoseconds(elapsed.components.seconds * 1_000_000_000 + elapsed.components.attoseconds / 1_000_000_000)
    }
}
