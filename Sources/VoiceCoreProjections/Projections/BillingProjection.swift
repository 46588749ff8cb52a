import VoiceCoreEvents
import VoiceCorePostgres

/// billing → `billing_usage_items` (one row per usage id) and `billing_usage` (per tenant × UTC day
/// × meter sums). A usage id is derived by the billing service from the event it bills, so a
/// redelivered or republished UsageRecorded inserts no item and adds nothing to the sums.
public struct BillingProjection: Projection {
    public init() {}
    public var name: String { "billing" }
    public var summary: String { "billing_usage: per tenant-day-meter quantities from UsageRecorded" }
    public var categories: [StreamCategory] { [.billing] }
    public var eventTypes: Set<String>? { [UsageRecorded.type] }
    public var tables: [String] { ["billing_usage_items", "billing_usage"] }

    struct Key: Hashable {
        var tenant: Identifier, usage: Identifier
    }

    public func apply(_ events: [ProjectedEvent], in db: isolated PostgresConnection) throws {
        let usage = events.messages(UsageRecorded.self).uniqued { Key(tenant: $0.event.tenantID, usage: $0.message.usageID) }
        guard !usage.isEmpty else { return }
        try db.write("""
            WITH items AS (
              INSERT INTO billing_usage_items (tenant_id, usage_id, day, meter, quantity, unit, call_id, source_event_id, occurred_at)
              SELECT u.tenant_id, u.usage_id, (u.occurred_at AT TIME ZONE 'UTC')::date, u.meter, u.quantity::numeric, u.unit,
                     u.call_id, u.source_event_id, u.occurred_at
              FROM unnest(\(usage.map(\.event.tenantID))::uuid[], \(usage.map(\.message.usageID))::uuid[],
                          \(usage.map(\.message.meter.rawValue))::text[], \(usage.map(\.message.quantity))::float8[],
                          \(usage.map(\.message.unit.rawValue))::text[], \(usage.map(\.message.callID))::uuid[],
                          \(usage.map(\.message.sourceEventID))::uuid[], \(usage.map(\.message.occurredAt))::timestamptz[])
                   AS u(tenant_id, usage_id, meter, quantity, unit, call_id, source_event_id, occurred_at)
              ON CONFLICT (tenant_id, usage_id) DO NOTHING
              RETURNING tenant_id, day, meter, quantity, unit)
            INSERT INTO billing_usage AS b (tenant_id, day, meter, quantity, unit)
            SELECT tenant_id, day, meter, sum(quantity), min(unit) FROM items GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
            ON CONFLICT (tenant_id, day, meter) DO UPDATE SET quantity = b.quantity + EXCLUDED.quantity
            """)
    }
}
