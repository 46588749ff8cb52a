/// A way to send commands to Redis and read their replies: the one command/reply API of both of
/// VoiceCore's transports.
///
/// - ``RedisClient``: hiredis on a thread of its own per connection, for a single server or a
///   Redis Cluster (each command routed to the master of its key's slot). A round trip blocks that
///   thread, so callers batch (the bus `Publisher` group-commits into pipelines).
/// - ``EventLoopRedisTransport``: one NIO connection per event loop, replies read by hiredis'
///   reader, for code that runs on those loops (the HTTP edge). Commands sent during one tick of a
///   loop go out as one pipeline; a reply resumes its caller on the loop that sent it.
///
/// Both keep the same guarantees: a command whose reply did not arrive fails with a
/// ``RedisError`` whose outcome is unknown (never resent), and the next command reconnects.
/// Error replies (`-ERR …`) are values here, so a pipeline's other commands keep their results.
///
/// ```swift
/// func store(_ entry: [RESPArgument], over transport: some RedisTransport) async throws -> RESPValue {
///     try await transport.reply(to: RESPCommand(["XADD", "vc:{p00}:calls", "*"] + entry))
/// }
/// ```
public protocol RedisTransport: Sendable {
    /// The server (or a cluster's seeds) and the connection settings.
    var configuration: RedisConfiguration { get }

    /// The reply to one command; an error reply is a value.
    /// - Throws: ``RedisError`` when the connection failed or timed out: whether the server applied
    ///   the command is unknown.
    func reply(to command: RESPCommand) async throws -> RESPValue

    /// Sends `commands` as one pipeline (one per node on a cluster) and returns each command's
    /// reply (error replies as values) or the failure of the connection that carried it. With
    /// `replicas`, each pipeline ends with `WAIT`, and a command that replied but reached fewer
    /// replicas fails with ``RedisError/Kind/replication``.
    func sendEach(_ commands: [RESPCommand], replicas: ReplicaAcknowledgement?) async -> [Result<RESPValue, RedisError>]
}

extension RedisTransport {
    /// Sends one typed command and decodes its reply; an error reply throws.
    public func execute<Response>(_ command: RedisCommand<Response>) async throws -> Response {
        let reply = try await reply(to: command.command)
        if case .error(let message) = reply { throw RedisError.server(message, endpoint: configuration.endpoint.description) }
        return try command.decode(reply)
    }

    // MARK: Scripts

    /// The reply to one command that may be a script call by SHA-1 (`EVALSHA`): when the server
    /// does not know the script (a restarted or flushed server, another cluster node), the call
    /// goes once more as `EVAL` with `scriptSource`, which also caches it there.
    public func reply(to command: RESPCommand, scriptSource: String?) async throws -> RESPValue {
        let reply = try await reply(to: command)
        guard let scriptSource, reply.isUnknownScript, let eval = command.evalsha(asEvalOf: scriptSource) else { return reply }
        return try await self.reply(to: eval)
    }

    /// ``sendEach(_:replicas:)`` for pipelines holding script calls: the `EVALSHA`s answered
    /// `NOSCRIPT` go once more, as `EVAL` with the source `scriptSource(index)` gives, in one more
    /// pipeline; their results replace the `NOSCRIPT` answers. Commands for which `scriptSource`
    /// is nil are never resent.
    public func sendEach(_ commands: [RESPCommand], replicas: ReplicaAcknowledgement?,
                         scriptSource: (_ index: Int) -> String?) async -> [Result<RESPValue, RedisError>] {
        var results = await sendEach(commands, replicas: replicas)
        var unknown: [Int] = []
        var evals: [RESPCommand] = []
        for index in results.indices {
            guard case .success(let reply) = results[index], reply.isUnknownScript, let source = scriptSource(index),
                  let eval = commands[index].evalsha(asEvalOf: source) else { continue }
            unknown.append(index)
            evals.append(eval)
        }
        if unknown.isEmpty { return results }
        let retried = await sendEach(evals, replicas: replicas)
        for (index, result) in zip(unknown, retried) { results[index] = result }
        return results
    }
}

extension RESPCommand {
    /// This `EVALSHA sha1 numkeys key… arg…` as `EVAL source numkeys key… arg…` (what a server that
    /// answered `NOSCRIPT` needs); nil when this is not an `EVALSHA`.
    public func evalsha(asEvalOf source: String) -> RESPCommand? {
        guard arguments.count >= 3, arguments[0] == "EVALSHA" else { return nil }
        var eval = arguments
        eval[0] = "EVAL"
        eval[1] = .string(source)
        return RESPCommand(eval)
    }
}

extension RESPValue {
    /// Whether this is the `NOSCRIPT` error: the server does not know the script by its SHA-1.
    public var isUnknownScript: Bool {
        if case .error(let message) = self { return message.hasPrefix("NOSCRIPT") }
        return false
    }
}
