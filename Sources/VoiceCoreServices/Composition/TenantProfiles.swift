import Synchronization
import VoiceCoreEvents
import VoiceCoreTenants

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
