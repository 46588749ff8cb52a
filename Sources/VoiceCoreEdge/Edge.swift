import Foundation
import Hummingbird
import HummingbirdWebSocket
import Logging
import Metrics
import NIOCore
import NIOPosix
import Prometheus
import ServiceLifecycle
import VoiceCoreBus
import VoiceCoreEvents
import VoiceCoreQueries
import VoiceCoreTenants
import VoiceCoreTime

/// The HTTP edge: verifies telephony webhooks and tenant API calls, publishes each as a command,
/// answers. Thin by design — domain decisions belong to the services.
///
/// Routes (documented in `schemas/openapi.yaml`):
/// - `POST /webhooks/twilio/{tenant}/voice` — incoming call: publishes the ringing report and
///   answers TwiML that greets the caller and starts real-time transcription back to this edge;
/// - `POST /webhooks/twilio/{tenant}/status` — voice status callbacks;
/// - `GET /webhooks/twilio/{tenant}/relay` — a ConversationRelay WebSocket (signed upgrade), one
///   caller turn per prompt (``ConversationRelayConnection``);
/// - `POST /webhooks/twilio/{tenant}/transcription` — real-time transcription callbacks;
/// - `POST /webhooks/twilio/{tenant}/{gather,recording,recorded,relay/ended}` — a call's
///   conversation (``TurnReplies`` waits for the receptionist's replies);
/// - `POST /webhooks/telnyx/{tenant}` — Telnyx Call Control webhooks;
/// - `POST /v1/leads`, `PUT /v1/contacts/{contact}`, `PUT /v1/settings` — the tenant command API;
/// - `POST /v1/privacy/erasures`, `GET /v1/privacy/erasures/{erasure}` (and their mirrors under
///   `/admin/tenants/{tenant}`) — caller erasure (``addPrivacyRoutes(to:)``);
/// - `POST|GET /admin/tenants`, `POST /admin/tenants/{tenant}/api-keys`,
///   `PATCH /admin/tenants/{tenant}` — the admin API (only with an admin key);
/// - `GET /health`, `GET /ready`, `GET /metrics`.
///
/// A request is answered 2xx only after Redis acknowledged its command; a provider retry of an
/// accepted webhook (same idempotency key) is answered 2xx again and not published again.
public struct Edge: Sendable {
    public let configuration: EdgeConfiguration
    let publisher: Publisher
    let tenants: TenantCache
    let directory: TenantDirectory?
    /// The read API's tenant-scoped reads of the read models; nil leaves the read routes out.
    let reads: TenantReads?
    let registry: PrometheusCollectorRegistry?
    let metrics: EdgeMetrics
    let limiter = RateLimiter()
    /// Failed console sign-ins per client address (``SignInLimiter``).
    let signInLimiter = SignInLimiter()
    let logger: Logger
    /// Publishing from the server's own event loops (``EdgeConfiguration/publishOnEventLoops``):
    /// ``publisher`` moved onto those loops (`Publisher.onEventLoops(of:)`), set by
    /// ``application(logger:onServerRunning:)``; nil: through ``publisher``.
    var loopPublisher: Publisher?
    /// More of the process's readiness for `/ready`, beyond Redis answering the edge: `voicecore
    /// up` adds its consumers' and projectors' checks, so the one listener it has tells whether
    /// the whole platform keeps up. `/ready` lists them all (see ``ReadinessCheck``).
    public var readinessChecks: [ReadinessCheck] = []
    /// The live event feed (`GET /v1/events`), also run as a service; nil: its routes answer 503.
    /// The edge also learns from it when a tenant's settings changed (`TenantSettingsChanged`,
    /// announced after the directory holds them) and forgets the tenant's cached credentials, so
    /// the next call hears a new greeting at once rather than after the cache's TTL.
    public var eventFeed: EventFeed? {
        didSet {
            guard let eventFeed, eventFeed !== oldValue else { return }
            let tenants = self.tenants
            eventFeed.observe(TenantSettingsChanged.self) { tenant in tenants.forget(tenant) }
        }
    }
    /// Waits for the receptionist's replies to caller turns (``TurnReplies``), also run as a
    /// service; nil: a conversation turn is published and the caller is offered a message at once.
    public var turnReplies: TurnReplies?
    /// What the operator's console pages read and change (streams, dead letters, projections,
    /// tenants); nil: those pages answer 503 saying so.
    public var operatorConsole: ConsoleOperatorBackends?

    /// - Parameters:
    ///   - publisher: publishes the commands (its `source` is ignored: each route sets its own);
    ///     `/ready` pings its connection, so ready means publishable.
    ///   - lookup: where tenants and API keys are found (the ``TenantDirectory``, cached here).
    ///   - directory: provisions tenants for the admin API; nil leaves the admin API out.
    ///   - reads: the read API's tenant-scoped reads (``TenantReads``); nil leaves the read routes out.
    ///   - registry: rendered at `/metrics`; nil answers 404 there.
    public init(configuration: EdgeConfiguration, publisher: Publisher, lookup: any TenantLookup,
                directory: TenantDirectory? = nil, reads: TenantReads? = nil, registry: PrometheusCollectorRegistry? = nil,
                metricsFactory: any MetricsFactory = MetricsSystem.factory, logger: Logger = Logger(label: "voicecore.edge")) {
        self.configuration = configuration
        self.publisher = publisher
        self.tenants = TenantCache(lookup: lookup, ttl: configuration.tenantCacheTTL)
        self.directory = directory
        self.reads = reads
        self.registry = registry
        self.metrics = EdgeMetrics(factory: metricsFactory)
        self.logger = logger
    }

    /// Every route of the edge.
    public func router() -> Router<BasicRequestContext> {
        let router = Router(context: BasicRequestContext.self)
        router.add(middleware: EventLoopAffinityMiddleware())
        router.add(middleware: RequestIDMiddleware())
        router.add(middleware: RequestMetricsMiddleware(factory: metrics.factory, rates: metrics.rates))
        router.add(middleware: UnexpectedErrorMiddleware(logger: logger))
        router.get("/health") { _, _ in Self.json(.ok, JSONObjectWriter.object { $0.field("status", "ok") }) }
        router.get("/ready") { _, _ in try await ready() }
        router.get("/metrics") { _, _ in try metricsPage() }
        addTwilioRoutes(to: router)
        addConversationRoutes(to: router)
        addConversationRelayPlainRoute(to: router)
        addTelnyxRoutes(to: router)
        addTenantAPIRoutes(to: router)
        addReadRoutes(to: router)
        addPrivacyRoutes(to: router)
        addEventFeedRoutes(to: router)
        if configuration.adminKey != nil, directory != nil { addAdminRoutes(to: router) }
        addConsoleRoutes(to: router)
        return router
    }

    /// The HTTP server with every route, as a service for a `ServiceGroup`: its own event loops
    /// (``EdgeConfiguration/eventLoopThreads``), on which requests are also handled
    /// (``EventLoopTaskExecutor``) and, on a single Redis server, published
    /// (``EdgeConfiguration/publishOnEventLoops``).
    /// - Parameter onServerRunning: called once the server listens, with its channel (its
    ///   `localAddress` tells the port when ``EdgeConfiguration/port`` is 0).
    public func application(logger: Logger? = nil, onServerRunning: @escaping @Sendable (any Channel) async -> Void = { _ in }) -> some Service {
        // The console's templates and static files are read from disk here, once, never on an
        // event loop while a request waits.
        _ = ConsoleAssets.files.count
        if ConsoleView.library == nil {
            self.logger.warning("the console's files were not found: /app answers 503 (copy VoiceCore_VoiceCoreEdge.resources next to the voicecore binary, or set VOICECORE_CONSOLE_ASSETS to its Assets directory)")
        }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: configuration.eventLoopThreads)
        var edge = self
        // A cluster needs routing per slot, and acknowledgement by replicas per node: both stay
        // with the publisher's own client (`onEventLoops` answers nil).
        if configuration.publishOnEventLoops {
            edge.loopPublisher = publisher.onEventLoops(of: group, logger: self.logger, metricsFactory: metrics.factory)
        }
        // WebSocket upgrades (ConversationRelay) are answered by a router of their own; every other
        // request goes to the HTTP router as before.
        let application = Application(
            // Knows each request's client address (``ClientAddress``) for the console's sign-in limit.
            responder: ClientAddressResponder(inner: edge.router().buildResponder(), trustedProxies: configuration.trustedProxies),
            server: .http1WebSocketUpgrade(webSocketRouter: edge.conversationRelayRouter(sessions: ConversationRelaySessions()),
                                           configuration: .init(ws: ConversationRelayConnection.webSocketConfiguration)),
            configuration: ApplicationConfiguration(address: .hostname(configuration.host, port: configuration.port), serverName: "voicecore-edge"),
            onServerRunning: onServerRunning,
            eventLoopGroupProvider: .shared(group),
            logger: logger ?? self.logger)
        return EdgeServer(application: application, group: group, loopPublisher: edge.loopPublisher)
    }

    // MARK: Operating routes

    private func ready() async throws -> Response {
        do {
            // A broken connection reconnects by itself at this command.
            try await publisher.ping()
        } catch {
            throw Problem.unavailable("Redis")
        }
        if readinessChecks.isEmpty { return Self.json(.ok, JSONObjectWriter.object { $0.field("status", "ready") }) }
        return ReadinessAnswer.response([("edge", .ready)] + (await ReadinessCheck.evaluateAll(readinessChecks)))
    }

    private func metricsPage() throws -> Response {
        guard let registry else { throw Problem(.notFound, "Not found", detail: "this process exports no metrics") }
        var text: [UInt8] = []
        registry.emit(into: &text)
        return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(bytes: text)))
    }

    // MARK: Shared steps

    /// The request body, after checking its media type (415) and size (413).
    func body(of request: Request, accepting mediaTypes: [MediaType]) async throws -> (bytes: [UInt8], mediaType: MediaType) {
        guard let mediaType = request.headers[.contentType].flatMap(Self.mediaType), mediaTypes.contains(where: mediaType.names) else {
            throw Problem.unsupportedMediaType(mediaTypes.map(\.description).joined(separator: " or "))
        }
        if let length = request.headers[.contentLength].flatMap(Int.init), length > configuration.maxBodyBytes {
            throw Problem.tooLarge(configuration.maxBodyBytes)
        }
        do {
            var buffer = try await request.body.collect(upTo: configuration.maxBodyBytes)
            return (buffer.readBytes(length: buffer.readableBytes) ?? [], mediaType)
        } catch is NIOTooManyBytesError {
            throw Problem.tooLarge(configuration.maxBodyBytes)
        }
    }

    /// The tenant named in the path (404 when it is not a tenant id).
    func tenantID(_ context: BasicRequestContext) throws -> Identifier {
        guard let text = context.parameters.get("tenant"), let id = Identifier(text) else { throw Problem.unknownTenant }
        return id
    }

    /// The tenant's credentials (404 unknown, 503 when the directory is unreachable).
    func credentials(of tenant: Identifier) async throws -> TenantCredentials {
        let found: TenantCredentials?
        do {
            found = try await tenants.credentials(of: tenant)
        } catch let error as TenantError {
            logger.error("tenant credentials unusable", metadata: ["tenant": "\(tenant)", "error": "\(error)"])
            throw Problem.unavailable("the tenant directory")
        } catch {
            logger.warning("tenant directory unreachable", metadata: ["error": "\(error)"])
            throw Problem.unavailable("the tenant directory")
        }
        guard let found else { throw Problem.unknownTenant }
        return found
    }

    /// Publishes a command (with `id`, else a new one); with an idempotency key, once per key.
    /// Any failure is a 503: the command may not have been stored, so the sender must retry.
    func publish<M: Message>(_ command: M, tenant: Identifier, source: String, id: Identifier? = nil, deduplicationKey: String?,
                             metricSource: String) async throws -> DeduplicatedOutcome {
        let envelope = EventEnvelope(command, tenant: tenant, source: source, id: id)
        let start = ContinuousClock.now
        do {
            let outcome: DeduplicatedOutcome
            let publisher = loopPublisher ?? self.publisher
            if let deduplicationKey {
                outcome = try await publisher.publish(envelope, category: M.category, kind: M.kind, deduplicationKey: deduplicationKey,
                                                      window: configuration.deduplicationWindow)
            } else {
                outcome = .published(try await publisher.publish(envelope, category: M.category, kind: M.kind))
            }
            metrics.published(since: start)
            if outcome.isDuplicate { metrics.deduplicated(metricSource) }
            return outcome
        } catch {
            logger.warning("command not published", metadata: ["tenant": "\(tenant)", "type": "\(M.type)", "error": "\(error)"])
            if Publisher.isRedisFull(error) {
                // maxmemory with noeviction refused the write: loud, and retryable once memory is freed.
                throw Problem(.serviceUnavailable, "Temporarily unavailable", detail: "the event store is full (Redis reached its memory limit); nothing was stored; retry later",
                              headers: [.retryAfter: "30"])
            }
            throw Problem.unavailable("Redis")
        }
    }

    /// The URL the provider requested: the configured public base URL (or `http://` + Host)
    /// plus the request target exactly as received.
    func publicURL(of request: Request) -> String {
        publicBase(of: request) + (request.head.path ?? "/")
    }

    /// Scheme, host and port providers reach this edge at: the configured public base URL, else
    /// `http://` + the request's Host.
    func publicBase(of request: Request) -> String {
        configuration.publicBaseURL ?? "http://" + (request.head.authority ?? "\(configuration.host):\(configuration.port)")
    }

    /// The media type of a `Content-Type` value (``MediaType/init(contentType:)``).
    static func mediaType(_ contentType: String) -> MediaType? {
        MediaType(contentType: contentType)
    }

    static func json(_ status: HTTPResponse.Status, _ body: [UInt8]) -> Response {
        Response(status: status, headers: [.contentType: MediaType.applicationJson.description], body: .init(byteBuffer: ByteBuffer(bytes: body)))
    }

    static func empty(_ status: HTTPResponse.Status = .ok) -> Response {
        Response(status: status)
    }
}

/// The Hummingbird application run with its handlers on its own event loops; the loops are shut
/// down when it ends.
struct EdgeServer<App: ApplicationProtocol>: Service {
    let application: App
    let group: MultiThreadedEventLoopGroup
    /// The publisher on the loops' own Redis connections, closed when the server stops.
    let loopPublisher: Publisher?

    func run() async throws {
        let executor = EventLoopTaskExecutor(group: group)
        do {
            // Child tasks (one per connection) inherit the preference.
            try await withTaskExecutorPreference(executor) { try await application.run() }
        } catch {
            await loopPublisher?.close()
            try? await group.shutdownGracefully()
            throw error
        }
        await loopPublisher?.close()
        try await group.shutdownGracefully()
    }
}

/// Turns any error that is not already an HTTP answer into a 503 (a dependency failed), or a 422
/// when Postgres refused a value of the request (``Problem/answering(_:)``), logged once: the edge
/// never answers 500, never 2xx for something it did not publish, and never 503 for a client error.
struct UnexpectedErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    let logger: Logger

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as any HTTPResponseError {
            throw error
        } catch {
            logger.error("request failed", metadata: ["route": "\(context.endpointPath ?? "-")", "error": "\(error)"])
            throw Problem.answering(error)
        }
    }
}
