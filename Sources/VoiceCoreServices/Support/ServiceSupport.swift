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

    func consumer(_ group: String, streams: [String], readInterval: Duration? = nil) -> ConsumerConfiguration {
        ConsumerConfiguration(group: group, streams: streams, consumer: "\(instance)-\(group)", readInterval: readInterval)
    }

    /// How often services that no caller waits on (billing, CRM) read a busy
    /// stream: they skip most of the call stream's entries (transcript chunks above all), and
    /// reading them every 50 ms instead of at every entry spares Redis most of their reads.
    static let backgroundReadInterval: Duration = .milliseconds(50)

    /// The service's publisher (its own connection, source `/services/<group>`), deduplicating.
    func emitter(_ group: String) async throws -> Emitter {
        Emitter(publisher: Publisher(connection: try await connect("\(group)-publisher"),
                                     configuration: PublisherConfiguration(source: "/services/\(group)", naming: naming)))
    }

    func connect(_ role: String) async throws -> RedisClient {
        var configuration = redis
        configuration.clientName = "vc-service:\(role):\(instance)".replacingOccurrences(of: " ", with: "_")
        return try await RedisClient.connect(configuration, logger: logger)
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
///
/// Inside an ``EffectBatch`` (a partition's batch) the publish is queued and made with the
/// batch's others when the batch ends, before its entries are acknowledged.
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
        if let batch = EffectBatch.current {
            batch.publish(envelope, category: M.category, kind: M.kind, key: key)
            return envelope.id
        }
        switch try await publisher.publish(envelope, category: M.category, kind: M.kind, deduplicationKey: key) {
        case .published(let entry): return entry.eventID
        case .duplicate(let entry): return entry.eventID
        }
    }
}

/// The effects of one partition's batch, applied together when it ends: first every publish (one
/// group of deduplicated publishes, in order), then every state write (one pipeline), then the
/// runner acknowledges the entries. Until then the state lives in the stores' memory, so later
/// messages of the batch see it. If anything fails, the memory of the written states is dropped
/// and nothing is acknowledged: the messages are handled again from the state in Redis, and the
/// publishes already made are deduplicated.
final class EffectBatch: Sendable {
    @TaskLocal static var current: EffectBatch?

    private struct Publish: Sendable {
        var envelope: EventEnvelope
        var category: StreamCategory
        var kind: MessageKind
        var key: String
    }

    private struct Write: Sendable {
        var store: StateStore
        var key: String
        var fields: [String: String]
    }

    private let effects = Mutex<(publishes: [Publish], writes: [Write])>(([], []))

    func publish(_ envelope: EventEnvelope, category: StreamCategory, kind: MessageKind, key: String) {
        effects.withLock { $0.publishes.append(Publish(envelope: envelope, category: category, kind: kind, key: key)) }
    }

    func write(_ store: StateStore, key: String, fields: [String: String]) {
        effects.withLock { $0.writes.append(Write(store: store, key: key, fields: fields)) }
    }

    /// The scope a service installs with `MessageHandlers.aroundPartitionBatch`.
    static func scope(publisher: Publisher) -> PartitionBatchScope {
        { _, body in
            let batch = EffectBatch()
            do {
                try await EffectBatch.$current.withValue(batch) { try await body() }
                try await batch.apply(publisher)
            } catch {
                batch.discard()
                throw error
            }
        }
    }

    private func apply(_ publisher: Publisher) async throws {
        let (publishes, writes) = effects.withLock { ($0.publishes, $0.writes) }
        let results = await publisher.publish(deduplicated: publishes.map { ($0.envelope, $0.category, $0.kind, $0.key) })
        for result in results {
            if case .failure(let error) = result {
                throw error as? RedisError ?? RedisError(kind: .unexpectedReply, message: "a publish of the batch failed: \(error)")
            }
        }
        // Writes of one store go out as one pipeline.
        var byStore: [ObjectIdentifier: (StateStore, [(String, [String: String])])] = [:]
        for write in writes { byStore[ObjectIdentifier(write.store), default: (write.store, [])].1.append((write.key, write.fields)) }
        for (store, items) in byStore.values { try await store.persist(items) }
        for write in writes { write.store.settled(write.key) }
    }

    private func discard() {
        for write in effects.withLock({ $0.writes }) { write.store.forget(write.key) }
    }
}

/// Small per-entity state (a call's progress, what the AI heard) in Redis hashes beside the
/// partition's stream (same Redis Cluster slot), expiring after `ttl` without writes.
///
/// Handlers read state, publish, then write state: a crash between the publish and the write
/// leaves the old state, the message is redelivered, and the derived publishes are deduplicated
/// (``Emitter``), so nothing is lost and nothing doubles. Inside an ``EffectBatch`` the write
/// reaches Redis after the batch's publishes.
///
/// Reads are served from memory after the first (write-through). Only this instance writes a
/// partition's state while it holds the partition's lease; when it acquires a partition,
/// ``invalidate(stream:)`` drops what it remembered of it, since another instance may have
/// written meanwhile.
final class StateStore: Sendable {
    let connection: RedisClient
    let ttlSeconds: Int
    private let capacity: Int

    private struct Entry {
        var fields: [String: String]
        /// False: only fields written here are known (not yet read from Redis).
        var complete: Bool
        /// Writes of an open batch not yet in Redis: never evicted.
        var unsettled: Int
    }

    private let cache = Mutex<[String: Entry]>([:])

    init(connection: RedisClient, ttl: Duration = .seconds(7 * 86_400), capacity: Int = 200_000) {
        self.connection = connection
        self.ttlSeconds = Int(ttl.components.seconds)
        self.capacity = capacity
    }

    /// `<stream>:state:<service>:<entity>`: the stream's hash tag keeps it in the stream's slot.
    static func key(stream: String, service: String, entity: String) -> String {
        "\(stream):state:\(service):\(entity)"
    }

    func read(_ key: String) async throws -> [String: String] {
        if let cached = cache.withLock({ $0[key] }), cached.complete { return cached.fields }
        let reply = try await connection.send("HGETALL", .string(key))
        var fields: [String: String] = [:]
        if let items = reply.array {
            var index = 0
            while index + 1 < items.count {
                if let name = items[index].string { fields[name] = items[index + 1].string ?? "" }
                index += 2
            }
        }
        return cache.withLock { cache in
            if cache.count >= capacity { cache = cache.filter { $0.value.unsettled > 0 } }
            var entry = cache[key] ?? Entry(fields: [:], complete: true, unsettled: 0)
            // Fields written here and not yet in Redis win over what Redis has.
            entry.fields = fields.merging(entry.fields) { _, mine in mine }
            entry.complete = true
            cache[key] = entry
            return entry.fields
        }
    }

    /// Sets `fields` (others stay): now, or, inside an ``EffectBatch``, when the batch ends (the
    /// memory has them at once).
    func write(_ key: String, _ fields: [String: String]) async throws {
        guard !fields.isEmpty else { return }
        if let batch = EffectBatch.current {
            cache.withLock { cache in
                var entry = cache[key] ?? Entry(fields: [:], complete: false, unsettled: 0)
                entry.fields.merge(fields) { _, new in new }
                entry.unsettled += 1
                cache[key] = entry
            }
            batch.write(self, key: key, fields: fields)
            return
        }
        do {
            try await persist([(key, fields)])
        } catch {
            forget(key)
            throw error
        }
        cache.withLock { cache in
            if var entry = cache[key] {
                entry.fields.merge(fields) { _, new in new }
                cache[key] = entry
            }
        }
    }

    /// HSET and EXPIRE of each key, as one pipeline.
    func persist(_ items: [(key: String, fields: [String: String])]) async throws {
        var commands: [RESPCommand] = []
        for (key, fields) in items {
            var hset: [RESPArgument] = ["HSET", .string(key)]
            for (name, value) in fields.sorted(by: { $0.key < $1.key }) {
                hset.append(.string(name))
                hset.append(.string(value))
            }
            commands.append(RESPCommand(hset))
            commands.append(RESPCommand(["EXPIRE", .string(key), .string(String(ttlSeconds))]))
        }
        for reply in try await connection.send(commands) {
            if case .error(let message) = reply { throw RedisError.server(message) }
        }
    }

    /// A batch's write of `key` reached Redis.
    func settled(_ key: String) {
        cache.withLock { cache in
            if var entry = cache[key] {
                entry.unsettled = max(0, entry.unsettled - 1)
                cache[key] = entry
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

    func forget(_ key: String) {
        _ = cache.withLock { $0.removeValue(forKey: key) }
    }
}
