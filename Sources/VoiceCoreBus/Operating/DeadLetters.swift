import VoiceCoreRedis

/// Inspects and repairs dead-letter streams (`<stream>:dlq:<group>`, written by
/// ``ConsumerGroupRunner``): list them, show their entries, requeue entries to their origin, purge.
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

    // XADD to the origin and XDEL from the dead-letter stream in one step (same hash tag, same slot).
    private static let requeueScript = RedisScript("""
        local id = redis.call('XADD', KEYS[1], '*', unpack(ARGV, 2))
        redis.call('XDEL', KEYS[2], ARGV[1])
        return id
        """)

    /// Puts dead-lettered entries back on their origin streams with their original fields and an
    /// incremented ``requeueCountField``; removes them from the dead-letter stream.
    /// - Parameter ids: the entries to requeue; `nil` for all.
    /// - Returns: the new entry ids at the origins.
    public func requeue(_ deadLetterStream: String, ids: [StreamEntryID]? = nil, maxRequeues: Int = defaultMaxRequeues, force: Bool = false) async throws -> [StreamEntryID] {
        var entries = try await connection.execute(.xrange(deadLetterStream))
        if let ids { entries = entries.filter { ids.contains($0.id) } }
        var requeued: [StreamEntryID] = []
        for entry in entries {
            guard let fields = entry.fields, let origin = entry["dlq.origin_stream"] else {
                throw RequeueRefused(entry: entry.id, reason: "is not a dead letter (no dlq.origin_stream)")
            }
            let previous = Int(entry[Self.requeueCountField] ?? "0") ?? 0
            guard force || previous < maxRequeues else {
                throw RequeueRefused(entry: entry.id, reason: "was requeued \(previous) times already (limit \(maxRequeues)); fix the handler or use --force")
            }
            var arguments: [RESPArgument] = [.string(entry.id.description)]
            for field in fields where !field.name.hasPrefix("dlq.") {
                arguments += [.string(field.name), .bytes(field.value)]
            }
            arguments += [.string(Self.requeueCountField), .string(String(previous + 1))]
            let reply = try await Self.requeueScript.run(on: connection, keys: [origin, deadLetterStream], arguments: arguments)
            if let text = reply.string, let id = StreamEntryID(text) { requeued.append(id) }
        }
        return requeued
    }

    /// Deletes a dead-letter stream. Returns how many entries it held.
    public func purge(_ deadLetterStream: String) async throws -> Int {
        let length = try await connection.execute(.xlen(deadLetterStream))
        _ = try await connection.execute(.del([deadLetterStream]))
        return length
    }
}
