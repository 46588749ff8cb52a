import Foundation
import VoiceCoreBus
import VoiceCoreEvents
import VoiceCorePostgres
import VoiceCoreProjections
import VoiceCoreRedis
import VoiceCoreTenants

enum TestServers {
    static var redisURL: String { ProcessInfo.processInfo.environment["REDIS_URL"] ?? "redis://127.0.0.1:16379/1" }
    static var databaseURL: String { ProcessInfo.processInfo.environment["DATABASE_URL"] ?? "postgres://voicecore:voicecore@127.0.0.1:15432/voicecore_test" }
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// A migrated schema and a stream prefix of its own, and the tenant directory on them.
final class TenantsFixture: @unchecked Sendable {
    let schemaName = "t_\(UUID().uuidString.prefix(8).lowercased())"
    let prefix = "t\(UUID().uuidString.prefix(8).lowercased())"
    let naming: StreamNaming
    /// `DATABASE_URL` with this fixture's schema as the search path (for processes too).
    let databaseURL: String
    let db: PostgresConnection
    let masterKey: [UInt8] = (0..<32).map { _ in UInt8.random(in: 0...255) }
    let directory: TenantDirectory

    init() async throws {
        naming = StreamNaming(partitions: 4, prefix: prefix)
        let separator = TestServers.databaseURL.contains("?") ? "&" : "?"
        databaseURL = TestServers.databaseURL + separator + "options=-c%20search_path%3D\(schemaName)"
        db = try await PostgresConnection.connect(try PostgresConfiguration(url: databaseURL))
        try await db.query("CREATE SCHEMA \(identifier: schemaName)")
        _ = try await Migrator(connection: db, directory: TestServers.root.appendingPathComponent("database/migrations")).up()
        directory = TenantDirectory(connection: db, secrets: try SecretBox(masterKey: masterKey))
    }

    func drop(redis: RedisClient? = nil) async throws {
        try await db.query("DROP SCHEMA \(identifier: schemaName) CASCADE")
        guard let redis else { return }
        let keys = try await redis.scanAll(match: "\(prefix):*")
        if !keys.isEmpty { _ = try await redis.execute(.del(keys)) }
    }

    /// A connection of its own to the fixture's schema.
    func connect() async throws -> PostgresConnection {
        try await PostgresConnection.connect(try PostgresConfiguration(url: databaseURL))
    }

    func count(_ query: PostgresQuery) async throws -> Int {
        try await db.query(query)[0].decode(Int.self, at: 0)
    }

    /// A publisher on `redis` for this fixture's streams.
    func publisher(_ redis: RedisClient) -> Publisher {
        Publisher(connection: redis, configuration: PublisherConfiguration(source: "/test", naming: naming))
    }

    /// Every entry of every tenant event stream under this fixture's prefix, decoded.
    func tenantEvents(_ redis: RedisClient) async throws -> [EventEnvelope] {
        var envelopes: [EventEnvelope] = []
        for stream in naming.streams(.tenants, kind: .event) {
            for entry in try await redis.execute(.xrange(stream)) {
                envelopes.append(try EventEnvelope(fields: (entry.fields ?? []).map { EnvelopeField(name: $0.name, value: $0.value) }))
            }
        }
        return envelopes
    }

    /// Waits until `condition` holds (polling), or fails after `timeout`.
    func eventually(_ what: String, timeout: Duration = .seconds(60), _ condition: @Sendable () async throws -> Bool) async throws {
        let deadline = ContinuousClock.now + timeout
        while try await !condition() {
            guard ContinuousClock.now < deadline else { throw TestFailure("timed out waiting for \(what)") }
            try await Task.sleep(for: .milliseconds(50))
        }
    }
}
