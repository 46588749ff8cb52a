import ArgumentParser
import Foundation
import Hummingbird
import Logging
import Metrics
import NIOCore
import Prometheus
import ServiceLifecycle
import VoiceCoreBus
import VoiceCoreEdge
import VoiceCoreEvents
import VoiceCorePostgres
import VoiceCoreQueries
import VoiceCoreRedis
import VoiceCoreTenants

/// Where the edge listens and how providers reach it (shared by `edge` and `up`).
struct EdgeOptions: ParsableArguments {
    @Option(help: "Address to listen on (default: $VOICECORE_EDGE_HOST, else 127.0.0.1).")
    var host: String?

    @Option(help: "Port to listen on (default: $VOICECORE_EDGE_PORT, else 8080).")
    var port: Int?

    @Option(name: .customLong("public-url"), help: "The URL providers call, e.g. https://voice.example.com (default: $VOICECORE_PUBLIC_URL, else http://<Host header>). Twilio signs the URL it requested: set this behind a proxy or tunnel.")
    var publicURL: String?

    @Option(help: "Event-loop threads that parse, handle and answer requests (default: $VOICECORE_EDGE_THREADS, else one per core).")
    var threads: Int?

    @Flag(name: .customLong("publisher-thread"),
          help: "Publish through the bus publisher's Redis thread instead of a Redis connection per event loop (always so on a Redis Cluster).")
    var publisherThread = false

    @Option(name: .customLong("turn-deadline-ms"),
            help: "Milliseconds a caller's turn waits for the receptionist's reply before the caller hears a holding line (default: $VOICECORE_TURN_DEADLINE_MS, else 2500).")
    var turnDeadlineMilliseconds: Int?

    @Option(name: .customLong("trusted-proxy"),
            help: "Address of a reverse proxy in front of the edge whose X-Forwarded-For names the client (for the console's sign-in limit); repeatable (default: $VOICECORE_TRUSTED_PROXIES, comma-separated, else none: the connection's address counts).")
    var trustedProxies: [String] = []

    @Option(help: "Partitions per category (must match the deployment).")
    var partitions = 16

    @Option(help: "Stream key prefix (must match the deployment).")
    var prefix = "vc"

    func configuration() throws -> EdgeConfiguration {
        let environment = ProcessInfo.processInfo.environment
        let port = port ?? environment["VOICECORE_EDGE_PORT"].flatMap(Int.init) ?? 8080
        guard (1...65535).contains(port) else { throw ValidationError("--port (or VOICECORE_EDGE_PORT) must be 1…65535") }
        let threads = threads ?? environment["VOICECORE_EDGE_THREADS"].flatMap(Int.init) ?? System.coreCount
        guard (1...256).contains(threads) else { throw ValidationError("--threads (or VOICECORE_EDGE_THREADS) must be 1…256") }
        let turnDeadline: Int
        if let turnDeadlineMilliseconds {
            turnDeadline = turnDeadlineMilliseconds
        } else if let text = environment["VOICECORE_TURN_DEADLINE_MS"], !text.isEmpty {
            guard let value = Int(text) else { throw ValidationError("VOICECORE_TURN_DEADLINE_MS must be a whole number of milliseconds, not '\(text)'") }
            turnDeadline = value
        } else {
            turnDeadline = 2500
        }
        guard (1...60_000).contains(turnDeadline) else { throw ValidationError("--turn-deadline-ms (or VOICECORE_TURN_DEADLINE_MS) must be 1…60000") }
        let proxies = try trustedProxyAddresses()
        return EdgeConfiguration(
            host: host ?? environment["VOICECORE_EDGE_HOST"] ?? "127.0.0.1", port: port,
            publicBaseURL: publicURL ?? Self.publicURLFromEnvironment,
            adminKey: environment["VOICECORE_ADMIN_KEY"].flatMap { $0.isEmpty ? nil : $0 }, eventLoopThreads: threads,
            publishOnEventLoops: !publisherThread, turnDeadline: .milliseconds(turnDeadline), trustedProxies: Set(proxies))
    }

    /// Refuses bad values before anything connects.
    func validate() throws {
        _ = try trustedProxyAddresses()
    }

    /// `--trusted-proxy`, else `VOICECORE_TRUSTED_PROXIES` (comma-separated): IP addresses only.
    func trustedProxyAddresses() throws -> [String] {
        let environment = ProcessInfo.processInfo.environment["VOICECORE_TRUSTED_PROXIES"] ?? ""
        let proxies = trustedProxies.isEmpty ? environment.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
                                             : trustedProxies
        for proxy in proxies where !Self.isIPAddress(proxy) {
            throw ValidationError("--trusted-proxy (or VOICECORE_TRUSTED_PROXIES) takes IP addresses such as 10.0.0.2, not '\(proxy)'")
        }
        return proxies
    }

    /// An IPv4 or IPv6 address as the server reports a connection's (no names, no ports).
    static func isIPAddress(_ text: String) -> Bool {
        (try? SocketAddress(ipAddress: text, port: 0)) != nil
    }

    var naming: StreamNaming { StreamNaming(partitions: partitions, prefix: prefix) }

    /// The edge's waits for receptionist replies: one tail of the conversations event streams, on
    /// connections of its own. Run it as a service before the HTTP server in the group (shutdown
    /// runs backwards: turns still waiting while the server drains get their replies).
    func turnReplies(_ connections: ConnectionOptions, logger: Logger) async throws -> TurnReplies {
        // The tenants streams too: a CallerErased drops the erased calls' cached replies.
        let streams = naming.streams(.conversations, kind: .event) + naming.streams(.tenants, kind: .event)
        let tail = try await StreamTail.connect(try connections.redisConfiguration(), clientName: "vc-edge:turns",
                                                configuration: StreamTail.Configuration(streams: streams), logger: Logger(label: "voicecore.edge.turns"))
        logger.info("turn replies", metadata: ["streams": "\(streams.count)"])
        return TurnReplies(tail: tail, logger: Logger(label: "voicecore.edge.turns"))
    }

    /// `VOICECORE_PUBLIC_URL`, when set and not empty.
    static var publicURLFromEnvironment: String? {
        ProcessInfo.processInfo.environment["VOICECORE_PUBLIC_URL"].flatMap { $0.isEmpty ? nil : $0 }
    }
}

struct EdgeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "edge",
        abstract: "Run the HTTP edge: verify telephony webhooks and tenant API calls, publish them as commands.",
        discussion: """
            Routes: POST /webhooks/twilio/<tenant>/{voice,status,transcription}, the \
            conversation's Twilio callbacks (gather?turn=N, recording, recorded, relay/ended: each \
            caller turn waits for the receptionist's reply up to --turn-deadline-ms), POST \
            /webhooks/telnyx/<tenant>, the tenant API under /v1 (Bearer API key: commands, and \
            reads such as GET /v1/calls through a pool of --read-pool-size Postgres connections, \
            each statement bounded by --read-statement-timeout-ms), the admin API \
            under /admin (Bearer $VOICECORE_ADMIN_KEY; absent without it), GET /health, /ready, \
            /metrics. schemas/openapi.yaml documents them all.

            A webhook is answered 2xx only after Redis stored its command; a provider's retry is \
            answered 2xx and not published again; when Redis is unreachable the answer is 503 \
            with Retry-After, so the provider retries. Needs VOICECORE_MASTER_KEY (decrypts the \
            tenants' provider secrets) and the migrations applied. Stops gracefully on SIGTERM or SIGINT, within 10 s (what is unfinished stays pending for the next start).
            """
    )

    @OptionGroup var connections: ConnectionOptions
    @OptionGroup var edge: EdgeOptions
    @OptionGroup var reads: ReadOptions
    @OptionGroup var feed: EventFeedOptions

    func run() async throws {
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        let logger = Logger(label: "voicecore.edge")
        let reads = try self.reads.tenantReads(connections, logger: logger)
        var edge = try await Edge.connect(connections: connections, options: self.edge, reads: reads, registry: registry, logger: logger)
        let feed = try await self.feed.eventFeed(connections, naming: self.edge.naming, logger: logger)
        edge.eventFeed = feed
        let turns = try await self.edge.turnReplies(connections, logger: logger)
        edge.turnReplies = turns
        // The operator's console pages (signed in with the admin key).
        if edge.configuration.adminKey != nil {
            edge.operatorConsole = try await ConsoleOperatorBackends.connect(connections, naming: self.edge.naming, reads: reads, logger: logger)
        }
        var members: [ServiceGroupConfiguration.ServiceConfiguration] = [.init(service: ReadPoolClosing(pool: reads.pool)), .init(service: turns),
                                                                         .init(service: edge.application())]
        // The admin API provisions tenants: relay the directory's announcements (and what a crashed writer left).
        if edge.configuration.adminKey != nil {
            members.append(.init(service: try await TenantsCommand.outboxRelay(connections, naming: self.edge.naming, logger: logger)))
        }
        // After the server: shutdown runs backwards, so the feed ends its open streams and the server drains.
        members.append(.init(service: feed))
        let serviceGroup = ServiceGroup(configuration: .stoppingWithinDrainBound(members, logger: logger))
        let configuration = edge.configuration
        logger.info("edge listening", metadata: ["address": "\(configuration.host):\(configuration.port)", "public_url": "\(configuration.publicBaseURL ?? "(from Host)")",
                                                 "admin_api": "\(configuration.adminKey == nil ? "off" : "on")"])
        try await serviceGroup.run()
    }
}

extension Edge {
    /// The edge with its connections: Redis for publishing, Postgres for the tenant directory,
    /// and `reads` (a pool of their own) for the read API.
    static func connect(connections: ConnectionOptions, options: EdgeOptions, reads: TenantReads, registry: PrometheusCollectorRegistry?, logger: Logger) async throws -> Edge {
        let directory = try await TenantsCommand.directory(connections)
        let redis = try await RedisClient.connect(try connections.redisConfiguration())
        let publisher = Publisher(connection: redis, configuration: PublisherConfiguration(source: "/edge", naming: options.naming))
        return Edge(configuration: try options.configuration(), publisher: publisher, lookup: directory, directory: directory,
                    reads: reads, registry: registry, logger: logger)
    }
}
