import Synchronization
import VoiceCoreBus

/// Small per-entity state (a call's progress, what the AI heard) in the bus's
/// ``EntityStateStore`` (a Redis hash beside the partition's stream, in its Redis Cluster slot),
/// expiring after `ttl` without writes, with a write-through memory of it and the batch's writes.
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
    private let store: EntityStateStore
    private let capacity: Int

    private struct Entry {
        var fields: [String: String]
        /// False: only fields written here are known (not yet read from Redis).
        var complete: Bool
        /// Writes of an open batch not yet in Redis: never evicted.
        var unsettled: Int
    }

    private let cache = Mutex<[String: Entry]>([:])

    init(connection: BusConnection, ttl: Duration = .seconds(7 * 86_400), capacity: Int = 200_000) {
        self.store = EntityStateStore(connection: connection, ttl: ttl)
        self.capacity = capacity
    }

    /// `<stream>:state:<service>:<entity>`: the stream's hash tag keeps it in the stream's slot.
    static func key(stream: String, service: String, entity: String) -> String {
        EntityStateStore.key(stream: stream, owner: service, entity: entity)
    }

    func read(_ key: String) async throws -> [String: String] {
        if let cached = cache.withLock({ $0[key] }), cached.complete { return cached.fields }
        let fields = try await store.fields(of: key)
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
        try await store.write(items)
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
        let prefix = EntityStateStore.keyPrefix(stream: stream)
        cache.withLock { cache in
            for key in cache.keys where key.hasPrefix(prefix) { cache.removeValue(forKey: key) }
        }
    }

    func forget(_ key: String) {
        _ = cache.withLock { $0.removeValue(forKey: key) }
    }

    /// Drops what is remembered of these entities (keys `…:<entity>`), whatever their stream: an
    /// erased caller's calls (``InMemoryCallState``). Writes of an open batch for them still reach
    /// Redis, without coming back into memory.
    /// - Returns: how many entries it dropped.
    @discardableResult
    func forget(entities: Set<String>) -> Int {
        guard !entities.isEmpty else { return 0 }
        return cache.withLock { cache in
            let doomed = cache.keys.filter { Self.entity(of: $0).map(entities.contains) ?? false }
            for key in doomed { cache.removeValue(forKey: key) }
            return doomed.count
        }
    }

    /// Whether something of `entity` is remembered.
    func remembers(entity: String) -> Bool {
        cache.withLock { cache in cache.keys.contains { Self.entity(of: $0) == entity } }
    }

    /// The entity a key is about: what follows its last `:`.
    private static func entity(of key: String) -> String? {
        key.lastIndex(of: ":").map { String(key[key.index(after: $0)...]) }
    }
}
