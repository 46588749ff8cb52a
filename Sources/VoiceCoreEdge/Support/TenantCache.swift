import Synchronization
import VoiceCoreEvents
import VoiceCoreTenants

/// Where the edge looks tenants up: credentials by tenant id, tenants by API key.
public protocol TenantLookup: Sendable {
    func credentials(of tenant: Identifier) async throws -> TenantCredentials?
    func authenticate(_ key: APIKey) async throws -> Identifier?
}

extension TenantDirectory: TenantLookup {}

/// Keeps what the directory answered in memory for a while, so a webhook costs no database round
/// trip: found tenants and accepted keys for ``EdgeConfiguration/tenantCacheTTL``, unknown ones
/// for a fifth of it (a burst of requests for a bad tenant or key reaches Postgres once). A
/// rotated credential takes effect within the TTL; changed AI settings at once where the edge
/// follows the event streams (``forget(_:)`` on `TenantSettingsChanged`).
final class TenantCache: Sendable {
    private struct Entry<Value: Sendable>: Sendable {
        var value: Value
        var expires: ContinuousClock.Instant
    }

    private let lookup: any TenantLookup
    private let ttl: Duration
    private let credentials = Mutex<[Identifier: Entry<TenantCredentials?>]>([:])
    /// Counts ``forget(_:)`` calls: a lookup that began before one does not store what it read,
    /// which may predate the change that was forgotten.
    private let forgotten = Atomic<UInt64>(0)
    private let keys = Mutex<[String: Entry<Identifier?>]>([:])

    init(lookup: any TenantLookup, ttl: Duration) {
        self.lookup = lookup
        self.ttl = ttl
    }

    func credentials(of tenant: Identifier) async throws -> TenantCredentials? {
        let now = ContinuousClock.now
        if let entry = credentials.withLock({ $0[tenant] }), entry.expires > now { return entry.value }
        let before = forgotten.load(ordering: .acquiring)
        let found = try await lookup.credentials(of: tenant)
        credentials.withLock { cache in
            guard forgotten.load(ordering: .acquiring) == before else { return }
            if cache.count > 100_000 { cache.removeAll() }
            cache[tenant] = Entry(value: found, expires: now + (found == nil ? ttl / 5 : ttl))
        }
        return found
    }

    /// Drops what is cached of the tenant's credentials (its settings changed): the next request
    /// reads the directory.
    func forget(_ tenant: Identifier) {
        credentials.withLock { cache in
            forgotten.add(1, ordering: .releasing)
            cache[tenant] = nil
        }
    }

    func tenant(for key: APIKey) async throws -> Identifier? {
        let now = ContinuousClock.now
        let cacheKey = key.plaintext
        if let entry = keys.withLock({ $0[cacheKey] }), entry.expires > now { return entry.value }
        let found = try await lookup.authenticate(key)
        keys.withLock { cache in
            if cache.count > 100_000 { cache.removeAll() }
            cache[cacheKey] = Entry(value: found, expires: now + (found == nil ? ttl / 5 : ttl))
        }
        return found
    }
}

/// A token bucket per tenant: `rate` requests per second, bursts up to twice that.
final class RateLimiter: Sendable {
    private struct Bucket {
        var tokens: Double
        var updated: ContinuousClock.Instant
    }

    private let buckets = Mutex<[Identifier: Bucket]>([:])

    /// Takes a token; nil when allowed, else how long until one is available.
    func take(_ tenant: Identifier, rate: Int, now: ContinuousClock.Instant = .now) -> Duration? {
        let rate = Double(max(1, rate))
        let capacity = rate * 2
        return buckets.withLock { buckets in
            var bucket = buckets[tenant] ?? Bucket(tokens: capacity, updated: now)
            let elapsed = now - bucket.updated
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            bucket.tokens = min(capacity, bucket.tokens + seconds * rate)
            bucket.updated = now
            defer { buckets[tenant] = bucket }
            if bucket.tokens >= 1 {
                bucket.tokens -= 1
                return nil
            }
            return .milliseconds(Int64(((1 - bucket.tokens) / rate * 1000).rounded(.up)))
        }
    }
}
