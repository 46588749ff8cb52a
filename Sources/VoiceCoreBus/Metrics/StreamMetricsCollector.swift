import Logging
import Metrics
import ServiceLifecycle
import VoiceCoreRedis

/// Samples every stream under a prefix and reports consumer-group lag, pending entries, the oldest
/// pending entry's idle time and dead-letter depth as gauges (see ``BusMetricNames``).
public final class StreamMetricsCollector: Service, Sendable {
    private let redis: RedisConfiguration
    private let prefix: String
    private let interval: Duration
    private let factory: any MetricsFactory
    private let logger: Logger

    public init(redis: RedisConfiguration, prefix: String = "vc", interval: Duration = .seconds(10),
                factory: any MetricsFactory = MetricsSystem.factory, logger: Logger = Logger(label: "voicecore.bus.metrics")) {
        self.redis = redis
        self.prefix = prefix
        self.interval = interval
        self.factory = factory
        self.logger = logger
    }

    public func run() async throws {
        let connection = try await RedisClient.connect(redis, logger: logger)
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            do {
                try await sample(StreamAdmin(connection: connection))
            } catch {
                // The connection reconnects by itself at the next sample.
                logger.info("stream metrics not sampled", metadata: ["error": "\(error)"])
            }
            try? await Task.sleep(for: interval)
        }
    }

    /// One sample of every stream (public for tests and one-shot use).
    public func sample(_ admin: StreamAdmin) async throws {
        for stream in try await admin.streams(prefix: prefix) {
            let report = try await admin.report(stream)
            if stream.contains(":dlq:") {
                Gauge(label: BusMetricNames.deadLetters, dimensions: [("stream", stream)], factory: factory).record(report.length)
                continue
            }
            for group in report.groups {
                let dimensions = [("stream", stream), ("group", group.name)]
                Gauge(label: BusMetricNames.lag, dimensions: dimensions, factory: factory).record(group.lag ?? 0)
                Gauge(label: BusMetricNames.pending, dimensions: dimensions, factory: factory).record(group.pending)
                Gauge(label: BusMetricNames.oldestPending, dimensions: dimensions, factory: factory).record(Double(group.oldestPendingIdleMs ?? 0) / 1000)
            }
        }
    }
}
