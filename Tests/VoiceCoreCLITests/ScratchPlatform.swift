import Foundation
import VoiceCorePostgres
import VoiceCoreRedis
import VoiceCoreTestSupport

/// A place of its own on the test servers for a test that runs `voicecore up` as a process: a
/// Postgres schema (the database URL given to `body` selects it), a stream prefix and a work
/// folder — all removed afterwards, also when `body` throws (awaited, not a detached task at
/// exit, which the test process may not live to run).
enum ScratchPlatform {
    static func with(_ name: String, _ body: (_ databaseURL: String, _ prefix: String, _ work: URL) async throws -> Void) async throws {
        let suffix = UUID().uuidString.prefix(8).lowercased()
        let schema = "\(name)_\(suffix)"
        let prefix = "\(name)\(suffix)"
        let separator = TestServers.databaseURL.contains("?") ? "&" : "?"
        let databaseURL = TestServers.databaseURL + separator + "options=-c%20search_path%3D\(schema)"
        let admin = try await PostgresConnection.connect(try PostgresConfiguration(url: TestServers.databaseURL))
        try await admin.query("CREATE SCHEMA \(identifier: schema)")
        let redis = try await RedisConnection.connect(try RedisConfiguration(url: TestServers.redisURL))
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("voicecore-\(schema)")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        let cleanUp = {
            try? FileManager.default.removeItem(at: work)
            _ = try? await admin.query("DROP SCHEMA \(identifier: schema) CASCADE")
            if let keys = try? await redis.scanAll(match: "\(prefix):*"), !keys.isEmpty { _ = try? await redis.execute(.del(keys)) }
            await admin.close()
        }
        do {
            try await body(databaseURL, prefix, work)
        } catch {
            await cleanUp()
            throw error
        }
        await cleanUp()
    }
}
