import VoiceCoreRedis

/// Inspects and repairs dead-letter streams (`<stream>:dlq:<group>`, written by
/// ``ConsumerGroupRunner``): list them, show their entries, requeue entries to the group that
/// failed them, purge.
public struct DeadLetters: Sendable {
    /// The field a requeued entry carries: how often it has been requeued.
    public static let requeueCountField = "dlq.requeues"
    /// Requeues allowed per entry before `requeue` refuses (without `force`), so a poison entry
    /// cannot circle forever.
    public static let defaultMaxRequeues = 3

    let connection: RedisClient

    public init(connection: RedisClient) {
        self.connection = connection
    }

    /// Dead-letter streams under `prefix:` with their lengths.
    public func list(prefix: String) async throws -> [(stream: String, length: Int)] {
        var result: [(String, Int)] = []
        for key in try await connection.scanAll(match: "\(prefix):*:dlq:*", type: "stream") { result.append((key, try await connection.execute(.xlen(key)))) }
        return result
    }

    /// The entries of a dead-letter stream, oldest first.
    public func show(_ deadLetterStream: String, count: Int = 100) async throws -> [StreamEntry] {
        try await connection.execute(.xrange(deadLetterStream, count: count))
    }

    /// Why a requeue was refused.
    public struct RequeueRefused: Error, Sendable, CustomStringConvertible {
        public var entry: StreamEntryID
        public var reason: String
        public var description: String { "entry \(entry): \(reason)" }
    }

    // Moves one dead letter to its group's requeue stream, once: nothing when it is gone from the
    // dead-letter stream (requeued already). The group is created on the requeue stream if
    // needed. All keys share the origin's hash tag (one Redis Cluster slot).
    private static let requeueScript = RedisScript("""
        if #redis.call('XRANGE', KEYS[2], ARGV[1], ARGV[1]) == 0 then return false end
        local created = redis.pcall('XGROUP', 'CREATE', KEYS[1], ARGV[2], '0', 'MKSTREAM')
        if type(created) == 'table' and created.err and not string.find(created.err, 'BUSYGROUP') then return created end
        local id = redis.call('XADD', KEYS[1], '*', unpack(ARGV, 3))
        redis.call('XDEL', KEYS[2], ARGV[1])
        return id
        """)

    /// Hands dead-lettered entries back to the one group that failed them: each goes, with its
    /// original fields, its origin id (`dlq.origin_id`) and an incremented ``requeueCountField``,
    /// to the group's requeue stream (``ConsumerConfiguration/retryStream(of:)``), which only that
    /// group reads (within its claim interval), and leaves the dead-letter stream in the same
    /// atomic step. The shared stream gets no new entry, so no other group handles it again. An
    /// entry requeued twice (two operators, a retried command) is delivered once: the second
    /// finds it gone and skips it.
    /// - Parameter ids: the entries to requeue; `nil` for all.
    /// - Returns: the new entry ids in the requeue streams.
    public func requeue(_ deadLetterStream: String, ids: [StreamEntryID]? = nil, maxRequeues: Int = defaultMaxRequeues, force: Bool = false) async throws -> [StreamEntryID] {
        var entries = try await connection.execute(.xrange(deadLetterStream))
        if let ids { entries = entries.filter { ids.contains($0.id) } }
        for entry in entries {
            guard entry.fields != nil, entry["dlq.origin_stream"] != nil, entry["dlq.group"] != nil else {
                throw RequeueRefused(entry: entry.id, reason: "is not a dead letter (no dlq.origin_stream or dlq.group)")
            }
            let previous = Int(entry[Self.requeueCountField] ?? "0") ?? 0
            guard force || previous < maxRequeues else {
                throw RequeueRefused(entry: entry.id, reason: "was requeued \(previous) times already (limit \(maxRequeues)); fix the handler or use --force")
            }
        }
        var requeued: [StreamEntryID] = []
        for entry in entries {
            guard let fields = entry.fields, let origin = entry["dlq.origin_stream"], let group = entry["dlq.group"] else { continue }
            let previous = Int(entry[Self.requeueCountField] ?? "0") ?? 0
            var arguments: [RESPArgument] = [.string(entry.id.description), .string(group)]
            for field in fields where !field.name.hasPrefix("dlq.") {
                arguments += [.string(field.name), .bytes(field.value)]
            }
            if let originID = entry["dlq.origin_id"] { arguments += [.string(Self.originIDField), .string(originID)] }
            arguments += [.string(Self.requeueCountField), .string(String(previous + 1))]
            let retry = ConsumerConfiguration.retryStream(of: origin, group: group)
            let reply = try await Self.requeueScript.run(on: connection, keys: [retry, deadLetterStream], arguments: arguments)
            if let text = reply.string, let id = StreamEntryID(text) { requeued.append(id) }
        }
        return requeued
    }

    /// The field of a requeued entry that names its entry id at the origin stream.
    public static let originIDField = "dlq.origin_id"

    /// Deletes a dead-letter stream. Returns how many entries it held.
    public func purge(_ deadLetterStream: String) async throws -> Int {
        let length = try await connection.execute(.xlen(deadLetterStream))
        _ = try await connection.execute(.del([deadLetterStream]))
        return length
    }
}
