import ArgumentParser
import Foundation
import Logging
import ServiceLifecycle
import VoiceCoreEvents
import VoiceCoreServices
import VoiceCoreTenants

/// Which services, as whom, on which streams (shared by `consume` and `up`).
struct ServiceOptions: ParsableArguments {
    @Option(help: "This process's name in each consumer group, stable across restarts (default: the host name).")
    var instance = ProcessInfo.processInfo.hostName

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
            provider fails. Stops gracefully on SIGTERM or SIGINT.
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

    func validate() throws {
        guard PlatformServices.all.contains(where: { $0.name == name }) else {
            throw ValidationError(PlatformServices.UnknownService(name: name).description)
        }
    }

    func run() async throws {
        let logger = Logger(label: "voicecore.\(name)")
        let directory = try await TenantsCommand.directory(connections)
        let dependencies = try service.dependencies(connections, naming: StreamNaming(partitions: partitions, prefix: prefix), directory: directory, logger: logger)
        let services = try await PlatformServices.make([name], dependencies: dependencies, directory: directory)
        logger.info("service started", metadata: ["service": "\(name)", "instance": "\(service.instance)"])
        try await ServiceGroup(configuration: ServiceGroupConfiguration(
            services: [.init(service: ServiceBundle(services))], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)).run()
    }
}
