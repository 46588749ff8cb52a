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
import VoiceCoreRedis

struct ProjectCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "project",
        abstract: "Run projectors: keep the Postgres read models up to date from the event streams.",
        discussion: """
            The projections read their event streams once, as consumer group projector:<names>, \
            and each batch is applied to all of them in one Postgres transaction with their \
            checkpoints, so every event counts once whatever crashes. Run as many instances as you like (distinct --instance names): \
            partitions are shared out through Postgres advisory locks and a dead instance's \
            partitions are taken over. Needs the migrations applied (voicecore migrate up). Stops \
            gracefully on SIGTERM or SIGINT.

            Projections: \(StandardProjections.all.map { "\($0.name) (\($0.summary))" }.joined(separator: "; ")).

            With --probe-port (or VOICECORE_PROBE_PORT) it serves GET /health (200 while it runs), \
            GET /ready (200 when it keeps up; 503 problem+json naming the projection and why when \
            Redis or Postgres does not answer or when its gap grew while it applied nothing for \
            30 s) and GET /metrics (Prometheus: applied and failed counts, batch time, partitions \
            owned, and each projection's gap and oldest unprojected age, sampled every 5 s).
            """
    )

    @OptionGroup var connections: ConnectionOptions

    @Option(name: .customLong("only"), parsing: .upToNextOption, help: "Run only these projections (default: all).")
    var only: [String] = []

    @Option(help: "This instance's name, stable across restarts.")
    var instance = ProcessInfo.processInfo.hostName

    @Option(help: "Workers in this instance (each with its own connections; partitions are shared out among all workers of all instances).")
    var workers = 2

    @Option(help: "Entries read per stream per batch.")
    var batchSize = 250

    @Option(help: "Partitions per category (must match the deployment).")
    var partitions = 16

    @Option(help: "Stream key prefix (must match the deployment).")
    var prefix = "vc"

    @Option(help: ArgumentHelp("Testing aid: kill this process at a point of the commit protocol (before-commit:N, after-commit:N).", visibility: .hidden))
    var crashPoint: String?

    @OptionGroup var probes: ProbeOptions

    func validate() throws {
        _ = try probes.configuration()
    }

    func run() async throws {
        let probeConfiguration = try probes.configuration()
        // Before the runner makes its metrics: they are bound to the factory bootstrapped then.
        let registry = probeConfiguration.map { _ in PrometheusCollectorRegistry() }
        if let registry { MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry)) }
        let projections: [any Projection]
        do {
            projections = try StandardProjections.named(only)
        } catch let error as ProjectorError {
            throw ValidationError(error.message)
        }
        var configuration = ProjectorConfiguration(
            naming: StreamNaming(partitions: partitions, prefix: prefix), instance: instance,
            workers: workers, batchSize: batchSize)
        if let crashPoint {
            guard let point = ProjectorConfiguration.CrashPoint(crashPoint) else { throw ValidationError("--crash-point: use before-commit:N or after-commit:N") }
            configuration.crashPoint = point
        }
        let logger = Logger(label: "voicecore.projector")
        let runner = ProjectorRunner(
            projections: projections, redis: try connections.redisConfiguration(), postgres: try connections.postgresConfiguration(),
            configuration: configuration, logger: logger)
        var members: [ServiceGroupConfiguration.ServiceConfiguration] = []
        if let probeConfiguration {
            // Samples the gap for the gauges and the readiness at once.
            let readiness = ProjectorReadiness(runner: runner, naming: configuration.naming, redis: try connections.redisConfiguration(),
                                               postgres: try connections.postgresConfiguration(), logger: logger)
            // Listed first, so a graceful shutdown stops it last: /health answers while the runner drains.
            members.append(.init(service: ProbeServer(configuration: probeConfiguration, checks: readiness.checks, registry: registry, logger: logger).application()))
            members.append(.init(service: readiness))
        }
        members.append(.init(service: runner))
        // Trims the streams to their retention, never below what a group or a projection has not processed.
        members.append(.init(service: try RetentionTrimmer.holdingBackForProjections(
            naming: configuration.naming, redis: try connections.redisConfiguration(), postgres: try connections.postgresConfiguration(), logger: logger)))
        let serviceGroup = ServiceGroup(
            configuration: .stoppingWithinDrainBound(members, logger: logger))
        do {
            try await serviceGroup.run()
        } catch let error as ProjectorError {
            throw CommandFailure(error.message)
        }
    }
}

struct ProjectionsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "projections",
        abstract: "Show each projection's checkpoint against the stream heads: gap in entries and age of the oldest unprojected event.",
        discussion: """
            Per projection: entries after its checkpoints (summed over its streams), the age of the \
            oldest of them, and the entries it recorded as failed (projection_failures). --streams \
            adds a line per stream. A gap marked ≥ is a lower bound (counted up to 10000).
            """
    )

    @OptionGroup var connections: ConnectionOptions

    @Option(help: "Partitions per category (must match the deployment).")
    var partitions = 16

    @Option(help: "Stream key prefix (must match the deployment).")
    var prefix = "vc"

    @Flag(help: "Show every stream, not only the totals.")
    var streams = false

    @Flag(help: "Print JSON instead of a table.")
    var json = false

    func run() async throws {
        let redis = try await RedisClient.connect(try connections.redisConfiguration())
        let db = try await PostgresConnection.connect(try connections.postgresConfiguration())
        let statuses: [ProjectionStatus]
        do {
            statuses = try await ProjectionStatus.read(StandardProjections.all, naming: StreamNaming(partitions: partitions, prefix: prefix), streams: StreamInspector(connection: BusConnection(redis)), db: db)
        } catch let error as PostgresError where error.sqlState == "42P01" {
            throw CommandFailure("the read-model tables are missing: run `voicecore migrate up` first")
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            print(String(decoding: try encoder.encode(statuses.map { ProjectionStatusListing($0, streams: streams) }), as: UTF8.self))
            return
        }
        func pad(_ text: String, _ width: Int) -> String { text.count >= width ? text + " " : text + String(repeating: " ", count: width - text.count) }
        func age(_ seconds: Double?) -> String { seconds.map { String(format: "%.1f s", $0) } ?? "-" }
        print(pad("PROJECTION", 13) + pad("GAP", 10) + pad("OLDEST UNPROJECTED", 20) + "FAILURES")
        for status in statuses {
            print(pad(status.projection, 13) + pad((status.gapIsLowerBound ? "≥" : "") + String(status.gap), 10) + pad(age(status.oldestUnprojectedSeconds), 20) + String(status.failures))
            if streams {
                for stream in status.streams {
                    print("  " + pad(stream.stream, 26) + "checkpoint " + pad(stream.checkpoint?.description ?? "-", 17) + "head " + pad(stream.head?.description ?? "-", 17) + "gap \(stream.gap)")
                }
            }
        }
    }
}

/// A projection's status as `projections --json` prints it; each stream's only with `--streams`,
/// a value that is not known left out.
struct ProjectionStatusListing: Encodable {
    struct Stream: Encodable {
        var stream: String
        var gap: Int
        var checkpoint: String?
        var head: String?
        var oldestUnprojectedSeconds: Double?

        enum CodingKeys: String, CodingKey {
            case stream, gap, checkpoint, head, oldestUnprojectedSeconds = "oldest_unprojected_seconds"
        }
    }

    var projection: String
    var gap: Int
    var gapIsLowerBound: Bool
    var failures: Int
    var oldestUnprojectedSeconds: Double?
    var streams: [Stream]?

    enum CodingKeys: String, CodingKey {
        case projection, gap, gapIsLowerBound = "gap_is_lower_bound", failures, oldestUnprojectedSeconds = "oldest_unprojected_seconds", streams
    }

    init(_ status: ProjectionStatus, streams: Bool) {
        projection = status.projection
        gap = status.gap
        gapIsLowerBound = status.gapIsLowerBound
        failures = status.failures
        oldestUnprojectedSeconds = status.oldestUnprojectedSeconds
        self.streams = streams ? status.streams.map { stream in
            Stream(stream: stream.stream, gap: stream.gap, checkpoint: stream.checkpoint?.description, head: stream.head?.description,
                   oldestUnprojectedSeconds: stream.oldestUnprojectedSeconds)
        } : nil
    }
}
