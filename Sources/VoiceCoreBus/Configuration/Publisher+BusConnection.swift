import Logging
import Metrics

extension Publisher {
    /// A publisher that group-commits over `connection` (see ``BusConnection``).
    public convenience init(connection: BusConnection, configuration: PublisherConfiguration,
                            logger: Logger = Logger(label: "voicecore.bus.publisher"), metricsFactory: any MetricsFactory = MetricsSystem.factory) {
        self.init(connection: connection.client, configuration: configuration, logger: logger, metricsFactory: metricsFactory)
    }
}
