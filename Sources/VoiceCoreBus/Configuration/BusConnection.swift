import Logging
import VoiceCoreRedis

/// A connection to the bus's Redis for the parts that keep state beside the streams
/// (``EntityStateStore``, ``ScheduledJobQueue``, ``ClaimIndex``), read where streams stand
/// (``StreamInspector``) or publish (``Publisher``).
///
/// Modules above the bus hold this, never a Redis client: what they store and read goes through
/// the bus's primitives, which keep the keys, scripts and replies in one place. One connection
/// serves every part it is given, a command or pipeline at a time, single server or cluster. After
/// a failure it reconnects by itself at the next command; the command in flight fails with a
/// ``RedisError`` whose ``RedisError/isOutage`` says whether to wait the outage out.
///
/// ```swift
/// let connection = try await BusConnection.connect(try RedisConfiguration(url: url), name: "vc-service:crm")
/// let state = EntityStateStore(connection: connection)
/// ```
public struct BusConnection: Sendable {
    let client: RedisClient

    /// Wraps a client made elsewhere (the CLI and tests, which hold one anyway).
    public init(_ client: RedisClient) {
        self.client = client
    }

    /// Connects to the Redis `configuration` names (and, for a cluster, discovers its nodes).
    /// - Parameter name: sent with `CLIENT SETNAME`, so `CLIENT LIST` shows who is who (no spaces).
    public static func connect(_ configuration: RedisConfiguration, name: String? = nil,
                               logger: Logger = Logger(label: "voicecore.bus.connection")) async throws -> BusConnection {
        var configuration = configuration
        if let name { configuration.clientName = name }
        return BusConnection(try await RedisClient.connect(configuration, logger: logger))
    }

    /// Closes the connection; commands after it fail.
    public func close() async {
        await client.close()
    }
}
