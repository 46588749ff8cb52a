import VoiceCoreEvents
import VoiceCorePostgres

/// calls → `call_sessions`: one row per call with its status, numbers and times.
///
/// Order-tolerant: call details fill only what is still empty, the first answer time and the first
/// end win, and the status is derived from them (ended → its final status, answered →
/// `in-progress`, else `initiated`). So a late, reordered or duplicated event never regresses a
/// finished call, and applying kinds of events in a fixed order per batch is correct.
public struct CallsProjection: Projection {
    public init() {}
    public var name: String { "calls" }
    public var summary: String { "call_sessions: status, numbers, started/answered/ended, duration, end status" }
    public var categories: [StreamCategory] { [.calls] }
    public var eventTypes: Set<String>? { [CallStarted.type, CallAnswered.type, CallEnded.type] }
    public var tables: [String] { ["call_sessions"] }

    public func apply(_ events: [ProjectedEvent], in db: isolated PostgresConnection) throws {
        let started = events.messages(CallStarted.self).uniqued { CallKey($0.event.tenantID, $0.message.callID) }
        if !started.isEmpty {
            try db.query("""
                INSERT INTO call_sessions AS s (tenant_id, call_id, provider, provider_call_id, direction, from_number, to_number, status, started_at)
                SELECT u.tenant_id, u.call_id, u.provider, u.provider_call_id, u.direction, u.from_number, u.to_number, 'initiated', u.started_at
                FROM unnest(\(started.map(\.event.tenantID))::uuid[], \(started.map(\.message.callID))::uuid[],
                            \(started.map(\.message.provider.rawValue))::text[], \(started.map(\.message.providerCallID))::text[],
                            \(started.map(\.message.direction.rawValue))::text[], \(started.map(\.message.from))::text[],
                            \(started.map(\.message.to))::text[], \(started.map(\.message.startedAt))::timestamptz[])
                     AS u(tenant_id, call_id, provider, provider_call_id, direction, from_number, to_number, started_at)
                ORDER BY 1, 2
                ON CONFLICT (tenant_id, call_id) DO UPDATE SET
                  provider = COALESCE(s.provider, EXCLUDED.provider),
                  provider_call_id = COALESCE(s.provider_call_id, EXCLUDED.provider_call_id),
                  direction = COALESCE(s.direction, EXCLUDED.direction),
                  from_number = COALESCE(s.from_number, EXCLUDED.from_number),
                  to_number = COALESCE(s.to_number, EXCLUDED.to_number),
                  started_at = COALESCE(s.started_at, EXCLUDED.started_at),
                  updated_at = now()
                WHERE s.started_at IS NULL OR s.provider IS NULL
                """)
        }
        let answered = events.messages(CallAnswered.self).uniqued { CallKey($0.event.tenantID, $0.message.callID) }
        if !answered.isEmpty {
            try db.query("""
                INSERT INTO call_sessions AS s (tenant_id, call_id, status, answered_at)
                SELECT u.tenant_id, u.call_id, 'in-progress', u.answered_at
                FROM unnest(\(answered.map(\.event.tenantID))::uuid[], \(answered.map(\.message.callID))::uuid[],
                            \(answered.map(\.message.answeredAt))::timestamptz[]) AS u(tenant_id, call_id, answered_at)
                ORDER BY 1, 2
                ON CONFLICT (tenant_id, call_id) DO UPDATE SET
                  answered_at = EXCLUDED.answered_at,
                  status = CASE WHEN s.end_status IS NULL THEN 'in-progress' ELSE s.status END,
                  updated_at = now()
                WHERE s.answered_at IS NULL
                """)
        }
        let ended = events.messages(CallEnded.self).uniqued { CallKey($0.event.tenantID, $0.message.callID) }
        if !ended.isEmpty {
            try db.query("""
                INSERT INTO call_sessions AS s (tenant_id, call_id, status, ended_at, duration_seconds, end_status, hung_up_by)
                SELECT u.tenant_id, u.call_id, u.end_status, u.ended_at, u.duration_seconds, u.end_status, u.hung_up_by
                FROM unnest(\(ended.map(\.event.tenantID))::uuid[], \(ended.map(\.message.callID))::uuid[],
                            \(ended.map(\.message.endedAt))::timestamptz[], \(ended.map(\.message.durationSeconds))::int8[],
                            \(ended.map(\.message.status.rawValue))::text[], \(ended.map(\.message.hungUpBy.rawValue))::text[])
                     AS u(tenant_id, call_id, ended_at, duration_seconds, end_status, hung_up_by)
                ORDER BY 1, 2
                ON CONFLICT (tenant_id, call_id) DO UPDATE SET
                  status = EXCLUDED.end_status,
                  ended_at = EXCLUDED.ended_at,
                  duration_seconds = EXCLUDED.duration_seconds,
                  end_status = EXCLUDED.end_status,
                  hung_up_by = EXCLUDED.hung_up_by,
                  updated_at = now()
                WHERE s.end_status IS NULL
                """)
        }
    }
}

struct CallKey: Hashable {
    var tenant: Identifier
    var call: Identifier
    init(_ tenant: Identifier, _ call: Identifier) {
        self.tenant = tenant
        self.call = call
    }
}

extension Array {
    /// The first element of each key, in order: one statement may not upsert a row twice.
    func uniqued<Key: Hashable>(by key: (Element) -> Key) -> [Element] {
        var seen = Set<Key>()
        seen.reserveCapacity(count)
        return filter { seen.insert(key($0)).inserted }
    }
}
