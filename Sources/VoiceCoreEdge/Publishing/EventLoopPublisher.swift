import Logging
import Metrics
import NIOCore
import NIOPosix
import VoiceCoreBus
import VoiceCoreEvents
import VoiceCoreRedis

/// The edge's publishing from its own event loops: one ``EventLoopRedisConnection`` per loop, so
/// a handler's command goes out, and its acknowledgement comes back, on the loop that handles the
/// request — no thread between the request and Redis.
///
/// The commands are the bus ``Publisher``'s own (the same streams, trimming, deduplication script
/// and replies): only the transport differs. A Redis Cluster, or a publisher that waits for
/// replicas (`WAIT`), stays with ``Publisher``, which routes per slot and acknowledges per node.
final class EventLoopPublisher: Sendable {
    private let publisher: Publisher
    private let connections: [ObjectIdentifier: EventLoopRedisConnection]
    private let metrics: PublisherMetrics

    /// Nil when `redis` is a cluster or `publisher` waits for replicas.
    init?(group: MultiThreadedEventLoopGroup, publisher: Publisher, redis: RedisClient, metricsFactory: any MetricsFactory, logger: Logger) {
        guard !redis.isCluster, publisher.configuration.replicaAcknowledgement == nil else { return nil }
        var connections: [ObjectIdentifier: EventLoopRedisConnection] = [:]
        for loop in group.makeIterator() {
            connections[ObjectIdentifier(loop)] = EventLoopRedisConnection(loop: loop, configuration: redis.configuration, logger: logger)
        }
        self.publisher = publisher
        self.connections = connections
        self.metrics = PublisherMetrics(factory: metricsFactory)
    }

    /// Publishes on the current loop's connection, deduplicated when `deduplicationKey` is given
    /// (as ``Publisher/publish(_:category:kind:deduplicationKey:window:)``).
    /// - Returns: nil when the caller is not on one of the group's loops (it then publishes
    ///   through ``Publisher``).
    /// - Throws: ``RedisError``: the command may or may not be stored; the request must fail.
    func publish(_ envelope: EventEnvelope, category: StreamCategory, kind: MessageKind, deduplicationKey: String?,
                 window: Duration) async throws -> DeduplicatedOutcome? {
        guard let loop = MultiThreadedEventLoopGroup.currentEventLoop, let connection = connections[ObjectIdentifier(loop)] else { return nil }
        do {
            let outcome: DeduplicatedOutcome
            if let deduplicationKey {
                let (stream, evalsha, eval) = publisher.deduplicated(envelope, category: category, kind: kind, key: deduplicationKey, window: window)
                var reply = try await send(evalsha, on: connection)
                // A restarted or flushed server does not know the script yet: once more with its source.
                if case .error(let message) = reply, message.hasPrefix("NOSCRIPT") { reply = try await send(eval, on: connection) }
                outcome = try Publisher.deduplicatedOutcome(reply, stream: stream).get()
            } else {
                let (stream, xadd) = publisher.xadd(envelope, category: category, kind: kind)
                let id = try Publisher.xaddOutcome(try await send(xadd, on: connection), stream: stream).get()
                outcome = .published(PublishedEntry(stream: stream, entryID: id, eventID: envelope.id))
            }
            if !outcome.isDuplicate { metrics.published.increment() }
            return outcome
        } catch {
            metrics.failed.increment()
            throw error
        }
    }

    /// Closes every loop's connection (the server stopped).
    func close() async {
        for connection in connections.values {
            try? await connection.loop.submit { connection.close() }.get()
        }
    }

    private func send(_ command: RESPCommand, on connection: EventLoopRedisConnection) async throws -> RESPValue {
        // A handler keeps to its loop across awaits (EventLoopAffinityMiddleware); should one not,
        // the command still goes out on the connection's own loop.
        if connection.loop.inEventLoop { return try await connection.send(command).get() }
        return try await connection.loop.flatSubmit { connection.send(command) }.get()
    }
}
