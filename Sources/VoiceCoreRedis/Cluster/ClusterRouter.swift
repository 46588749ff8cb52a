import Logging
import Synchronization

/// Routes commands over a Redis Cluster: one ``RedisConnection`` per master, each command sent to
/// the master of its key's slot, pipelines split per node and sent to the nodes concurrently.
///
/// - `MOVED` updates the slot map (and the command goes to the new owner); `ASK` sends the command
///   once more to the importing node after `ASKING`; `TRYAGAIN`, `CLUSTERDOWN` and `LOADING` are
///   retried with backoff. A node that cannot be reached (refused, or its connection closed) makes
///   the router ask the cluster for its slot map again (`CLUSTER SLOTS` from any known node or
///   seed) and retry until a master serves the slot — a replica promoted after its master died —
///   or ``RedisConfiguration/clusterRetryTimeout`` has passed.
/// - A command already sent when its connection failed is never sent again: whether Redis applied
///   it is unknown, so it fails with the connection error and the caller decides (the publisher
///   reports it as not published; a consumer reads its pending entries again).
final class ClusterRouter: Sendable {
    typealias Endpoint = RedisConfiguration.Endpoint

    let configuration: RedisConfiguration
    private let logger: Logger
    private let topology: Mutex<ClusterTopology>
    private let connections: Mutex<[Endpoint: RedisConnection]>
    private let lastRefresh = Mutex<ContinuousClock.Instant?>(nil)

    init(configuration: RedisConfiguration, topology: ClusterTopology, seed: (Endpoint, RedisConnection), logger: Logger) {
        self.configuration = configuration
        self.logger = logger
        self.topology = Mutex(topology)
        self.connections = Mutex([seed.0: seed.1])
    }

    var masters: [Endpoint] { topology.withLock { $0.masters } }

    func master(of slot: Int) -> Endpoint? { topology.withLock { $0.master(of: slot) } }

    // MARK: Nodes

    /// The connection to `endpoint`, opened (or opened again) when needed. Throws a connection
    /// error when the node cannot be reached; nothing was sent then.
    func connection(to endpoint: Endpoint) async throws -> RedisConnection {
        if let existing = connections.withLock({ $0[endpoint] }) {
            try await existing.reconnectIfClosed()
            return existing
        }
        var nodeConfiguration = configuration
        nodeConfiguration.seeds = [endpoint]
        let made = try await RedisConnection.connect(nodeConfiguration, logger: logger)
        let winner = connections.withLock { all -> RedisConnection in
            if let other = all[endpoint] { return other }
            all[endpoint] = made
            return made
        }
        if winner !== made { await made.close() }
        return winner
    }

    func closeAll() async {
        for connection in connections.withLock({ Array($0.values) }) { await connection.close() }
    }

    /// Reads the slot map again from the first node that answers (known masters, then the seeds).
    /// Several failing callers at once cause one refresh (at most one per 50 ms unless `force`).
    /// - Returns: whether a map was read.
    @discardableResult
    func refresh(force: Bool = false) async -> Bool {
        let now = ContinuousClock.now
        let skip = lastRefresh.withLock { last -> Bool in
            if !force, let last, now - last < .milliseconds(50) { return true }
            last = now
            return false
        }
        if skip { return true }
        var candidates: [Endpoint] = []
        let known = topology.withLock { $0.masters + $0.replicas.values.flatMap { $0 } }
        for endpoint in known + configuration.seeds where !candidates.contains(endpoint) { candidates.append(endpoint) }
        for endpoint in candidates {
            do {
                let connection = try await connection(to: endpoint)
                let reply = try await connection.execute(.raw("CLUSTER", "SLOTS"))
                let fresh = try ClusterTopology(slotsReply: reply, askedAt: endpoint)
                guard fresh.coveredSlots > 0 else { continue }
                let changed = topology.withLock { current -> Bool in
                    let changed = current.masters != fresh.masters || current.owners != fresh.owners
                    current = fresh
                    return changed
                }
                if changed {
                    logger.info("Redis Cluster slot map changed", metadata: [
                        "masters": "\(fresh.masters.map(\.description).joined(separator: ","))", "slots": "\(fresh.coveredSlots)",
                    ])
                }
                return true
            } catch {
                continue
            }
        }
        logger.warning("no Redis Cluster node answered CLUSTER SLOTS", metadata: ["tried": "\(candidates.count)"])
        return false
    }

    private func apply(_ redirect: ClusterRedirect) {
        if case .moved(let slot, let endpoint) = redirect {
            topology.withLock { $0.move(slot: slot, to: endpoint) }
        }
    }

    private func target(slot: Int?) -> Endpoint? {
        topology.withLock { map in
            guard let slot else { return map.masters.first }
            return map.master(of: slot)
        }
    }

    /// Sleeps before the next attempt, or fails once the retry window has passed.
    private func pauseOrFail(_ pause: inout Duration, deadline: ContinuousClock.Instant, what: String, cause: (any Error)?) async throws {
        guard ContinuousClock.now + pause < deadline else {
            throw RedisError(kind: .clusterUnavailable,
                             message: "no Redis Cluster master served \(what) within \(configuration.clusterRetryTimeout)\(cause.map { "; last error: \($0)" } ?? ""). Check `redis-cli -c cluster info` on the nodes")
        }
        try await Task.sleep(for: pause)
        pause = min(pause * 2, .milliseconds(500))
    }

    // MARK: One command

    func execute<Response>(_ command: RedisCommand<Response>) async throws -> Response {
        let slot = try CommandKeys.slot(of: command.command)
        let deadline = ContinuousClock.now + configuration.clusterRetryTimeout
        var pause = Duration.milliseconds(20)
        var ask: Endpoint?
        var redirects = 0
        while true {
            guard let endpoint = ask ?? target(slot: slot) else {
                try await pauseOrFail(&pause, deadline: deadline, what: "slot \(slot ?? -1)", cause: nil)
                await refresh()
                continue
            }
            let connection: RedisConnection
            do {
                connection = try await self.connection(to: endpoint)
            } catch {
                // Nothing was sent: the node is down (a failover may be under way). Ask for the map again.
                try await pauseOrFail(&pause, deadline: deadline, what: "'\(command.command)'", cause: error)
                await refresh()
                continue
            }
            do {
                if ask != nil {
                    ask = nil
                    let replies = try await connection.send([RESPCommand("ASKING"), command.command], blockingFor: command.blockingTimeout)
                    if case .error(let message) = replies[1] { throw RedisError.server(message, endpoint: endpoint.description) }
                    return try command.decode(replies[1])
                }
                return try await connection.execute(command)
            } catch let error as RedisError where error.kind == .server {
                guard let redirect = ClusterRedirect(error.message, current: endpoint) else { throw error }
                switch redirect {
                case .moved, .ask:
                    redirects += 1
                    guard redirects <= 16 else { throw error }
                    apply(redirect)
                    if case .ask(_, let to) = redirect { ask = to }
                case .retry:
                    try await pauseOrFail(&pause, deadline: deadline, what: "'\(command.command)'", cause: error)
                    await refresh()
                }
            } catch let error as RedisError where error.kind == .connectionClosed {
                // Closed before this command was written: safe to send again once reconnected.
                try await pauseOrFail(&pause, deadline: deadline, what: "'\(command.command)'", cause: error)
            }
        }
    }

    // MARK: Pipelines

    private enum NodeOutcome: Sendable {
        /// The node could not be reached; nothing was sent.
        case notSent(RedisError)
        /// The connection failed after the commands were written: their outcome is unknown.
        case failed(RedisError)
        /// One reply per command; `replicated` is false when `WAIT` counted fewer replicas.
        case replies([RESPValue], replicated: Bool, acknowledgedBy: Int)
    }

    /// Sends `commands` as one pipeline per node, the nodes concurrently, and returns one result per
    /// command in order: the reply (error replies included, as values) or the failure of its node.
    /// Redirected commands are sent again to their new node; commands of one key keep their order.
    func sendEach(_ commands: [RESPCommand], blockingFor block: Duration?, replicas: ReplicaAcknowledgement?) async -> [Result<RESPValue, RedisError>] {
        var results = [Result<RESPValue, RedisError>?](repeating: nil, count: commands.count)
        var slots = [Int?](repeating: nil, count: commands.count)
        var todo: [Int] = []
        for index in commands.indices {
            do {
                slots[index] = try CommandKeys.slot(of: commands[index])
                todo.append(index)
            } catch let error as RedisError {
                results[index] = .failure(error)
            } catch {
                results[index] = .failure(RedisError(kind: .unexpectedReply, message: "\(error)"))
            }
        }
        let deadline = ContinuousClock.now + configuration.clusterRetryTimeout
        var pause = Duration.milliseconds(20)
        var asking: [Int: Endpoint] = [:]
        var redirectRounds = 0
        while !todo.isEmpty {
            var order: [Endpoint] = []
            var groups: [Endpoint: [Int]] = [:]
            var retry: [Int] = []
            for index in todo {
                guard let endpoint = asking[index] ?? target(slot: slots[index]) else {
                    retry.append(index)
                    continue
                }
                if groups[endpoint] == nil { order.append(endpoint) }
                groups[endpoint, default: []].append(index)
            }
            let sentAsking = asking
            asking = [:]
            var lastError: RedisError?
            var refreshNeeded = !retry.isEmpty
            var pauseNeeded = !retry.isEmpty
            let outcomes = await withTaskGroup(of: (Endpoint, NodeOutcome).self) { group in
                for endpoint in order {
                    let indices = groups[endpoint] ?? []
                    let wire = indices.map { (commands[$0], sentAsking[$0] != nil) }
                    group.addTask { (endpoint, await self.send(wire, to: endpoint, blockingFor: block, replicas: replicas)) }
                }
                var all: [Endpoint: NodeOutcome] = [:]
                for await (endpoint, outcome) in group { all[endpoint] = outcome }
                return all
            }
            for endpoint in order {
                let indices = groups[endpoint] ?? []
                switch outcomes[endpoint] {
                case .notSent(let error):
                    retry += indices
                    refreshNeeded = true
                    pauseNeeded = true
                    lastError = error
                case .failed(let error):
                    for index in indices { results[index] = .failure(error) }
                case .replies(let replies, let replicated, let acknowledgedBy):
                    for (index, reply) in zip(indices, replies) {
                        if case .error(let message) = reply, let redirect = ClusterRedirect(message, current: endpoint) {
                            apply(redirect)
                            switch redirect {
                            case .ask(_, let to): asking[index] = to
                            case .moved: break
                            case .retry:
                                refreshNeeded = true
                                pauseNeeded = true
                                lastError = .server(message, endpoint: endpoint.description)
                            }
                            retry.append(index)
                        } else if !replicated, !reply.isError, let replicas {
                            results[index] = .failure(RedisError(
                                kind: .replication,
                                message: "written on \(endpoint) but acknowledged by \(acknowledgedBy) of \(replicas.replicas) replicas within \(replicas.timeout); a failover could lose it",
                                endpoint: endpoint.description))
                        } else {
                            results[index] = .success(reply)
                        }
                    }
                case nil:
                    retry += indices
                }
            }
            if retry.isEmpty { break }
            // Redirects alone (MOVED, ASK) settle within a few rounds; waiting for a failover is
            // bounded by the deadline instead.
            if !pauseNeeded { redirectRounds += 1 }
            if redirectRounds > 16 || (pauseNeeded && ContinuousClock.now + pause >= deadline) {
                let error = RedisError(kind: .clusterUnavailable,
                                       message: "no Redis Cluster master served these commands within \(configuration.clusterRetryTimeout)\(lastError.map { "; last error: \($0)" } ?? "")")
                for index in retry { results[index] = .failure(error) }
                break
            }
            if pauseNeeded {
                try? await Task.sleep(for: pause)
                pause = min(pause * 2, .milliseconds(500))
            }
            if refreshNeeded { await refresh() }
            todo = retry.sorted()
        }
        return results.map { $0 ?? .failure(RedisError(kind: .unexpectedReply, message: "no reply recorded")) }
    }

    private func send(_ items: [(command: RESPCommand, asking: Bool)], to endpoint: Endpoint, blockingFor block: Duration?,
                      replicas: ReplicaAcknowledgement?) async -> NodeOutcome {
        let connection: RedisConnection
        do {
            connection = try await self.connection(to: endpoint)
        } catch let error as RedisError {
            return .notSent(error)
        } catch {
            return .notSent(RedisError(kind: .connection, message: "\(error)", endpoint: endpoint.description))
        }
        var wire: [RESPCommand] = []
        wire.reserveCapacity(items.count + 1)
        for item in items {
            if item.asking { wire.append(RESPCommand("ASKING")) }
            wire.append(item.command)
        }
        if let replicas { wire.append(replicas.command) }
        let replies: [RESPValue]
        do {
            replies = try await connection.send(wire, blockingFor: block)
        } catch let error as RedisError {
            return error.kind == .connectionClosed ? .notSent(error) : .failed(error)
        } catch {
            return .failed(RedisError(kind: .connection, message: "\(error)", endpoint: endpoint.description))
        }
        var answers: [RESPValue] = []
        answers.reserveCapacity(items.count)
        var position = 0
        for item in items {
            if item.asking { position += 1 }
            answers.append(replies[position])
            position += 1
        }
        guard let replicas else { return .replies(answers, replicated: true, acknowledgedBy: 0) }
        let acknowledged = replies.last?.int ?? 0
        return .replies(answers, replicated: acknowledged >= replicas.replicas, acknowledgedBy: acknowledged)
    }
}
