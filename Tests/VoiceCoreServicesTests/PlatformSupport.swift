import AsyncHTTPClient
import Foundation
import Hummingbird
import Logging
import NIOCore
import NIOHTTP1
import ServiceLifecycle
import Synchronization
import Testing
import VoiceCoreBus
import VoiceCoreEdge
import VoiceCoreEvents
import VoiceCorePostgres
import VoiceCoreProjections
import VoiceCoreRedis
import VoiceCoreServices
import VoiceCoreSimulation
import VoiceCoreTenants
import VoiceCoreTestSupport
import VoiceCoreTime

/// The whole platform on real servers, isolated: a migrated schema and a stream prefix of its
/// own, a tenant with Twilio credentials, and on `run` the edge (real HTTP on a free port), every
/// service and the projectors in one ServiceGroup, as `voicecore up` runs them.
final class PlatformFixture: @unchecked Sendable {
    let schemaName = "s_\(UUID().uuidString.prefix(8).lowercased())"
    let prefix = "s\(UUID().uuidString.prefix(8).lowercased())"
    let naming: StreamNaming
    let postgres: PostgresConfiguration
    let redisConfiguration: RedisConfiguration
    let db: PostgresConnection
    let redis: RedisClient
    let publisher: Publisher
    let directory: TenantDirectory
    let tenant: Identifier
    let accountSID = "AC" + String(repeating: "0", count: 31) + "7"
    let twilioToken = "tok_\(UUID().uuidString)"

    init() async throws {
        naming = StreamNaming(partitions: 4, prefix: prefix)
        let separator = TestServers.databaseURL.contains("?") ? "&" : "?"
        postgres = try PostgresConfiguration(url: TestServers.databaseURL + separator + "options=-c%20search_path%3D\(schemaName)")
        db = try await PostgresConnection.connect(postgres)
        try await db.query("CREATE SCHEMA \(identifier: schemaName)")
        _ = try await Migrator(connection: db, directory: TestServers.root.appendingPathComponent("database/migrations")).up()
        redisConfiguration = try RedisConfiguration(url: TestServers.redisURL)
        redis = try await RedisClient.connect(redisConfiguration)
        publisher = Publisher(connection: redis, configuration: PublisherConfiguration(source: "/test", naming: naming))
        directory = TenantDirectory(connection: try await PostgresConnection.connect(postgres),
                                    secrets: try SecretBox(masterKey: (0..<32).map { _ in UInt8.random(in: 0...255) }))
        tenant = try await directory.provision(NewTenant(name: "Bright Smiles Dental", plan: .starter, twilioAccountSID: accountSID, twilioAuthToken: twilioToken),
                                               publisher: publisher).tenant.id
    }

    func drop() async throws {
        try await db.query("DROP SCHEMA \(identifier: schemaName) CASCADE")
        var keys: [String] = []
        for pattern in ["\(prefix):*"] { keys += try await redis.scanAll(match: pattern) }
        for chunk in stride(from: 0, to: keys.count, by: 500) { _ = try await redis.execute(.del(Array(keys[chunk..<min(keys.count, chunk + 500)]))) }
    }

    var dependencies: ServiceDependencies {
        ServiceDependencies(redis: redisConfiguration, naming: naming, tenants: TenantProfiles(source: directory, ttl: .milliseconds(200)),
                            instance: "test", logger: Logger(label: "test.services"))
    }

    /// Runs edge, services and projectors while `body` runs; `body` gets the edge's base URL.
    func run(services names: [String] = [], projectors: Bool = true, delivery: WebhookDelivery = WebhookDelivery(),
             _ body: @Sendable (String) async throws -> Void) async throws {
        let edgeRedis = try await RedisClient.connect(redisConfiguration)
        let edgePublisher = Publisher(connection: edgeRedis, configuration: PublisherConfiguration(source: "/edge", naming: naming))
        let edge = Edge(configuration: EdgeConfiguration(host: "127.0.0.1", port: 0, tenantCacheTTL: .zero),
                        publisher: edgePublisher, lookup: directory, directory: directory, registry: nil)
        var services: [any Service] = [ServiceBundle(try await PlatformServices.make(names, dependencies: dependencies, directory: directory, delivery: delivery))]
        if projectors {
            services.append(ProjectorRunner(projections: StandardProjections.all, redis: redisConfiguration, postgres: postgres,
                                            configuration: ProjectorConfiguration(naming: naming, instance: "test", workers: 1, batchSize: 100),
                                            logger: Logger(label: "test.projector")))
        }
        try await withEdge(edge, alongside: services, body)
    }

    /// POSTs one simulated webhook; returns the status.
    @discardableResult
    static func post(_ hook: SimulatedWebhook, to base: String) async throws -> Int {
        var request = HTTPClientRequest(url: base + hook.path)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
        request.headers.add(name: "X-Twilio-Signature", value: hook.signature)
        request.body = .bytes(ByteBuffer(string: hook.body))
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
        _ = try await response.body.collect(upTo: 1 << 20)
        return Int(response.status.code)
    }

    /// Waits until `condition` holds (polling), or fails after `timeout`.
    func eventually(_ what: String, timeout: Duration = .seconds(30), _ condition: @Sendable () async throws -> Bool) async throws {
        let deadline = ContinuousClock.now + timeout
        while try await !condition() {
            guard ContinuousClock.now < deadline else { throw TestFailure("timed out waiting for \(what)") }
            try await Task.sleep(for: .milliseconds(100))
        }
    }

    func count(_ query: PostgresQuery) async throws -> Int {
        try await db.query(query)[0].decode(Int.self, at: 0)
    }

    /// Every read-model row of the tenant as text, ids left out (they differ between fixtures),
    /// so two runs of the same call can be compared.
    func readModel() async throws -> [String] {
        let id = tenant.uuid
        let queries: [(String, PostgresQuery)] = [
            ("call_sessions", "SELECT provider, direction, from_number, to_number, status, started_at, answered_at, ended_at, duration_seconds, end_status, hung_up_by FROM call_sessions WHERE tenant_id = \(id) ORDER BY started_at"),
            ("transcripts", "SELECT track, sequence, text, confidence, start_offset_ms, end_offset_ms FROM transcripts WHERE tenant_id = \(id) ORDER BY sequence, track"),
            ("leads", "SELECT name, phone, email, intent, source, notes FROM leads WHERE tenant_id = \(id) ORDER BY name"),
            ("crm_contacts", "SELECT name, phone, email FROM crm_contacts WHERE tenant_id = \(id) ORDER BY phone"),
            ("interactions", "SELECT channel, summary, duration_seconds, occurred_at FROM interactions WHERE tenant_id = \(id) ORDER BY occurred_at"),
            ("call_analytics", "SELECT duration_seconds, outcome, intent, intent_confidence, sentiment, sentiment_score, word_count FROM call_analytics WHERE tenant_id = \(id)"),
            ("business_metrics", "SELECT day, calls, answered, missed, handle_seconds, leads FROM business_metrics WHERE tenant_id = \(id) ORDER BY day"),
            ("billing_usage", "SELECT day, meter, quantity, unit FROM billing_usage WHERE tenant_id = \(id) ORDER BY day, meter"),
        ]
        var lines: [String] = []
        for (table, query) in queries {
            let rows = try await db.query(query)
            for row in rows {
                lines.append(table + ": " + rows.columns.map { "\($0)=" + (row.raw($0).map { String(decoding: $0, as: UTF8.self) } ?? "null") }.joined(separator: " "))
            }
        }
        return lines
    }
}

/// A local HTTP receiver (Hummingbird on a free port) that records what it was sent and answers
/// with the status `respond` gives.
final class Receiver: @unchecked Sendable {
    struct Request: Sendable {
        var path: String
        /// Lower-case names.
        var headers: [String: String]
        var body: [UInt8]
        var at: ContinuousClock.Instant
    }

    let received = Mutex<[Request]>([])
    private let respond: @Sendable (String) async -> HTTPResponse.Status

    init(respond: @escaping @Sendable (String) async -> HTTPResponse.Status) {
        self.respond = respond
    }

    /// Serves while `body` runs; `body` gets the base URL.
    func serve(_ body: @Sendable (String) async throws -> Void) async throws {
        let router = Router()
        router.post("**") { request, _ -> Response in
            var headers: [String: String] = [:]
            for field in request.headers { headers[field.name.canonicalName.lowercased()] = field.value }
            let bytes = try await request.body.collect(upTo: 1 << 20)
            let path = request.uri.path
            self.received.withLock { $0.append(Request(path: path, headers: headers, body: Array(buffer: bytes), at: .now)) }
            return Response(status: await self.respond(path))
        }
        try await withServer(router, body)
    }
}

/// Serves `edge` as `voicecore up` does (its own event loops, publishing from them) on a free
/// loopback port, with `services` beside it, while `body` runs; `body` gets the base URL.
func withEdge(_ edge: Edge, alongside services: [any Service] = [], _ body: @Sendable (String) async throws -> Void) async throws {
    try await withListening(alongside: services, body) { onServerRunning in edge.application(onServerRunning: onServerRunning) }
}

/// Serves `router` on a free loopback port (real HTTP), with `services` beside it, while `body`
/// runs; `body` gets the base URL. Everything is stopped gracefully afterwards.
func withServer<Builder: HTTPResponderBuilder>(_ router: Builder, alongside services: [any Service] = [],
                                               _ body: @Sendable (String) async throws -> Void) async throws
where Builder.Responder.Context: InitializableFromSource<ApplicationRequestContextSource> {
    try await withListening(alongside: services, body) { onServerRunning in
        Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)), onServerRunning: onServerRunning)
    }
}

/// Runs the server `make` builds (given what to call once it listens) and `services` while `body`
/// runs with the server's base URL; stops them gracefully afterwards.
private func withListening(alongside services: [any Service], _ body: @Sendable (String) async throws -> Void,
                           make: (@escaping @Sendable (any Channel) async -> Void) -> any Service) async throws {
    let port = Mutex<Int?>(nil)
    let server = make { channel in port.withLock { $0 = channel.localAddress?.port } }
    let group = ServiceGroup(services: [server] + services, logger: Logger(label: "test.server"))
    let running = Task { try await group.run() }
    do {
        let deadline = ContinuousClock.now + .seconds(10)
        while port.withLock({ $0 }) == nil {
            guard ContinuousClock.now < deadline else { throw TestFailure("the server did not start listening") }
            try await Task.sleep(for: .milliseconds(10))
        }
        try await body("http://127.0.0.1:\(port.withLock { $0! })")
    } catch {
        await group.triggerGracefulShutdown()
        _ = await running.result
        throw error
    }
    await group.triggerGracefulShutdown()
    try await running.value
}
