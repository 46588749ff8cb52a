import Foundation
import Logging
import VoiceCoreExecutors

/// The Redis client the rest of VoiceCore uses: one code path for a single Redis server and for a
/// Redis Cluster.
///
/// ``connect(_:logger:)`` asks the first reachable seed `CLUSTER SLOTS`. A server in cluster mode
/// makes this a cluster client (every command routed to the master of its key's hash slot,
/// redirects followed, pipelines split per node — see `ClusterRouter`); a single server answers
/// that cluster support is disabled, and the client is then one ``RedisConnection``, with nothing
/// in between. `redis-cluster://` URLs require a cluster.
///
/// ```swift
/// let redis = try await RedisClient.connect(try RedisConfiguration(url: "redis-cluster://127.0.0.1:17001,127.0.0.1:17002"))
/// let id = try await redis.execute(.xadd("vc:{p00}:calls", fields: [("type", "demo")]))
/// ```
///
/// Commands whose keys hash to different slots are refused before sending
/// (``RedisError/Kind/crossSlot``) on a cluster; VoiceCore's keys share their partition's
/// `{hash tag}`, so the bus never sends such a command. Reading a consumer group across many
/// partitions goes through ``readGroup(group:consumer:streams:count:block:)``, which reads each
/// partition from the node that owns it.
public final class RedisClient: Sendable {
    public let configuration: RedisConfiguration
    private let mode: Mode
    /// A thread of one of the connections, for code that calls the client in a tight loop.
    public let taskExecutor: any TaskExecutor

    private enum Mode: Sendable {
        case single(RedisConnection)
        case cluster(ClusterRouter)
    }

    /// Wraps an open connection to a single server.
    public init(_ connection: RedisConnection) {
        configuration = connection.configuration
        mode = .single(connection)
        taskExecutor = connection.taskExecutor
    }

    private init(configuration: RedisConfiguration, router: ClusterRouter, executor: any TaskExecutor) {
        self.configuration = configuration
        mode = .cluster(router)
        taskExecutor = executor
    }

    /// Connects to the first seed that answers and finds out whether it is a cluster.
    /// - Throws: ``RedisError`` of kind `connection` when no seed answers, `invalidConfiguration`
    ///   when `redis-cluster://` names a server that is not in cluster mode.
    public static func connect(_ configuration: RedisConfiguration, logger: Logger = Logger(label: "voicecore.redis")) async throws -> RedisClient {
        var lastError: (any Error)?
        for seed in configuration.seeds {
            var seedConfiguration = configuration
            seedConfiguration.seeds = [seed]
            let connection: RedisConnection
            do {
                connection = try await RedisConnection.connect(seedConfiguration, logger: logger)
            } catch let error as RedisError where error.kind == .connection || error.kind == .timeout {
                lastError = error
                continue
            }
            if case .unix = seed { return RedisClient(connection) }
            let reply: RESPValue
            do {
                reply = try await connection.execute(.raw("CLUSTER", "SLOTS"))
            } catch let error as RedisError where error.kind == .server && error.message.localizedCaseInsensitiveContains("cluster support disabled") {
                guard configuration.clusterMode == .automatic else {
                    await connection.close()
                    throw RedisError(kind: .invalidConfiguration,
                                     message: "\(seed) is not in cluster mode (\(error.message)); use a redis:// URL for a single server", endpoint: seed.description)
                }
                return RedisClient(connection)
            }
            let topology = try ClusterTopology(slotsReply: reply, askedAt: seed)
            let router = ClusterRouter(configuration: configuration, topology: topology, seed: (seed, connection), logger: logger)
            logger.debug("connected to a Redis Cluster", metadata: ["masters": "\(topology.masters.count)", "slots": "\(topology.coveredSlots)"])
            return RedisClient(configuration: configuration, router: router, executor: connection.taskExecutor)
        }
        throw lastError ?? RedisError(kind: .invalidConfiguration, message: "no Redis seed node given")
    }

    /// Whether this client talks to a Redis Cluster.
    public var isCluster: Bool {
        if case .cluster = mode { return true }
        return false
    }

    /// The masters (cluster) or the server.
    public var masters: [RedisConfiguration.Endpoint] {
        switch mode {
        case .single(let connection): return [connection.configuration.endpoint]
        case .cluster(let router): return router.masters
        }
    }

    /// One raw command to one node, whatever its keys: for a command about the node itself
    /// (`INFO`, `WAIT`, `BGREWRITEAOF`, `CONFIG GET`), which a cluster would otherwise send to any
    /// master. A node the client has no connection to (a replica) is reached over a connection of
    /// its own (kept on a cluster, closed after the command on a single server). The reply comes
    /// back as a value, error replies included.
    public func send(_ arguments: [RESPArgument], to node: RedisConfiguration.Endpoint) async throws -> RESPValue {
        switch mode {
        case .single(let connection):
            if node == connection.configuration.endpoint { return try await connection.send([RESPCommand(arguments)])[0] }
            var nodeConfiguration = configuration
            nodeConfiguration.seeds = [node]
            let other = try await RedisConnection.connect(nodeConfiguration)
            do {
                let reply = try await other.send([RESPCommand(arguments)])[0]
                await other.close()
                return reply
            } catch {
                await other.close()
                throw error
            }
        case .cluster(let router):
            return try await router.connection(to: node).send([RESPCommand(arguments)])[0]
        }
    }

    /// The master that serves `key` (the server itself when not a cluster).
    public func master(of key: String) -> RedisConfiguration.Endpoint? {
        switch mode {
        case .single(let connection): return connection.configuration.endpoint
        case .cluster(let router): return router.master(of: HashSlot.of(key))
        }
    }

    /// `true` while usable. A cluster client reconnects to its nodes by itself and is always usable.
    public var isConnected: Bool {
        get async {
            switch mode {
            case .single(let connection): return await connection.isConnected
            case .cluster: return true
            }
        }
    }

    /// A single server: connects again (see ``RedisConnection/reconnect(maxAttempts:)``).
    /// A cluster: reads the slot map again; throws a connection error when no node answers.
    public func reconnect(maxAttempts: Int = 5) async throws {
        switch mode {
        case .single(let connection):
            try await connection.reconnect(maxAttempts: maxAttempts)
        case .cluster(let router):
            guard await router.refresh(force: true) else {
                throw RedisError(kind: .connection, message: "no node of the Redis Cluster answered (seeds: \(configuration.seeds.map(\.description).joined(separator: ",")))")
            }
        }
    }

    public func close() async {
        switch mode {
        case .single(let connection): await connection.close()
        case .cluster(let router): await router.closeAll()
        }
    }

    // MARK: Commands

    /// Sends one typed command (to the master of its keys) and decodes its reply. A server error
    /// reply throws.
    public func execute<Response>(_ command: RedisCommand<Response>) async throws -> Response {
        switch mode {
        case .single(let connection): return try await connection.execute(command)
        case .cluster(let router): return try await router.execute(command)
        }
    }

    /// Several typed commands: one round trip on a single server; on a cluster each goes to its
    /// own node, one after another.
    public func execute<each Response>(_ commands: repeat RedisCommand<each Response>) async throws -> (repeat each Response) {
        if case .single(let connection) = mode { return try await connection.execute(repeat each commands) }
        return (repeat try await execute(each commands))
    }

    /// Many commands of one type in as few round trips as possible (one pipeline per node); each
    /// result in order. A server error or a node failure is that command's failure.
    public func pipeline<Response>(_ commands: [RedisCommand<Response>]) async throws -> [Result<Response, RedisError>] {
        switch mode {
        case .single(let connection):
            return try await connection.pipeline(commands)
        case .cluster(let router):
            let replies = await router.sendEach(commands.map(\.command), blockingFor: nil, replicas: nil)
            return zip(commands, replies).map { command, reply in
                reply.flatMap { value in
                    if case .error(let message) = value { return .failure(.server(message)) }
                    do { return .success(try command.decode(value)) } catch let error as RedisError { return .failure(error) } catch {
                        return .failure(RedisError(kind: .unexpectedReply, message: "\(error)"))
                    }
                }
            }
        }
    }

    /// Raw commands; replies come back as values, error replies included. A connection failure
    /// throws (on a cluster: the first node failure, after every node answered).
    public func send(_ commands: [RESPCommand], blockingFor block: Duration? = nil) async throws -> [RESPValue] {
        switch mode {
        case .single(let connection):
            return try await connection.send(commands, blockingFor: block)
        case .cluster(let router):
            return try await router.sendEach(commands, blockingFor: block, replicas: nil).map { try $0.get() }
        }
    }

    /// One raw command; an error reply throws.
    @discardableResult
    public func send(_ arguments: RESPArgument...) async throws -> RESPValue {
        try await execute(.raw(arguments))
    }

    /// Raw commands with a result each: the reply (error replies as values) or the failure of the
    /// connection that carried it. With `replicas`, each node's pipeline ends with `WAIT n ms`, and
    /// a command that replied but was acknowledged by fewer replicas fails with
    /// ``RedisError/Kind/replication``.
    public func sendEach(_ commands: [RESPCommand], replicas: ReplicaAcknowledgement? = nil) async -> [Result<RESPValue, RedisError>] {
        switch mode {
        case .single(let connection):
            var wire = commands
            if let replicas { wire.append(replicas.command) }
            let replies: [RESPValue]
            do {
                replies = try await connection.send(wire)
            } catch let error as RedisError {
                return Array(repeating: .failure(error), count: commands.count)
            } catch {
                return Array(repeating: .failure(RedisError(kind: .connection, message: "\(error)")), count: commands.count)
            }
            guard let replicas else { return replies.map { .success($0) } }
            return replicas.judge(replies.map { .success($0) }, endpoint: connection.configuration.endpoint.description)
        case .cluster(let router):
            return await router.sendEach(commands, blockingFor: nil, replicas: replicas)
        }
    }

    // MARK: Consumer groups

    /// `XREADGROUP` over streams of many partitions. A single server reads them all with one
    /// command (blocking up to `block` when nothing is there). A cluster refuses keys of different
    /// slots in one command, so each slot's streams are read with a command of their own, sent as
    /// one pipeline per node; when every read comes back empty the reads are repeated with a
    /// growing pause (1 ms doubling to 25 ms) until `block` has passed. Streams of one slot only
    /// (one partition) block on the node as on a single server.
    ///
    /// `acknowledging` are `XACK`s of entries handled since the last read, sent ahead of the read:
    /// on a single server in the same round trip (Redis applies them first, so a read of pending
    /// entries no longer returns them), on a cluster as a pipeline before the reads. An
    /// acknowledgement on a stream whose group is gone (NOGROUP) needs none; any other failure
    /// throws after the read, and the entries stay pending.
    ///
    /// `noAck` reads with `NOACK`: delivered entries are not added to the pending list (for a
    /// reader whose progress lives elsewhere, like the projector's checkpoints, that moves the
    /// group back itself after a failure).
    public func readGroup(group: String, consumer: String, streams: [(key: String, position: GroupReadPosition)],
                          count: Int?, block: Duration?, noAck: Bool = false,
                          acknowledging acknowledgements: [(stream: String, ids: [StreamEntryID])] = []) async throws -> [StreamReadResult] {
        let router: ClusterRouter
        switch mode {
        case .cluster(let cluster):
            router = cluster
        case .single(let connection):
            let acks = acknowledgements.filter { !$0.ids.isEmpty }.map { RedisCommand.xack($0.stream, group: group, ids: $0.ids).command }
            let (replies, read) = try await connection.execute(.xreadgroup(group: group, consumer: consumer, streams: streams, count: count, block: block, noAck: noAck),
                                                                after: acks)
            for case .error(let message) in replies {
                let error = RedisError.server(message, endpoint: configuration.endpoint.description)
                if error.serverCode != "NOGROUP" { throw error }
            }
            return read
        }
        try await acknowledge(group: group, acknowledgements)
        var bySlot: [Int: [(key: String, position: GroupReadPosition)]] = [:]
        var slots: [Int] = []
        for stream in streams {
            let slot = HashSlot.of(stream.key)
            if bySlot[slot] == nil { slots.append(slot) }
            bySlot[slot, default: []].append(stream)
        }
        if slots.count <= 1 {
            return try await router.execute(.xreadgroup(group: group, consumer: consumer, streams: streams, count: count, block: block, noAck: noAck))
        }
        let commands = slots.map { RedisCommand<[StreamReadResult]>.xreadgroup(group: group, consumer: consumer, streams: bySlot[$0] ?? [], count: count, noAck: noAck) }
        let deadline = block.map { ContinuousClock.now + $0 }
        var pause = Duration.milliseconds(1)
        while true {
            let replies = await router.sendEach(commands.map(\.command), blockingFor: nil, replicas: nil)
            var results: [StreamReadResult] = []
            var firstError: RedisError?
            for (command, reply) in zip(commands, replies) {
                switch reply {
                case .success(.error(let message)): firstError = firstError ?? .server(message)
                case .success(let value): results += try command.decode(value)
                case .failure(let error): firstError = firstError ?? error
                }
            }
            // Entries another slot's read delivered stay pending to this consumer: the caller reads
            // its pending entries again after an error.
            if let firstError { throw firstError }
            if results.contains(where: { !$0.entries.isEmpty }) { return results }
            guard let deadline, ContinuousClock.now + pause < deadline, !Task.isCancelled else { return results }
            try? await Task.sleep(for: pause)
            pause = min(pause * 2, .milliseconds(25))
        }
    }

    /// `XACK`s for several streams as one pipeline (one per node on a cluster). A stream whose
    /// group is gone (NOGROUP) needs no acknowledgement; any other failure throws, and those
    /// entries stay pending.
    public func acknowledge(group: String, _ acknowledgements: [(stream: String, ids: [StreamEntryID])]) async throws {
        let acks = acknowledgements.filter { !$0.ids.isEmpty }.map { RedisCommand.xack($0.stream, group: group, ids: $0.ids) }
        guard !acks.isEmpty else { return }
        for case .failure(let error) in try await pipeline(acks) where error.serverCode != "NOGROUP" { throw error }
    }

    // MARK: Keys

    /// Every key matching `pattern` (and of `type`), by `SCAN` on every master; sorted, once each.
    public func scanAll(match pattern: String, type: String? = nil) async throws -> [String] {
        switch mode {
        case .single(let connection):
            return try await connection.scanAll(match: pattern, type: type)
        case .cluster(let router):
            var keys: Set<String> = []
            for master in router.masters {
                keys.formUnion(try await router.connection(to: master).scanAll(match: pattern, type: type))
            }
            return keys.sorted()
        }
    }
}

/// Asks Redis to confirm that each write reached replicas before it counts as done: the node's
/// pipeline ends with `WAIT replicas timeout`. Redis replication is asynchronous; without this a
/// failover can lose writes the old master acknowledged. It costs a replication round trip per
/// pipeline and fails writes when replicas lag or are down.
public struct ReplicaAcknowledgement: Sendable, Hashable {
    /// Replicas that must have the write.
    public var replicas: Int
    /// How long to wait for them.
    public var timeout: Duration

    public init(replicas: Int = 1, timeout: Duration = .milliseconds(500)) {
        self.replicas = replicas
        self.timeout = timeout
    }

    var command: RESPCommand { RESPCommand("WAIT", .integer(replicas), .integer(Int(timeout.milliseconds))) }

    /// The results of a pipeline that ended with ``command``: the commands' own (the `WAIT` reply
    /// dropped), each that replied without an error failing with ``RedisError/Kind/replication``
    /// when fewer replicas than asked acknowledged.
    func judge(_ replies: [Result<RESPValue, RedisError>], endpoint: String) -> [Result<RESPValue, RedisError>] {
        guard let last = replies.last else { return [] }
        let acknowledged = (try? last.get())?.int ?? 0
        return replies.dropLast().map { result in
            guard case .success(let reply) = result, acknowledged < replicas, !reply.isError else { return result }
            return .failure(RedisError(kind: .replication, message: "acknowledged by \(acknowledged) of \(replicas) replicas within \(timeout); a failover could lose it",
                                       endpoint: endpoint))
        }
    }
}
