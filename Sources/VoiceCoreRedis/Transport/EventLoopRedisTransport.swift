import Logging
import NIOCore
import NIOPosix

/// Redis from NIO event loops: a connection of its own on each loop of a group, so a command goes
/// out, and its reply comes back, on the loop of the code that sent it — no thread in between.
///
/// For code that already runs on the loops (the HTTP edge's handlers). Commands sent on one loop
/// during one tick go out as one pipeline at the end of that tick: concurrent requests share
/// round trips with no queue or timer of their own. A caller that is not on one of the group's
/// loops is served by the connection of the loop `next()` picks.
///
/// It speaks to a single server (the configuration's endpoint); a Redis Cluster, which needs
/// routing per slot, is served by ``RedisClient``. Guarantees as for every ``RedisTransport``: a
/// command whose reply did not arrive fails (outcome unknown, never resent); the next command
/// reconnects, and after a failed attempt commands fail at once for `reconnectDelay` so that a
/// Redis outage costs no connection attempt per request. Nothing here blocks a loop: the sockets
/// are NIO's, and hiredis only parses bytes already read.
///
/// ```swift
/// let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
/// let redis = EventLoopRedisTransport(group: group, configuration: try RedisConfiguration(url: "redis://127.0.0.1:6379"))
/// let pong = try await redis.reply(to: RESPCommand("PING"))
/// await redis.close()
/// ```
public final class EventLoopRedisTransport: RedisTransport {
    public let configuration: RedisConfiguration
    private let group: any EventLoopGroup
    private let connections: [ObjectIdentifier: EventLoopRedisConnection]

    /// One connection per loop of `group`, opened by its first command.
    /// - Parameter reconnectDelay: how long commands fail at once after a failed connection attempt.
    public init(group: any EventLoopGroup, configuration: RedisConfiguration, reconnectDelay: Duration = .milliseconds(250),
                logger: Logger = Logger(label: "voicecore.redis.event-loop")) {
        var connections: [ObjectIdentifier: EventLoopRedisConnection] = [:]
        for loop in group.makeIterator() {
            connections[ObjectIdentifier(loop)] = EventLoopRedisConnection(loop: loop, configuration: configuration,
                                                                           reconnectDelay: .milliseconds(reconnectDelay.milliseconds), logger: logger)
        }
        self.configuration = configuration
        self.group = group
        self.connections = connections
    }

    /// The reply to one command, sent in the current loop's next pipeline.
    public func reply(to command: RESPCommand) async throws -> RESPValue {
        let connection = try connection()
        // A handler keeps to its loop across awaits (the edge's executor preference); should one
        // not, the command still goes out on the connection's own loop.
        if connection.loop.inEventLoop { return try await connection.send(command).get() }
        return try await connection.loop.flatSubmit { connection.send(command) }.get()
    }

    /// Sends `commands` in the current loop's next pipeline (with whatever else that loop sends
    /// in the same tick).
    public func sendEach(_ commands: [RESPCommand], replicas: ReplicaAcknowledgement?) async -> [Result<RESPValue, RedisError>] {
        guard !commands.isEmpty else { return [] }
        let wire = replicas.map { commands + [$0.command] } ?? commands
        let replies: [Result<RESPValue, RedisError>]
        do {
            let connection = try connection()
            let futures: [EventLoopFuture<RESPValue>]
            if connection.loop.inEventLoop {
                futures = wire.map { connection.send($0) }
            } else {
                futures = try await connection.loop.submit { wire.map { connection.send($0) } }.get()
            }
            var collected: [Result<RESPValue, RedisError>] = []
            collected.reserveCapacity(futures.count)
            for future in futures {
                do {
                    collected.append(.success(try await future.get()))
                } catch {
                    collected.append(.failure(Self.redisError(error, endpoint: configuration.endpoint.description)))
                }
            }
            replies = collected
        } catch {
            return Array(repeating: .failure(Self.redisError(error, endpoint: configuration.endpoint.description)), count: commands.count)
        }
        guard let replicas else { return replies }
        return replicas.judge(replies, endpoint: configuration.endpoint.description)
    }

    /// Closes every loop's connection; what is queued or in flight fails, and so do later commands.
    public func close() async {
        for connection in connections.values {
            try? await connection.loop.submit { connection.close() }.get()
        }
    }

    private func connection() throws -> EventLoopRedisConnection {
        if let loop = MultiThreadedEventLoopGroup.currentEventLoop, let connection = connections[ObjectIdentifier(loop)] { return connection }
        guard let connection = connections[ObjectIdentifier(group.next())] ?? connections.values.first else {
            throw RedisError(kind: .connectionClosed, message: "the event-loop group has no loops", endpoint: configuration.endpoint.description)
        }
        return connection
    }

    private static func redisError(_ error: any Error, endpoint: String) -> RedisError {
        (error as? RedisError) ?? RedisError(kind: .connection, message: "\(error)", endpoint: endpoint)
    }
}
