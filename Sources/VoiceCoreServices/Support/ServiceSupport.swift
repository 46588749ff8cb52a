import Logging
import Synchronization
import VoiceCoreBus
import VoiceCoreEvents
import VoiceCoreRedis
import VoiceCoreTenants
import VoiceCoreTime

/// What every service is built from: where the streams are, how to publish, where to keep state,
/// what to know about tenants.
public struct ServiceDependencies: Sendable {
    public var redis: RedisConfiguration
    public var naming: StreamNaming
    public var tenants: TenantProfiles
    /// This process's name within each consumer group (stable across restarts).
    public var instance: String
    public var logger: Logger

    public init(redis: RedisConfiguration, naming: StreamNaming, tenants: TenantProfiles, instance: String, logger: Logger = Logger(label: "voicecore.services")) {
        self.redis = redis
        self.naming = naming
        self.tenants = tenants
        self.instance = instance
        self.logger = logger
    }

    func consumer(_ group: String, streams: [String]) -> ConsumerConfiguration {
        ConsumerConfiguration(group: group, streams: streams, consumer: "\(instance)-\(group)")
    }

    func connect(_ role: String) async throws -> RedisConnection {
        var configuration = redis
        configuration.clientName = "vc-service:\(role):\(instance)".replacingOccurrences(of: " ", with: "_")
        return try await RedisConnection.connect(configuration, logger: logger)
    }
}

/// Where tenant facts come from: the tenant directory in production, anything in a test.
public protocol TenantProfileSource: Sendable {
    func profile(of tenant: Identifier) async throws -> TenantProfile?
}

extension TenantDirectory: TenantProfileSource {}

/// Tenant profiles, cached for a few seconds: the services look one up per message.
public final class TenantProfiles: Sendable {
    private let source: any TenantProfileSource
    private let ttl: Duration
    private let cache = Mutex<[Identifier: (profile: TenantProfile?, fetched: ContinuousClock.Instant)]>([:])

    public init(source: any TenantProfileSource, ttl: Duration = .seconds(5)) {
        self.source = source
        self.ttl = ttl
    }

    /// The tenant's profile; nil for a tenant the directory does not know (its messages are
    /// handled with defaults: starter plan, built-in AI settings, no webhooks).
    public func profile(of tenant: Identifier) async throws -> TenantProfile? {
        let now = ContinuousClock.now
        if let hit = cache.withLock({ $0[tenant] }), now - hit.fetched < ttl { return hit.profile }
        let profile = try await source.profile(of: tenant)
        cache.withLock { $0[tenant] = (profile, now) }
        return profile
    }

    /// Forgets a tenant so the next lookup reads the directory (after this process changed it).
    public func invalidate(_ tenant: Identifier) {
        _ = cache.withLock { $0.removeValue(forKey: tenant) }
    }
}

/// Publishes what a handler derives from the message in hand, once: each derived message has a
/// key naming its cause and purpose (e.g. `call:<id>:ended`), and the publish is deduplicated on
/// it (one Lua script with the XADD). A redelivered message, handled again after a crash between
/// publishing and acknowledging, publishes nothing new.
struct Emitter: Sendable {
    let publisher: Publisher

    @discardableResult
    func emit<M: Message>(_ message: M, tenant: Identifier, key: String, time: Timestamp = .now) async throws -> Identifier {
        // An invalid event would be dead-lettered by every consumer: refuse it here, so the
        // message that caused it fails (and is retried, then dead-lettered) instead.
        try message.validate()
        let context = MessageContext.current
        let envelope = EventEnvelope(message, tenant: tenant, source: publisher.configuration.source,
                                     correlationID: context?.correlationID, causationID: context?.causationID, time: time)
        switch try await publisher.publish(envelope, category: M.category, kind: M.kind, deduplicationKey: key) {
        case .published(let entry): return entry.eventID
        case .duplicate(let entry): return entry.eventID
        }
    }
}

/// Small per-entity state (a call's progress, what the AI heard) in Redis hashes beside the
/// partition's stream (same Redis Cluster slot), expiring after `ttl` without writes.
///
/// Handlers read state, publish, then write state: a crash between the publish and the write
/// leaves the old state, the message is redelivered, and the derived publishes are deduplicated
/// (``Emitter``), so nothing is lost and nothing doubles.
///
/// Reads are served from memory after the first (write-through: a write updates Redis, then the
/// cache). Only this instance writes a partition's state while it holds the partition's lease;
/// when it acquires a partition, ``invalidate(stream:)`` drops what it remembered of it, since
/// another instance may have written meanwhile.
final class StateStore: Sendable {
    let connection: RedisConnection
    let ttlSeconds: Int
    private let capacity: Int
    private let cache = Mutex<[String: [String: String]]>([:])

    init(connection: RedisConnection, ttl: Duration = .seconds(7 * 86_400), capacity: Int = 200_000) {
        self.connection = connection
        self.ttlSeconds = Int(ttl.components.seconds)
        self.capacity = capacity
    }

    /// `<stream>:state:<service>:<entity>`: the stream's hash tag keeps it in the stream's slot.
    static func key(stream: String, service: String, entity: String) -> String {
        "\(stream):state:\(service):\(entity)"
    }

    func read(_ key: String) async throws -> [String: String] {
        if let cached = cache.withLock({ $0[key] }) { return cached }
        let reply = try await connection.send("HGETALL", .string(key))
        var fields: [String: String] = [:]
        if let items = reply.array {
            var index = 0
            while index + 1 < items.count {
                if let name = items[index].string { fields[name] = items[index + 1].string ?? "" }
                index += 2
            }
        }
        remember(key, fields)
        return fields
    }

    /// Sets `fields` (others stay).
    func write(_ key: String, _ fields: [String: String]) async throws {
        guard !fields.isEmpty else { return }
        var hset: [RESPArgument] = ["HSET", .string(key)]
        for (name, value) in fields.sorted(by: { $0.key < $1.key }) {
            hset.append(.string(name))
            hset.append(.string(value))
        }
        let replies: [RESPValue]
        do {
            replies = try await connection.send([RESPCommand(hset), RESPCommand(["EXPIRE", .string(key), .string(String(ttlSeconds))])])
        } catch {
            forget(key)
            throw error
        }
        for reply in replies {
            if case .error(let message) = reply {
                forget(key)
                throw RedisError.server(message)
            }
        }
        cache.withLock { cache in
            if var known = cache[key] {
                known.merge(fields) { _, new in new }
                cache[key] = known
            }
        }
    }

    /// Drops what is remembered of one partition's state.
    func invalidate(stream: String) {
        let prefix = stream + ":state:"
        cache.withLock { cache in
            for key in cache.keys where key.hasPrefix(prefix) { cache.removeValue(forKey: key) }
        }
    }

    private func remember(_ key: String, _ fields: [String: String]) {
        cache.withLock { cache in
            // Bounded: past the capacity start over (reads fall back to Redis).
            if cache.count >= capacity { cache.removeAll(keepingCapacity: true) }
            cache[key] = fields
        }
    }

    private func forget(_ key: String) {
        _ = cache.withLock { $0.removeValue(forKey: key) }
    }
}
