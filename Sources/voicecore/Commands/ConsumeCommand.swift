import ArgumentParser
import Foundation
import Logging
import Metrics
import Prometheus
import ServiceLifecycle
import VoiceCoreBus
import VoiceCoreEdge
import VoiceCoreEvents
import VoiceCoreServices
import VoiceCoreTenants

/// Which services, as whom, on which streams (shared by `consume` and `up`).
struct ServiceOptions: ParsableArguments {
    @Option(help: "This process's name in each consumer group, stable across restarts (default: the host name).")
    var instance = ProcessInfo.processInfo.hostName

    @Option(help: "Attempts of an outbound webhook delivery before it is recorded in the failures stream, 1…100 (default: $VOICECORE_WEBHOOK_ATTEMPTS, else 8).")
    var webhookAttempts: Int?

    @Option(help: "Seconds before a failed webhook delivery is tried again, doubling per failure up to 600, 0.05…600 (default: $VOICECORE_WEBHOOK_RETRY_DELAY, else 2).")
    var webhookRetryDelay: Double?

    /// How the integrations service delivers webhooks: the flags, else the environment, else the defaults.
    func webhookDelivery() throws -> WebhookDelivery {
        let environment = ProcessInfo.processInfo.environment
        var attempts = webhookAttempts
        if attempts == nil, let text = environment["VOICECORE_WEBHOOK_ATTEMPTS"], !text.isEmpty {
            guard let number = Int(text) else { throw ValidationError("VOICECORE_WEBHOOK_ATTEMPTS must be a whole number, 1…100 (got \"\(text)\")") }
            attempts = number
        }
        var delay = webhookRetryDelay
        if delay == nil, let text = environment["VOICECORE_WEBHOOK_RETRY_DELAY"], !text.isEmpty {
            guard let seconds = Double(text) else { throw ValidationError("VOICECORE_WEBHOOK_RETRY_DELAY must be seconds, 0.05…600 (got \"\(text)\")") }
            delay = seconds
        }
        let defaults = WebhookDelivery()
        if let attempts, !(1...100).contains(attempts) {
            throw ValidationError("--webhook-attempts (or VOICECORE_WEBHOOK_ATTEMPTS) must be 1…100, got \(attempts)")
        }
        if let delay, !(delay.isFinite && (0.05...600).contains(delay)) {
            throw ValidationError("--webhook-retry-delay (or VOICECORE_WEBHOOK_RETRY_DELAY) must be 0.05…600 seconds, got \(delay)")
        }
        let initial = delay.map { Duration.milliseconds(Int64(($0 * 1000).rounded())) } ?? defaults.initialDelay
        return WebhookDelivery(maxAttempts: attempts ?? defaults.maxAttempts, initialDelay: initial, maxDelay: max(defaults.maxDelay, initial))
    }

    func dependencies(_ connections: ConnectionOptions, naming: StreamNaming, directory: TenantDirectory, logger: Logger) throws -> ServiceDependencies {
        ServiceDependencies(redis: try connections.redisConfiguration(), naming: naming, tenants: TenantProfiles(source: directory),
                            instance: instance, logger: logger)
    }
}

struct ConsumeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "consume",
        abstract: "Run one of the platform's services as a consumer group (scale out by running more, with distinct --instance names).",
        discussion: """
            Services: \(PlatformServices.all.map { "\($0.name) (\($0.summary))" }.joined(separator: "; ")).

            Each service reads its streams as consumer group NAME; instances share the partitions \
            through leases, and every message is acknowledged only after what it causes is \
            published (once: derived messages are deduplicated, so a crash and redelivery \
            publish nothing twice). Needs VOICECORE_MASTER_KEY and the migrations applied (the \
            services read tenant plans, AI settings and webhooks from the tenant directory). The \
            AI service uses an OpenAI-compatible provider when VOICECORE_AI_BASE_URL is set \
            (VOICECORE_AI_API_KEY, VOICECORE_AI_MODEL), its built-in detector otherwise or when the \
            provider fails. Stops gracefully on SIGTERM or SIGINT, within 10 s (what is unfinished stays pending for the next start).

            With --probe-port (or VOICECORE_PROBE_PORT) it serves GET /health (200 while it runs), \
            GET /ready (200 when it keeps up; 503 problem+json naming the consumer group and why \
            when Redis does not answer, when an outage of Redis or Postgres pauses it, or when its \
            lag grew while it handled nothing for 30 s) and GET /metrics (Prometheus: handled, \
            failed and dead-lettered counts, handler latency, and every stream's group lag, \
            pending entries, oldest pending age and dead-letter depth, sampled every 10 s).
            """
    )

    @Argument(help: "The service: \(PlatformServices.all.map(\.name).joined(separator: ", ")).")
    var name: String

    @OptionGroup var connections: ConnectionOptions
    @OptionGroup var service: ServiceOptions

    @Option(help: "Partitions per category (must match the deployment).")
    var partitions = 16

    @Option(help: "Stream key prefix (must match the deployment).")
    var prefix = "vc"

    @OptionGroup var probes: ProbeOptions

    func validate() throws {
        guard PlatformServices.all.contains(where: { $0.name == name }) else {
            throw ValidationError(PlatformServices.UnknownService(name: name).description)
        }
        _ = try probes.configuration()
        _ = try service.webhookDelivery()
    }

    func run() async throws {
        let logger = Logger(label: "voicecore.\(name)")
        let probeConfiguration = try probes.configuration()
        // Before anything makes its metrics: they are bound to the factory bootstrapped then.
        let registry = probeConfiguration.map { _ in PrometheusCollectorRegistry() }
        if let registry { MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry)) }
        let directory = try await TenantsCommand.directory(connections)
        let dependencies = try service.dependencies(connections, naming: StreamNaming(partitions: partitions, prefix: prefix), directory: directory, logger: logger)
        let services = try await PlatformServices.make([name], dependencies: dependencies, directory: directory, delivery: try service.webhookDelivery())
        var members: [ServiceGroupConfiguration.ServiceConfiguration] = []
        if let probeConfiguration {
            let readiness = ConsumerReadiness(runners: services.compactMap { $0 as? ConsumerGroupRunner }, redis: try connections.redisConfiguration(), logger: logger)
            // Listed first, so a graceful shutdown stops it last: /health answers while the service drains.
            members.append(.init(service: ProbeServer(configuration: probeConfiguration, checks: readiness.checks, registry: registry, logger: logger).application()))
            members.append(.init(service: readiness))
            members.append(.init(service: CancelledAtShutdown(StreamMetricsCollector(redis: try connections.redisConfiguration(), prefix: prefix, logger: logger))))
        }
        members.append(.init(service: ServiceBundle(services)))
        logger.info("service started", metadata: ["service": "\(name)", "instance": "\(service.instance)"])
        try await ServiceGroup(configuration: .stoppingWithinDrainBound(members, logger: logger)).run()
    }
}
