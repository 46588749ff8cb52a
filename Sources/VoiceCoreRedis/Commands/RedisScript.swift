import Synchronization

/// A Lua script run with `EVALSHA`; the SHA1 comes from the server's `SCRIPT LOAD` answer on
/// first use, and a node that answers `NOSCRIPT` (restarted, flushed, or another cluster node)
/// gets the script with `EVAL`.
///
/// ```swift
/// let dedupe = RedisScript("return redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', 60)")
/// let reply = try await dedupe.run(on: client, keys: ["dedupe:abc"], arguments: ["1"])
/// ```
public final class RedisScript: Sendable {
    public let source: String
    private let sha1 = Mutex<String?>(nil)

    public init(_ source: String) {
        self.source = source
    }

    /// Runs the script on the node of its keys, over either transport. A node that does not know
    /// the script yet (a restarted server, or another cluster node than the one that loaded it)
    /// gets it with `EVAL`, which also caches it there (``RedisTransport/reply(to:scriptSource:)``).
    /// - Throws: ``RedisError``: the script's error reply, or a connection failure.
    public func run(on client: some RedisTransport, keys: [String], arguments: [RESPArgument]) async throws -> RESPValue {
        var sha = sha1.withLock { $0 }
        if sha == nil {
            let loaded = try await client.execute(.scriptLoad(source))
            sha1.withLock { $0 = loaded }
            sha = loaded
        }
        let reply = try await client.reply(to: RedisCommand.evalsha(sha ?? "", keys: keys, arguments: arguments).command, scriptSource: source)
        if case .error(let message) = reply { throw RedisError.server(message, endpoint: client.configuration.endpoint.description) }
        return reply
    }
}
