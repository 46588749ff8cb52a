import VoiceCorePostgres
import VoiceCoreRedis

/// The servers a benchmark measures against, and where its report goes.
///
/// Redis and Postgres come both as URLs (a benchmark makes a scratch schema and hands its URL,
/// with `search_path` set, to what it starts) and as configurations, made when a benchmark first
/// needs one: a benchmark of Redis alone never reads the Postgres settings.
///
/// ```swift
/// let servers = BenchmarkServers(redisURL: url, databaseURL: databaseURL,
///                                redis: { try RedisConfiguration(url: url) },
///                                postgres: { try PostgresConfiguration(url: databaseURL) },
///                                report: { print($0) })
/// try await PublishBenchmark(count: 100_000).run(on: servers)
/// ```
public struct BenchmarkServers: Sendable {
    public var redisURL: String
    public var databaseURL: String
    /// Receives the report a line at a time, as it is measured.
    public var report: @Sendable (String) -> Void
    private let redis: @Sendable () throws -> RedisConfiguration
    private let postgres: @Sendable () throws -> PostgresConfiguration

    public init(redisURL: String, databaseURL: String, redis: @escaping @Sendable () throws -> RedisConfiguration,
                postgres: @escaping @Sendable () throws -> PostgresConfiguration, report: @escaping @Sendable (String) -> Void) {
        self.redisURL = redisURL
        self.databaseURL = databaseURL
        self.redis = redis
        self.postgres = postgres
        self.report = report
    }

    public func redisConfiguration() throws -> RedisConfiguration { try redis() }

    public func postgresConfiguration() throws -> PostgresConfiguration { try postgres() }

    /// The database URL with every session's `search_path` set to `schema` (a scratch schema).
    func databaseURL(searchPath schema: String) -> String {
        let separator = databaseURL.contains("?") ? "&" : "?"
        return databaseURL + separator + "options=-c%20search_path%3D\(schema)"
    }
}

/// A benchmark that could not measure what it was asked to, with the reason.
public struct BenchmarkFailure: Error, CustomStringConvertible {
    public var description: String

    public init(_ description: String) { self.description = description }
}
