import VoiceCoreEvents
import VoiceCoreRedis
import VoiceCoreTime

/// Which partitions (streams) this member of a consumer group may read.
///
/// Redis consumer groups hand entries of one stream to whichever member asks, so two members would
/// interleave one call's events. A lease gives one member a stream at a time: the key
/// `<stream>:lease:<group>` (same hash tag, same Redis Cluster slot) holds the member's name with a
/// time-to-live. Members announce themselves in `<prefix>:members:<group>` (a sorted set of
/// heartbeats); each aims for ⌈partitions ÷ live members⌉ streams, releases extras when members
/// join, and takes free streams when members leave or die (a dead member's leases expire after the
/// TTL). A member that takes a stream over first claims every entry still pending in it — older
/// than anything new — so a call's events stay in order across the handover.
///
/// While a batch is handled, its member renews its leases every third of the TTL, so a slow batch
/// keeps its partitions. A member stalled longer than the TTL (a frozen process) can still lose a
/// lease mid-batch; the overlap lasts at most that batch, and handlers are idempotent anyway.
struct PartitionLeases {
    let group: String
    let consumer: String
    let streams: [String]
    let ttl: Duration
    let membersKey: String

    private static let renewScript = RedisScript("""
        if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
        return 0
        """)

    /// Takes a free lease, or one already ours (a restarted member under the same name).
    private static let acquireScript = RedisScript("""
        local holder = redis.call('GET', KEYS[1])
        if holder == false or holder == ARGV[1] then
          redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
          return 1
        end
        return 0
        """)

    private static let releaseScript = RedisScript("""
        if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
        return 0
        """)

    init(group: String, consumer: String, streams: [String], ttl: Duration) {
        self.group = group
        self.consumer = consumer
        self.streams = streams
        self.ttl = ttl
        let prefix = streams.first.map { String($0.prefix { $0 != ":" }) } ?? "vc"
        membersKey = "\(prefix):members:\(group)"
    }

    func leaseKey(_ stream: String) -> String { "\(stream):lease:\(group)" }

    private var ttlMilliseconds: Int { Int(ttl.milliseconds) }

    /// Heartbeats, renews what is held, releases extras, takes free streams up to the fair share.
    /// Returns the streams held now and those newly acquired.
    func maintain(holding held: Set<String>, on connection: RedisClient) async throws -> (held: Set<String>, acquired: [String]) {
        let now = Timestamp.now.millisecondsSinceEpoch
        // One round trip: heartbeat, forget members silent for a TTL, count the rest.
        let heartbeat: [RESPCommand] = [
            RESPCommand(["ZADD", .string(membersKey), .integer(Int(now)), .string(consumer)]),
            RESPCommand(["ZREMRANGEBYSCORE", .string(membersKey), "-inf", .integer(Int(now) - ttlMilliseconds)]),
            RESPCommand(["PEXPIRE", .string(membersKey), .integer(ttlMilliseconds * 10)]),
            RESPCommand(["ZCARD", .string(membersKey)]),
        ]
        let replies = try await connection.send(heartbeat)
        let members = replies.last?.int ?? 1
        let share = (streams.count + max(1, members) - 1) / max(1, members)

        var holding: [String] = []
        for stream in streams where held.contains(stream) {
            let renewed = try await Self.renewScript.run(on: connection, keys: [leaseKey(stream)], arguments: [.string(consumer), .integer(ttlMilliseconds)])
            if renewed.int == 1 { holding.append(stream) }
        }
        while holding.count > share, let extra = holding.popLast() {
            _ = try await Self.releaseScript.run(on: connection, keys: [leaseKey(extra)], arguments: [.string(consumer)])
        }
        var acquired: [String] = []
        if holding.count < share {
            // Start at a place that depends on the member, so members do not all race for the same streams.
            let offset = Int(StreamNaming.fnv1a32(Array(consumer.utf8)) % UInt32(max(1, streams.count)))
            for index in 0..<streams.count where holding.count < share {
                let stream = streams[(index + offset) % streams.count]
                if holding.contains(stream) { continue }
                let reply = try await Self.acquireScript.run(on: connection, keys: [leaseKey(stream)], arguments: [.string(consumer), .integer(ttlMilliseconds)])
                if reply.int == 1 {
                    holding.append(stream)
                    acquired.append(stream)
                }
            }
        }
        return (Set(holding), acquired)
    }

    /// Keeps the held leases (and the membership) alive while a long batch is handled: renews every
    /// third of the TTL until cancelled.
    func keepAlive(_ held: Set<String>, on connection: RedisClient) async {
        while !Task.isCancelled {
            do {
                try await Task.sleep(for: ttl / 3)
                try await renew(held, on: connection)
            } catch {
                return
            }
        }
    }

    /// One heartbeat and renewal of the leases held, without taking or giving any (safe while
    /// entries of those partitions are in hand).
    func renew(_ held: Set<String>, on connection: RedisClient) async throws {
        _ = try await connection.send("ZADD", .string(membersKey), .integer(Int(Timestamp.now.millisecondsSinceEpoch)), .string(consumer))
        for stream in held {
            _ = try await Self.renewScript.run(on: connection, keys: [leaseKey(stream)], arguments: [.string(consumer), .integer(ttlMilliseconds)])
        }
    }

    /// Gives every lease back and leaves the member set (graceful shutdown).
    func releaseAll(_ held: Set<String>, on connection: RedisClient) async {
        for stream in held {
            _ = try? await Self.releaseScript.run(on: connection, keys: [leaseKey(stream)], arguments: [.string(consumer)])
        }
        _ = try? await connection.send("ZREM", .string(membersKey), .string(consumer))
    }
}
