import ServiceLifecycle

/// Runs a sampling service (a metrics collector) that is cancelled when a graceful shutdown
/// begins: it has nothing to drain, and one that sleeps between samples would otherwise hold the
/// ServiceGroup's shutdown, and so the process's drain bound, for up to its whole interval.
struct CancelledAtShutdown: Service {
    let service: any Service

    init(_ service: any Service) {
        self.service = service
    }

    func run() async throws {
        do {
            try await cancelWhenGracefulShutdown { try await service.run() }
        } catch is CancellationError where Task.isShuttingDownGracefully {
            // Cancelled because the process stops: that is how it ends.
        }
    }
}
