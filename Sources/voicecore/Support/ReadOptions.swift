import ArgumentParser
import Foundation
import Logging
import ServiceLifecycle
import VoiceCorePostgres
import VoiceCoreQueries

/// The read API's Postgres pool (`GET /v1/calls`, …): its size and timeouts, shared by `edge` and
/// `up`. Flags override `VOICECORE_READ_POOL_SIZE`, `VOICECORE_READ_STATEMENT_TIMEOUT_MS` and
/// `VOICECORE_READ_ACQUIRE_TIMEOUT_MS`.
struct ReadOptions: ParsableArguments {
    static let defaultPoolSize = 8
    static let defaultStatementTimeoutMilliseconds = 2000
    static let defaultAcquireTimeoutMilliseconds = 1000

    @Option(name: .customLong("read-pool-size"),
            help: "Postgres connections serving the read API, each on a thread of its own; a request waits for a free one (default: $VOICECORE_READ_POOL_SIZE, else \(defaultPoolSize)).")
    var poolSize: Int?

    @Option(name: .customLong("read-statement-timeout-ms"),
            help: "The longest one statement of a read may run, in milliseconds; past it the request is answered 503 with Retry-After (default: $VOICECORE_READ_STATEMENT_TIMEOUT_MS, else \(defaultStatementTimeoutMilliseconds)).")
    var statementTimeoutMilliseconds: Int?

    @Option(name: .customLong("read-acquire-timeout-ms"),
            help: "How long a read waits for a free pool connection, in milliseconds, before it is answered 503 with Retry-After (default: $VOICECORE_READ_ACQUIRE_TIMEOUT_MS, else \(defaultAcquireTimeoutMilliseconds)).")
    var acquireTimeoutMilliseconds: Int?

    /// The tenant-scoped reads over a pool of their own; connections open on first need, so an
    /// edge starts while Postgres is down and its reads answer 503 until it is back.
    func tenantReads(_ connections: ConnectionOptions, logger: Logger) throws -> TenantReads {
        let environment = ProcessInfo.processInfo.environment
        let size = try Self.value(poolSize, "read-pool-size", "VOICECORE_READ_POOL_SIZE", environment, default: Self.defaultPoolSize, range: 1...256)
        let statementTimeout = try Self.value(statementTimeoutMilliseconds, "read-statement-timeout-ms", "VOICECORE_READ_STATEMENT_TIMEOUT_MS",
                                              environment, default: Self.defaultStatementTimeoutMilliseconds, range: 1...600_000)
        let acquireTimeout = try Self.value(acquireTimeoutMilliseconds, "read-acquire-timeout-ms", "VOICECORE_READ_ACQUIRE_TIMEOUT_MS",
                                            environment, default: Self.defaultAcquireTimeoutMilliseconds, range: 1...600_000)
        var configuration = try connections.postgresConfiguration()
        configuration.applicationName = "voicecore-reads"
        let pool = PostgresPool(configuration: configuration, size: size, acquireTimeout: .milliseconds(acquireTimeout),
                                logger: Logger(label: "voicecore.reads"))
        logger.info("read API pool", metadata: ["size": "\(size)", "statement_timeout_ms": "\(statementTimeout)", "acquire_timeout_ms": "\(acquireTimeout)"])
        return TenantReads(pool: pool, statementTimeout: .milliseconds(statementTimeout))
    }

    /// The flag's value, else the environment's, else `default`; out of `range` is an error
    /// naming both.
    private static func value(_ flag: Int?, _ name: String, _ variable: String, _ environment: [String: String],
                              default defaultValue: Int, range: ClosedRange<Int>) throws -> Int {
        let value: Int
        if let flag {
            value = flag
        } else if let text = environment[variable], !text.isEmpty {
            guard let parsed = Int(text) else {
                throw ValidationError("\(variable) must be a whole number \(range.lowerBound)…\(range.upperBound) (got \"\(text)\")")
            }
            value = parsed
        } else {
            value = defaultValue
        }
        guard range.contains(value) else {
            throw ValidationError("--\(name) (or \(variable)) must be \(range.lowerBound)…\(range.upperBound), got \(value)")
        }
        return value
    }
}

/// Closes the read pool when the process stops. Listed before the edge in its service group, it
/// is shut down after the edge (a group shuts its services down in reverse order), so requests
/// the edge is finishing still have their connections.
struct ReadPoolClosing: Service {
    let pool: PostgresPool

    func run() async throws {
        // Returns at graceful shutdown; throws when cancelled: close either way.
        try? await gracefulShutdown()
        await pool.close()
    }
}
