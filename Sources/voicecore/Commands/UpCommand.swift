import ArgumentParser
import Foundation
import Logging
import Metrics
import Prometheus
import ServiceLifecycle
import VoiceCoreBus
import VoiceCoreEdge
import VoiceCoreEvents
import VoiceCorePostgres
import VoiceCoreProjections
import VoiceCoreQueries
import VoiceCoreRedis
import VoiceCoreServices
import VoiceCoreTenants
import VoiceCoreTime

struct UpCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "up",
        abstract: "Run the whole platform in one process: the edge, every service and the projectors.",
        discussion: """
            Applies the migrations, provisions a demo tenant when there is none (printing its API \
            key, Twilio credentials and webhook URLs), then runs the HTTP edge, the services \
            (\(PlatformServices.all.map(\.name).joined(separator: ", "))) and the projectors as one \
            ServiceGroup. With --demo it also plays a demo call into the edge once it listens and \
            prints the rows it produced (see `voicecore demo`). In production run the parts as \
            separate processes instead (voicecore edge, voicecore consume NAME, voicecore project). \
            Needs VOICECORE_MASTER_KEY. Stops gracefully on SIGTERM or SIGINT, within 10 s (what is unfinished stays pending for the next start).

            The edge's GET /ready answers for the whole process: 200 listing every consumer group \
            and projection, or 503 problem+json naming each that is not ready and why (Redis or \
            Postgres does not answer, or its backlog grew while it processed nothing for 30 s); \
            GET /metrics includes the services' and projectors' metrics, every stream's group lag, \
            pending entries, oldest pending age and dead-letter depth, and the projection gaps.

            The privacy service advances caller erasures (POST /v1/privacy/erasures) and runs the \
            retention job every VOICECORE_RETENTION_INTERVAL seconds (see `voicecore privacy`).

            The tenant API's reads (GET /v1/calls, …) run through a Postgres pool of their own \
            (--read-pool-size, --read-statement-timeout-ms, --read-acquire-timeout-ms).
            """
    )

    @OptionGroup var connections: ConnectionOptions
    @OptionGroup var edge: EdgeOptions
    @OptionGroup var service: ServiceOptions
    @OptionGroup var feed: EventFeedOptions
    @OptionGroup var reads: ReadOptions

    @Option(help: "The migrations directory.")
    var migrations = "database/migrations"

    @Option(help: "Projector workers.")
    var projectorWorkers = 2

    @Flag(help: "Play a demo call into the edge once it listens, and print the rows it produced.")
    var demo = false

    func run() async throws {
        // Refused before anything starts.
        let delivery = try service.webhookDelivery()
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        let logger = Logger(label: "voicecore.up")
        let migrationConnection = try await PostgresConnection.connect(try connections.postgresConfiguration())
        let applied = try await Migrator(connection: migrationConnection, directory: URL(fileURLWithPath: migrations)).up()
        if !applied.isEmpty { logger.info("migrations applied", metadata: ["versions": "\(applied.map(\.version))"]) }
        await migrationConnection.close()

        let configuration = try edge.configuration()
        let directory = try await TenantsCommand.directory(connections)
        let base = configuration.publicBaseURL ?? "http://\(configuration.host == "0.0.0.0" ? "127.0.0.1" : configuration.host):\(configuration.port)"
        // The demo tenant's API key, known only when this run provisions it (the demo call reads its call back with it).
        var demoAPIKey: String?
        if try await directory.list().isEmpty {
            demoAPIKey = try await DemoTenant.provision(directory: directory, connections: connections, naming: edge.naming, publicBase: base)
        }

        let reads = try self.reads.tenantReads(connections, logger: logger)
        var edgeService = try await Edge.connect(connections: connections, options: edge, reads: reads, registry: registry, logger: Logger(label: "voicecore.edge"))
        let naming = edge.naming
        let services = try await PlatformServices.make(
            [], dependencies: try service.dependencies(connections, naming: naming, directory: directory, logger: Logger(label: "voicecore.services")),
            directory: directory, delivery: delivery)
        let projections = StandardProjections.all
        let projectors = ProjectorRunner(
            projections: projections, redis: try connections.redisConfiguration(), postgres: try connections.postgresConfiguration(),
            configuration: ProjectorConfiguration(naming: naming, instance: service.instance, workers: projectorWorkers),
            logger: Logger(label: "voicecore.projector"))
        // The edge's /ready and /metrics answer for the whole process: its consumers' and
        // projectors' readiness, the stream and projection-gap gauges (one listener, not two).
        let consumerReadiness = ConsumerReadiness(runners: services.compactMap { $0 as? ConsumerGroupRunner }, redis: try connections.redisConfiguration(), logger: logger)
        let projectorReadiness = ProjectorReadiness(runner: projectors, naming: naming, redis: try connections.redisConfiguration(),
                                                    postgres: try connections.postgresConfiguration(), logger: logger)
        edgeService.readinessChecks = consumerReadiness.checks + projectorReadiness.checks
        let feed = try await self.feed.eventFeed(connections, naming: naming, logger: logger)
        edgeService.eventFeed = feed
        let turns = try await edge.turnReplies(connections, logger: logger)
        edgeService.turnReplies = turns
        // The operator's console pages (signed in with the admin key).
        if configuration.adminKey != nil {
            edgeService.operatorConsole = try await ConsoleOperatorBackends.connect(connections, naming: naming, reads: reads, logger: logger)
        }
        var members: [ServiceGroupConfiguration.ServiceConfiguration] = [.init(service: ReadPoolClosing(pool: reads.pool)), .init(service: turns),
                                                                         .init(service: edgeService.application())]
        members.append(.init(service: ServiceBundle(services)))
        members += [.init(service: projectors), .init(service: projectorReadiness), .init(service: consumerReadiness),
                    .init(service: CancelledAtShutdown(StreamMetricsCollector(redis: try connections.redisConfiguration(), prefix: edge.prefix, logger: logger)))]
        // Trims the streams to their retention, never below what a group or a projection has not processed.
        members.append(.init(service: try RetentionTrimmer.holdingBackForProjections(
            naming: naming, redis: try connections.redisConfiguration(), postgres: try connections.postgresConfiguration(), logger: logger)))
        // Caller erasures asked for through the API advance here; retention runs hourly.
        members.append(.init(service: try await PrivacyCommand.service(connections, naming: naming, logger: Logger(label: "voicecore.privacy"))))
        // Last: shutdown runs backwards, so the feed ends its open streams before the server drains.
        members.append(.init(service: feed))
        if demo {
            members.append(.init(service: DemoService(connections: connections, edgeURL: "http://127.0.0.1:\(configuration.port)", publicBase: base,
                                                      apiKey: demoAPIKey),
                                 successTerminationBehavior: .ignore))
        }
        logger.info("voicecore up", metadata: ["edge": "\(configuration.host):\(configuration.port)", "services": "\(PlatformServices.all.map(\.name))",
                                               "projections": "\(projections.map(\.name))"])
        try await ServiceGroup(configuration: .stoppingWithinDrainBound(members, logger: logger)).run()
    }
}

/// The tenant `voicecore up` creates on an empty directory, with Twilio test credentials so
/// `voicecore demo` can sign callbacks like Twilio.
enum DemoTenant {
    /// Provisions the demo tenant and returns its API key. With `VOICECORE_DEMO_API_KEY_FILE` set
    /// (tools/dev-env sets it to .local/demo-api.key) the key is also written there, readable by
    /// this user only, so `tools/demo` and the README's curl line can read calls with it.
    @discardableResult
    static func provision(directory: TenantDirectory, connections: ConnectionOptions, naming: StreamNaming, publicBase: String) async throws -> String {
        let redis = try await RedisClient.connect(try connections.redisConfiguration())
        let publisher = Publisher(connection: redis, configuration: PublisherConfiguration(source: "/cli/up", naming: naming))
        let hex = { (count: Int) in (0..<count).map { _ in String(format: "%x", Int.random(in: 0..<16)) }.joined() }
        let provisioned = try await directory.provision(
            NewTenant(name: "Demo Receptionist", twilioAccountSID: "AC" + hex(32), twilioAuthToken: hex(32)), publisher: publisher)
        await redis.close()
        let id = provisioned.tenant.id
        say("""
            Demo tenant provisioned: \(provisioned.tenant.name) (\(id))
              API key            \(provisioned.apiKey.plaintext)   (shown once)
              Twilio voice URL   \(publicBase)/webhooks/twilio/\(id)/voice
              Twilio status URL  \(publicBase)/webhooks/twilio/\(id)/status
              Telnyx webhook URL \(publicBase)/webhooks/telnyx/\(id)
            Its Twilio credentials are test values: `voicecore demo` signs calls with them.
            """)
        let key = provisioned.apiKey.plaintext
        if let path = ProcessInfo.processInfo.environment[DemoAPIKey.fileVariable], !path.isEmpty {
            try DemoAPIKey.store(key, at: path)
            say("  (API key stored in \(path) for tools/demo)")
        }
        return key
    }
}

/// Plays the demo call once the edge listens (`voicecore up --demo`).
struct DemoService: Service {
    let connections: ConnectionOptions
    let edgeURL: String
    let publicBase: String
    /// The tenant's API key, when known, for reading the call back.
    let apiKey: String?

    func run() async throws {
        try await Task.sleep(for: .seconds(1))
        do {
            try await DemoPlayer(connections: connections, edgeURL: edgeURL, publicBase: publicBase, apiKey: apiKey).run(tenant: nil)
        } catch {
            Logger(label: "voicecore.demo").error("demo call failed", metadata: ["error": "\(error)"])
        }
    }
}
