import ArgumentParser
import Foundation
import VoiceCorePostgres
import VoiceCoreRedis

/// `--redis-url` / `--database-url`, defaulting to `REDIS_URL` / `DATABASE_URL`, then to the local
/// servers started by `tools/dev-env`.
struct ConnectionOptions: ParsableArguments {
    static let localRedisURL = "redis://127.0.0.1:16379"
    static let localDatabaseURL = "postgres://voicecore:voicecore@127.0.0.1:15432/voicecore"

    @Option(name: .customLong("redis-url"), help: "Redis URL (default: $REDIS_URL, else \(localRedisURL)).")
    var redisURL: String?

    @Option(name: .customLong("database-url"), help: "Postgres URL (default: $DATABASE_URL, else the local dev database).")
    var databaseURL: String?

    var resolvedRedisURL: String {
        redisURL ?? ProcessInfo.processInfo.environment["REDIS_URL"] ?? Self.localRedisURL
    }

    var resolvedDatabaseURL: String {
        databaseURL ?? ProcessInfo.processInfo.environment["DATABASE_URL"] ?? Self.localDatabaseURL
    }

    func redisConfiguration() throws -> RedisConfiguration {
        try RedisConfiguration(url: resolvedRedisURL)
    }

    /// `VOICECORE_PG_PREPARED_STATEMENTS` sets ``PostgresConfiguration/preparedStatements`` (0
    /// behind a pooler in transaction mode that does not track prepared statements).
    func postgresConfiguration() throws -> PostgresConfiguration {
        var configuration = try PostgresConfiguration(url: resolvedDatabaseURL)
        if let text = ProcessInfo.processInfo.environment["VOICECORE_PG_PREPARED_STATEMENTS"] {
            guard let count = Int(text), count >= 0 else {
                throw CommandFailure("VOICECORE_PG_PREPARED_STATEMENTS must be a whole number, 0 or more (got \"\(text)\"); 0 prepares nothing, for a pooler in transaction mode")
            }
            configuration.preparedStatements = count
        }
        return configuration
    }
}
