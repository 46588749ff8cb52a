import VoiceCoreEvents
import VoiceCorePostgres

/// calls → `call_sessions`: one row per call with its status, numbers and times.
///
/// Order-tolerant: call details fill only what is still empty, the first answer time and the first
/// end win, and the status is derived from them (ended → its final status, answered →
/// `in-progress`, else `initiated`). So a late, reordered or duplicated event never regresses a
/// finished call, and a batch can be folded per call (its first start, answer and end) and
/// written with one upsert.
public struct CallsProjection: Projection {
    public init() {}
    public var name: String { "calls" }
    public var summary: String { "call_sessions: status, numbers, started/answered/ended, duration, end status" }
    public var categories: [StreamCategory] { [.calls] }
    public var eventTypes: Set<String>? { [CallStarted.type, CallAnswered.type, CallEnded.type] }
    public var tables: [String] { ["call_sessions"] }

    /// What a batch says about one call: its first start, first answer and first end.
    struct Fold {
        var tenant: Identifier
        var call: Identifier
        var started: CallStarted?
        var answered: CallAnswered?
        var ended: CallEnded?
    }

    public func apply(_ events: [ProjectedEvent], in db: isolated PostgresConnection) throws {
        // One row per call, one upsert per batch: a call whose start, answer and end share a
        // batch (most do when a backlog is projected) is written once, not three times.
        var perCall = PerCall<Fold>()
        func fold(_ event: ProjectedEvent, _ call: Identifier, _ update: (inout Fold) -> Void) {
            let key = CallKey(event.envelope.tenantID, call)
            perCall.fold(key, initial: { Fold(tenant: key.tenant, call: call) }, update)
        }
        for event in events {
            switch event.message {
            case let started as CallStarted: fold(event, started.callID) { if $0.started == nil { $0.started = started } }
            case let answered as CallAnswered: fold(event, answered.callID) { if $0.answered == nil { $0.answered = answered } }
            case let ended as CallEnded: fold(event, ended.callID) { if $0.ended == nil { $0.ended = ended } }
            default: continue
            }
        }
        let calls = perCall.values
        guard !calls.isEmpty else { return }
        // The status a new row starts with; an existing row's is derived in the update.
        let status = calls.map { $0.ended?.status.rawValue ?? ($0.answered != nil ? "in-progress" : "initiated") }
        try db.write("""
            INSERT INTO call_sessions AS s (tenant_id, call_id, provider, provider_call_id, direction, from_number, to_number, status,
                                            started_at, answered_at, ended_at, duration_seconds, end_status, hung_up_by)
            SELECT * FROM unnest(\(calls.map(\.tenant))::uuid[], \(calls.map(\.call))::uuid[],
                                 \(calls.map { $0.started?.provider.rawValue })::text[], \(calls.map { $0.started?.providerCallID })::text[],
                                 \(calls.map { $0.started?.direction.rawValue })::text[], \(calls.map { $0.started?.from })::text[],
                                 \(calls.map { $0.started?.to })::text[], \(status)::text[], \(calls.map { $0.started?.startedAt })::timestamptz[],
                                 \(calls.map { $0.answered?.answeredAt })::timestamptz[], \(calls.map { $0.ended?.endedAt })::timestamptz[],
                                 \(calls.map { $0.ended?.durationSeconds })::int8[], \(calls.map { $0.ended?.status.rawValue })::text[],
                                 \(calls.map { $0.ended?.hungUpBy.rawValue })::text[])
            ORDER BY 1, 2
            ON CONFLICT (tenant_id, call_id) DO UPDATE SET
              provider = COALESCE(s.provider, EXCLUDED.provider),
              provider_call_id = COALESCE(s.provider_call_id, EXCLUDED.provider_call_id),
              direction = COALESCE(s.direction, EXCLUDED.direction),
              from_number = COALESCE(s.from_number, EXCLUDED.from_number),
              to_number = COALESCE(s.to_number, EXCLUDED.to_number),
              started_at = COALESCE(s.started_at, EXCLUDED.started_at),
              answered_at = COALESCE(s.answered_at, EXCLUDED.answered_at),
              ended_at = CASE WHEN s.end_status IS NULL AND EXCLUDED.end_status IS NOT NULL THEN EXCLUDED.ended_at ELSE s.ended_at END,
              duration_seconds = CASE WHEN s.end_status IS NULL AND EXCLUDED.end_status IS NOT NULL THEN EXCLUDED.duration_seconds ELSE s.duration_seconds END,
              hung_up_by = CASE WHEN s.end_status IS NULL AND EXCLUDED.end_status IS NOT NULL THEN EXCLUDED.hung_up_by ELSE s.hung_up_by END,
              end_status = COALESCE(s.end_status, EXCLUDED.end_status),
              status = CASE WHEN s.end_status IS NOT NULL THEN s.status
                            WHEN EXCLUDED.end_status IS NOT NULL THEN EXCLUDED.end_status
                            WHEN s.answered_at IS NOT NULL OR EXCLUDED.answered_at IS NOT NULL THEN 'in-progress'
                            ELSE s.status END,
              updated_at = now()
            WHERE (s.started_at IS NULL AND EXCLUDED.started_at IS NOT NULL) OR (s.provider IS NULL AND EXCLUDED.provider IS NOT NULL)
               OR (s.answered_at IS NULL AND EXCLUDED.answered_at IS NOT NULL) OR (s.end_status IS NULL AND EXCLUDED.end_status IS NOT NULL)
            """)
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

/// What a batch says about each call, folded event by event, in the order the calls first appear:
/// one statement may not upsert a row twice.
struct PerCall<Value> {
    private var index: [CallKey: Int] = [:]
    private(set) var values: [Value] = []

    /// Folds into the call's value, made by `initial` when the call is new to this batch.
    mutating func fold(_ key: CallKey, initial: () -> Value, _ update: (inout Value) -> Void) {
        if let found = index[key] {
            update(&values[found])
            return
        }
        index[key] = values.count
        values.append(initial())
        update(&values[values.count - 1])
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
