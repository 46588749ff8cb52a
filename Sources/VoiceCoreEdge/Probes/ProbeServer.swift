import Hummingbird
import Logging
import NIOCore
import Prometheus
import ServiceLifecycle
import VoiceCoreBus
import VoiceCoreEvents

/// Where a ``ProbeServer`` listens.
public struct ProbeConfiguration: Sendable, Hashable {
    /// The address to bind (`0.0.0.0` for probes from outside the host or container).
    public var host: String
    /// The port; 0 takes any free one (the server's `onServerRunning` tells which).
    public var port: Int

    public init(host: String = "127.0.0.1", port: Int) {
        self.host = host
        self.port = port
    }
}

/// The operations listener of a process that serves no HTTP of its own (`voicecore consume`,
/// `voicecore project`): what an orchestrator and Prometheus ask of every long-running process.
///
/// - `GET /health` — 200 while the process runs (liveness: restart it when this fails);
/// - `GET /ready` — 200 when every ``ReadinessCheck`` is ready, else 503 problem+json naming each
///   check that is not and why (see `ReadinessAnswer`);
/// - `GET /metrics` — the Prometheus registry as text (404 without one).
///
/// ```swift
/// let probes = ProbeServer(configuration: ProbeConfiguration(port: 9090), checks: consumers.checks, registry: registry)
/// try await ServiceGroup(services: [probes.application(), runner, consumers], logger: logger).run()
/// ```
public struct ProbeServer: Sendable {
    public let configuration: ProbeConfiguration
    let checks: [ReadinessCheck]
    let registry: PrometheusCollectorRegistry?
    let logger: Logger

    public init(configuration: ProbeConfiguration, checks: [ReadinessCheck], registry: PrometheusCollectorRegistry?,
                logger: Logger = Logger(label: "voicecore.probes")) {
        self.configuration = configuration
        self.checks = checks
        self.registry = registry
        self.logger = logger
    }

    /// The three routes; anything else is 404.
    public func router() -> Router<BasicRequestContext> {
        let router = Router(context: BasicRequestContext.self)
        let checks = checks
        let registry = registry
        router.get("/health") { _, _ in
            Response(status: .ok, headers: [.contentType: MediaType.applicationJson.description],
                     body: .init(byteBuffer: ByteBuffer(bytes: JSONObjectWriter.object { $0.field("status", "ok") })))
        }
        router.get("/ready") { _, _ in ReadinessAnswer.response(await ReadinessCheck.evaluateAll(checks)) }
        router.get("/metrics") { _, _ in
            guard let registry else { throw Problem(.notFound, "Not found", detail: "this process exports no metrics") }
            var text: [UInt8] = []
            registry.emit(into: &text)
            return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(bytes: text)))
        }
        return router
    }

    /// The listener as a service for a `ServiceGroup`; it stops with the group's graceful shutdown.
    /// - Parameter onServerRunning: called once it listens, with its channel (its `localAddress`
    ///   tells the port when ``ProbeConfiguration/port`` is 0).
    public func application(onServerRunning: @escaping @Sendable (any Channel) async -> Void = { _ in }) -> some Service {
        let logger = logger
        return Application(
            router: router(),
            configuration: ApplicationConfiguration(address: .hostname(configuration.host, port: configuration.port), serverName: "voicecore-probes"),
            onServerRunning: { channel in
                logger.info("probes listening", metadata: ["address": "\(channel.localAddress.map { "\($0)" } ?? "?")", "routes": "/health /ready /metrics"])
                await onServerRunning(channel)
            },
            logger: logger)
    }
}
