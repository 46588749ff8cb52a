import VoiceCoreEvents
import VoiceCorePostgres

/// tenants → `tenants`: name, plan, time zone and AI settings. Provisioning again updates name,
/// plan and time zone; settings of a tenant not provisioned yet cannot arrive (both events have
/// the tenant as subject, so they share a stream and its order).
public struct TenantsProjection: Projection {
    public init() {}
    public var name: String { "tenants" }
    public var summary: String { "tenants: name, plan, time zone, AI settings" }
    public var categories: [StreamCategory] { [.tenants] }
    public var eventTypes: Set<String>? { [TenantProvisioned.type, TenantSettingsChanged.type] }
    public var tables: [String] { ["tenants"] }

    public func apply(_ events: [ProjectedEvent], in db: isolated PostgresConnection) throws {
        // Tenant events are rare: statements in stream order keep "provisioned, then settings".
        for event in events {
            if let provisioned = event.message(as: TenantProvisioned.self) {
                try db.write("""
                    INSERT INTO tenants AS t (tenant_id, name, plan, time_zone, created_at)
                    VALUES (\(provisioned.tenantID), \(provisioned.name), \(provisioned.plan.rawValue), \(provisioned.timeZone), \(provisioned.provisionedAt))
                    ON CONFLICT (tenant_id) DO UPDATE SET name = EXCLUDED.name, plan = EXCLUDED.plan, time_zone = EXCLUDED.time_zone, updated_at = now()
                    """)
            } else if let changed = event.message(as: TenantSettingsChanged.self) {
                try db.write("""
                    UPDATE tenants SET settings = (\(PostgresJSON(rawJSON: event.envelope.data))::jsonb)->'settings', updated_at = now()
                    WHERE tenant_id = \(changed.tenantID)
                    """)
            }
        }
    }
}
