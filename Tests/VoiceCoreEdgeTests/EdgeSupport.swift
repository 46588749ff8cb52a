import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import Metrics
import Prometheus
import Testing
import VoiceCoreBus
import VoiceCoreEvents
import VoiceCorePostgres
import VoiceCoreProjections
import VoiceCoreQueries
import VoiceCoreRedis
import VoiceCoreTenants
import VoiceCoreTime
@testable import VoiceCoreEdge

enum TestServers {
    static var redisURL: String { ProcessInfo.processInfo.environment["REDIS_URL"] ?? "redis://127.0.0.1:16379/1" }
    static var databaseURL: String { ProcessInfo.processInfo.environment["DATABASE_URL"] ?? "postgres://voicecore:voicecore@127.0.0.1:15432/voicecore_test" }
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
}

/// A migrated schema and stream prefix of its own, a tenant with Twilio and Telnyx credentials,
/// and the edge in front of them.
final class EdgeFixture: @unchecked Sendable {
    static let publicBase = "https://edge.example.com"
    static let adminKey = "admin-\(UUID().uuidString)"

    let schemaName = "e_\(UUID().uuidString.prefix(8).lowercased())"
    let prefix = "e\(UUID().uuidString.prefix(8).lowercased())"
    let naming: StreamNaming
    let db: PostgresConnection
    let redis: RedisClient
    let publisher: Publisher
    let directory: TenantDirectory
    let secrets: SecretBox
    let tenant: Identifier
    let apiKey: String
    let twilioToken = "tok_\(UUID().uuidString)"
    let twilioSharedKey = "shared_\(UUID().uuidString)"
    let telnyxKey = Curve25519.Signing.PrivateKey()
    /// The read API's reads, over a pool on this fixture's schema.
    let reads: TenantReads
    let edge: Edge

    init(requestsPerSecond: Int = 50, redisURL: String = TestServers.redisURL, registry: PrometheusCollectorRegistry? = nil) async throws {
        naming = StreamNaming(partitions: 4, prefix: prefix)
        let separator = TestServers.databaseURL.contains("?") ? "&" : "?"
        let schemaURL = TestServers.databaseURL + separator + "options=-c%20search_path%3D\(schemaName)"
        db = try await PostgresConnection.connect(try PostgresConfiguration(url: schemaURL))
        reads = TenantReads(pool: PostgresPool(configuration: try PostgresConfiguration(url: schemaURL), size: 4))
        try await db.query("CREATE SCHEMA \(identifier: schemaName)")
        _ = try await Migrator(connection: db, directory: TestServers.root.appendingPathComponent("database/migrations")).up()
        redis = try await RedisClient.connect(try RedisConfiguration(url: redisURL))
        publisher = Publisher(connection: redis, configuration: PublisherConfiguration(source: "/test", naming: naming))
        secrets = try SecretBox(masterKey: (0..<32).map { _ in UInt8.random(in: 0...255) })
        directory = TenantDirectory(connection: db, secrets: secrets)
        let provisioned = try await directory.provision(
            NewTenant(name: "Acme Dental", twilioAccountSID: "AC00000000000000000000000000000001", twilioAuthToken: twilioToken,
                      twilioSharedKey: twilioSharedKey, telnyxPublicKey: telnyxKey.publicKey.rawRepresentation.base64EncodedString(),
                      requestsPerSecond: requestsPerSecond),
            publisher: publisher)
        tenant = provisioned.tenant.id
        apiKey = provisioned.apiKey.plaintext
        edge = Edge(configuration: EdgeConfiguration(publicBaseURL: Self.publicBase, tenantCacheTTL: .zero, adminKey: Self.adminKey),
                    publisher: publisher, lookup: directory, directory: directory, reads: reads, registry: registry,
                    metricsFactory: registry.map { PrometheusMetricsFactory(registry: $0) } ?? MetricsSystem.factory)
    }

    func drop() async throws {
        await reads.pool.close()
        try await db.query("DROP SCHEMA \(identifier: schemaName) CASCADE")
    }

    /// Runs `body` against the edge's router (in process, real Redis and Postgres behind it).
    func test(_ body: @Sendable (any TestClientProtocol) async throws -> Void) async throws {
        let app = Application(router: edge.router())
        try await app.test(.router) { client in try await body(client) }
    }

    /// Every command entry under this fixture's prefix, decoded.
    func commands() async throws -> [EventEnvelope] {
        var envelopes: [EventEnvelope] = []
        for partition in 0..<naming.partitions {
            for category in StreamCategory.allCases {
                let stream = naming.stream(category, kind: .command, partition: partition)
                for entry in try await redis.execute(.xrange(stream)) {
                    envelopes.append(try EventEnvelope(fields: (entry.fields ?? []).map { EnvelopeField(name: $0.name, value: $0.value) }))
                }
            }
        }
        return envelopes
    }

    // MARK: Signed requests

    static func formEncode(_ parameters: [(String, String)]) -> String {
        FormBody(parameters: parameters.map { (name: $0.0, value: $0.1) }).encoded
    }

    /// A Twilio callback to `path`, signed with the tenant's auth token as Twilio would.
    func twilio(_ path: String, _ parameters: [(String, String)], token: String? = nil, headers extra: HTTPFields = [:]) -> (String, HTTPFields, ByteBuffer) {
        let uri = "/webhooks/twilio/\(tenant)/\(path)"
        let signature = TwilioSignature.sign(url: Self.publicBase + uri, parameters: parameters.map { (name: $0.0, value: $0.1) },
                                             key: Array((token ?? twilioToken).utf8))
        var headers: HTTPFields = [.contentType: "application/x-www-form-urlencoded", .twilioSignature: signature]
        headers.append(contentsOf: extra)
        return (uri, headers, ByteBuffer(string: Self.formEncode(parameters)))
    }

    func statusCallback(callSid: String, status: String, sequence: Int, extra: [(String, String)] = []) -> [(String, String)] {
        [("AccountSid", "AC00000000000000000000000000000001"), ("ApiVersion", "2010-04-01"), ("CallSid", callSid), ("CallStatus", status),
         ("Direction", "inbound"), ("From", "+14155550100"), ("To", "+14155550199"), ("SequenceNumber", String(sequence)),
         ("Timestamp", "Tue, 24 Nov 2026 10:00:0\(sequence % 10) +0000"), ("CallbackSource", "call-progress-events")] + extra
    }

    /// A Telnyx webhook, signed with the tenant's key now.
    func telnyx(_ body: String, timestamp: Int64 = Int64(Date().timeIntervalSince1970)) throws -> (String, HTTPFields, ByteBuffer) {
        let signature = try TelnyxSignature.sign(body: Array(body.utf8), timestamp: timestamp, privateKey: telnyxKey)
        return ("/webhooks/telnyx/\(tenant)", [.contentType: "application/json", .telnyxSignature: signature, .telnyxTimestamp: String(timestamp)],
                ByteBuffer(string: body))
    }
}

extension TestClientProtocol {
    @discardableResult
    func post(_ request: (String, HTTPFields, ByteBuffer)) async throws -> TestResponse {
        try await execute(uri: request.0, method: .post, headers: request.1, body: request.2)
    }
}

extension TestResponse {
    var text: String { String(buffer: body) }

    var json: [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any] ?? [:]
    }
}

/// Runs `arguments` through `/usr/bin/env` (a Python tool, mostly) and returns its exit status and
/// its output and errors together, waited for on a thread of its own, not one of the cooperative
/// pool's.
func runProcess(_ arguments: [String]) async throws -> (status: Int32, output: String) {
    try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<(status: Int32, output: String), any Error>) in
        Thread {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = arguments
            let pipe = Pipe()
            process.standardOutput = pipe
            process.standardError = pipe
            do {
                try process.run()
            } catch {
                continuation.resume(throwing: error)
                return
            }
            let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            continuation.resume(returning: (process.terminationStatus, output))
        }.start()
    }
}
