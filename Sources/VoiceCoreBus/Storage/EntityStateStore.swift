import VoiceCoreRedis

/// Small state per entity (a call's progress, what a service heard so far) in one Redis hash per
/// key, each expiring `ttl` after its last write.
///
/// A consumer that keeps state per entity reads it, decides, publishes, then writes it: a crash
/// before the write leaves the old state, the message is delivered again and handled from it. A
/// key made with ``key(stream:owner:entity:)`` sits beside the partition's stream and shares its
/// hash tag, so on a Redis Cluster the state lives in the slot of the partition whose messages
/// change it, and one consumer instance (the partition's holder) writes it at a time.
///
/// ```swift
/// let state = EntityStateStore(connection: connection)
/// let key = EntityStateStore.key(stream: message.stream, owner: "calls", entity: callID.description)
/// var fields = try await state.fields(of: key)
/// fields["status"] = "answered"
/// try await state.write([(key, ["status": "answered"])])
/// ```
public struct EntityStateStore: Sendable {
    private let connection: BusConnection
    /// How long a key lives after its last write.
    public let ttl: Duration

    public init(connection: BusConnection, ttl: Duration = .seconds(7 * 86_400)) {
        self.connection = connection
        self.ttl = ttl
    }

    /// `<stream>:state:<owner>:<entity>`: the stream's hash tag keeps it in the stream's slot.
    public static func key(stream: String, owner: String, entity: String) -> String {
        "\(keyPrefix(stream: stream))\(owner):\(entity)"
    }

    /// What every key of ``key(stream:owner:entity:)`` for `stream` starts with.
    public static func keyPrefix(stream: String) -> String {
        "\(stream):state:"
    }

    /// Every field of `key`; empty when it does not exist (never written, or expired).
    public func fields(of key: String) async throws -> [String: String] {
        let reply = try await connection.client.send("HGETALL", .string(key))
        var fields: [String: String] = [:]
        if let items = reply.array {
            var index = 0
            while index + 1 < items.count {
                if let name = items[index].string { fields[name] = items[index + 1].string ?? "" }
                index += 2
            }
        }
        return fields
    }

    /// Sets the given fields of each key (its other fields stay) and restarts its `ttl`: `HSET`
    /// and `EXPIRE` per key, all keys in one pipeline. A key may appear more than once (applied in
    /// order). Throws the first error Redis answered; a failed pipeline may have applied some keys.
    public func write(_ items: [(key: String, fields: [String: String])]) async throws {
        var commands: [RESPCommand] = []
        for (key, fields) in items where !fields.isEmpty {
            var hset: [RESPArgument] = ["HSET", .string(key)]
            for (name, value) in fields.sorted(by: { $0.key < $1.key }) {
                hset.append(.string(name))
                hset.append(.string(value))
            }
            commands.append(RESPCommand(hset))
            commands.append(RESPCommand(["EXPIRE", .string(key), .string(String(ttl.components.seconds))]))
        }
        guard !commands.isEmpty else { return }
        for reply in try await connection.client.send(commands) {
            if case .error(let message) = reply { throw RedisError.server(message) }
        }
    }
}
