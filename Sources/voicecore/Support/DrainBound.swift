import Logging
import ServiceLifecycle
import UnixSignals

extension ServiceGroupConfiguration {
    /// How long a graceful shutdown may take before what still runs is cancelled: consumers stop
    /// reading and finish and acknowledge what they hold, the edge answers what it has. A part
    /// that waits on Redis or Postgres (an outage) leaves its entries pending for the next start.
    static let drainBound: Duration = .seconds(8)
    /// How long cancelled parts may take to end after that (a blocking read of a few seconds at
    /// most); then the process exits anyway.
    static let cancellationBound: Duration = .seconds(2)

    /// The long-running commands' group: stops on SIGTERM or SIGINT, within ``drainBound`` plus
    /// ``cancellationBound`` (10 s, what an orchestrator gives before SIGKILL by default).
    static func stoppingWithinDrainBound(_ services: [ServiceConfiguration], logger: Logger) -> ServiceGroupConfiguration {
        var configuration = ServiceGroupConfiguration(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        configuration.maximumGracefulShutdownDuration = drainBound
        configuration.maximumCancellationDuration = cancellationBound
        return configuration
    }
}
