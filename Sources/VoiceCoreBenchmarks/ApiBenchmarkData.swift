import Foundation
import VoiceCorePostgres
import VoiceCoreSimulation
import VoiceCoreTime

/// The read models `voicecore bench api` reads: `calls` calls over `tenants` tenants with their
/// transcripts, analytics, leads (with contacts and interactions) and usage items, loaded with
/// COPY into a database of the benchmark's own and kept there for the next run.
///
/// Ids are numbers made into UUIDs (``tenantID(_:)``, ``callID(tenant:number:)``), so a pgbench
/// script, whose variables are numbers, draws the same random tenant or call as the HTTP load
/// does and builds the same UUID in SQL (``tenantSQL(_:)``, ``callSQL(tenant:number:)``).
/// Calls are spread evenly: tenant `t` has calls `0..<callsPerTenant(t)`.
///
/// ```swift
/// let data = ApiBenchmarkData(calls: 100_000, tenants: 20)
/// try await data.seed(into: db)   // TRUNCATEs the read models first
/// ```
public struct ApiBenchmarkData: Sendable {
    public var calls: Int
    public var tenants: Int
    /// Days back from now over which the calls started.
    public var days: Int

    /// Bumped whenever what ``seed(into:now:)`` writes changes, so a kept seed of another shape is reloaded.
    public static let version = 1

    public init(calls: Int, tenants: Int, days: Int = 90) {
        precondition(calls > 0 && tenants > 0 && tenants < 256, "1…255 tenants and at least one call")
        self.calls = calls
        self.tenants = tenants
        self.days = days
    }

    // MARK: Ids

    static let tenantHigh: UInt32 = 0xBE00_0000
    static let callHigh: UInt32 = 0xCA00_0000

    /// The id of tenant number `index` (`be0000XX-0000-7000-8000-000000000000`).
    public static func tenantID(_ index: Int) -> UUID { uuid(high: tenantHigh + UInt32(index), low: 0) }

    /// The id of call `number` of tenant `tenant` (`ca0000TT-0000-7000-8000-NNNNNNNNNNNN`).
    public static func callID(tenant: Int, number: Int) -> UUID { uuid(high: callHigh + UInt32(tenant), low: UInt64(number)) }

    /// SQL text (uuid) of ``tenantID(_:)`` for the integer SQL expression `index`. Built of
    /// immutable functions only (`format` is merely stable), so a custom plan folds it into a
    /// constant, as it does the uuid the edge binds.
    public static func tenantSQL(_ index: String) -> String {
        "(to_hex(\(tenantHigh)::int8 + \(index)) || '-0000-7000-8000-000000000000')"
    }

    /// SQL text (uuid) of ``callID(tenant:number:)`` for the integer SQL expressions `tenant` and `number`.
    public static func callSQL(tenant: String, number: String) -> String {
        "(to_hex(\(callHigh)::int8 + \(tenant)) || '-0000-7000-8000-' || lpad(to_hex(\(number)::int8), 12, '0'))"
    }

    static func uuid(high: UInt32, low: UInt64) -> UUID {
        let h = withUnsafeBytes(of: high.bigEndian, Array.init)
        let l = withUnsafeBytes(of: low.bigEndian, Array.init)
        return UUID(uuid: (h[0], h[1], h[2], h[3], 0, 0, 0x70, 0, 0x80, 0, l[2], l[3], l[4], l[5], l[6], l[7]))
    }

    /// How many calls tenant `index` has.
    public func callsPerTenant(_ index: Int) -> Int { calls / tenants + (index < calls % tenants ? 1 : 0) }

    /// Calls every tenant has at least (the HTTP load and pgbench draw call numbers below it).
    public var callsOfEveryTenant: Int { calls / tenants }

    // MARK: Rows

    /// One seeded call, from which every row of it is derived.
    struct Call: Sendable {
        var tenant: Int
        var number: Int
        var inbound: Bool
        var from: String
        var to: String
        var startedAt: Timestamp
        /// nil: missed.
        var answeredAt: Timestamp?
        var endedAt: Timestamp
        var durationSeconds: Int
        var intent: Int
        var sentiment: Int
        var lines: Int
        /// The lead of the call, if one came of it.
        var lead: UUID?
        var interaction: UUID?
        var contact: UUID?
        var usage: (UUID, UUID, UUID)
        var usageEvent: UUID
    }

    static let intents = ["appointment", "pricing", "billing", "support", "other"]
    static let sentiments = ["positive", "neutral", "negative"]
    static let names = ["Maria Lopez", "James Chen", "Aisha Khan", "Tom Becker", "Sofia Rossi", "Liam Walsh", "Yuki Tanaka", "Omar Haddad"]
    static let lines = [
        "Thanks for calling. How can I help you today?",
        "Hi, I'd like to book an appointment for a cleaning next week.",
        "Of course. Which day works best for you?",
        "Tuesday morning if you have anything, otherwise Wednesday.",
        "Tuesday at nine is free. What is the best number to reach you?",
        "You can reach me at this number. Thanks, that's great.",
        "You're welcome. We'll send a confirmation by text.",
        "Perfect, have a nice day.",
    ]

    func makeCalls(now: Timestamp) -> [Call] {
        var random = SplitMix64(seed: 0x5EED_CA11 &+ UInt64(calls) &* 31 &+ UInt64(tenants))
        var result: [Call] = []
        result.reserveCapacity(calls)
        // Repeat callers: a tenant's callers come from a pool of numbers, one contact each.
        let callersPerTenant = max(1, callsOfEveryTenant / 3)
        var contacts: [[Int: UUID]] = Array(repeating: [:], count: tenants)
        let span = Int64(days) * 86_400_000_000
        for tenant in 0..<tenants {
            for number in 0..<callsPerTenant(tenant) {
                let caller = Int.random(in: 0..<callersPerTenant, using: &random)
                let from = String(format: "+1415%07d", 2_000_000 + tenant * 100_000 + caller)
                let to = String(format: "+1628555%04d", 1000 + tenant)
                let inbound = Int.random(in: 0..<10, using: &random) > 0
                let startedAt = now.adding(microseconds: -Int64.random(in: 60_000_000..<span, using: &random))
                let answered = Int.random(in: 0..<100, using: &random) < 85
                let ring = Int64.random(in: 1...12, using: &random) * 1_000_000
                let duration = answered ? Int.random(in: 20...600, using: &random) : 0
                let answeredAt = answered ? startedAt.adding(microseconds: ring) : nil
                let endedAt = (answeredAt ?? startedAt).adding(microseconds: answered ? Int64(duration) * 1_000_000 : ring + 20_000_000)
                let intent = Int.random(in: 0..<Self.intents.count, using: &random)
                let hasLead = answered && Int.random(in: 0..<100, using: &random) < 30
                var contact: UUID?
                if hasLead {
                    if let known = contacts[tenant][caller] {
                        contact = known
                    } else {
                        let id = UUID.random(using: &random)
                        contacts[tenant][caller] = id
                        contact = id
                    }
                }
                result.append(Call(
                    tenant: tenant, number: number, inbound: inbound, from: inbound ? from : to, to: inbound ? to : from, startedAt: startedAt,
                    answeredAt: answeredAt, endedAt: endedAt, durationSeconds: duration, intent: intent,
                    sentiment: Int.random(in: 0..<Self.sentiments.count, using: &random), lines: answered ? Int.random(in: 6...12, using: &random) : 0,
                    lead: hasLead ? UUID.random(using: &random) : nil, interaction: hasLead ? UUID.random(using: &random) : nil, contact: contact,
                    usage: (UUID.random(using: &random), UUID.random(using: &random), UUID.random(using: &random)), usageEvent: UUID.random(using: &random)))
            }
        }
        return result
    }

    /// The number of rows each table holds after ``seed(into:now:)``.
    public struct Counts: Sendable, Equatable, CustomStringConvertible {
        public var tenants = 0, calls = 0, transcripts = 0, analytics = 0, leads = 0, contacts = 0, interactions = 0, usageItems = 0

        public var description: String {
            "\(tenants) tenants, \(calls) calls, \(transcripts) transcript lines, \(analytics) analytics rows, \(leads) leads, "
                + "\(contacts) contacts, \(interactions) interactions, \(usageItems) usage items"
        }
    }

    /// The tables the seed fills (and empties first).
    static let tables = ["tenants", "call_sessions", "transcripts", "call_analytics", "leads", "crm_contacts", "crm_lead_contacts", "interactions",
                         "billing_usage_items", "billing_usage", "business_metrics"]

    /// Empties the read models and loads the calls with COPY, in one transaction; returns the row counts written.
    @discardableResult
    public func seed(into db: PostgresConnection, now: Timestamp = .now) async throws -> Counts {
        let calls = makeCalls(now: now)
        let tenantCount = tenants
        // The AI summary columns arrived with migration 0012; a database without them is seeded without.
        let hasSummary = try await db.query("""
            SELECT count(*) AS n FROM information_schema.columns
            WHERE table_schema = current_schema() AND table_name = 'call_analytics' AND column_name = 'summary'
            """)[0].decode(Int.self, "n") == 1
        let tables = Self.tables
        return try await db.withTransaction { db -> Counts in
            try db.simpleQuery(unsafeSQL: "TRUNCATE " + tables.joined(separator: ", "))
            var counts = Counts()
            counts.tenants = try db.copyFromStdin("COPY tenants (tenant_id, name, plan, time_zone, created_at) FROM STDIN") { writer in
                for tenant in 0..<tenantCount {
                    try writer.appendRow(Self.tenantID(tenant), "Bench tenant \(tenant)", "growth", "UTC", now.adding(microseconds: -400 * 86_400_000_000))
                }
            }
            counts.calls = try db.copyFromStdin("""
                COPY call_sessions (tenant_id, call_id, provider, provider_call_id, direction, from_number, to_number, status, started_at,
                                    answered_at, ended_at, duration_seconds, end_status, hung_up_by, updated_at) FROM STDIN
                """) { writer in
                for call in calls {
                    try writer.appendRow(Self.tenantID(call.tenant), Self.callID(tenant: call.tenant, number: call.number), "twilio",
                                         String(format: "CA%08x%024x", call.tenant, call.number), call.inbound ? "inbound" : "outbound", call.from, call.to,
                                         call.answeredAt == nil ? "no-answer" : "completed", call.startedAt, call.answeredAt, call.endedAt,
                                         call.durationSeconds, call.answeredAt == nil ? "no-answer" : "completed", call.answeredAt == nil ? nil : "caller", call.endedAt)
                }
            }
            counts.transcripts = try db.copyFromStdin("""
                COPY transcripts (tenant_id, call_id, track, sequence, text, confidence, start_offset_ms, end_offset_ms, language) FROM STDIN
                """) { writer in
                for call in calls where call.lines > 0 {
                    let tenant = Self.tenantID(call.tenant)
                    let id = Self.callID(tenant: call.tenant, number: call.number)
                    let step = call.durationSeconds * 1000 / call.lines
                    for line in 0..<call.lines {
                        // The receptionist (outbound track) speaks first, then turns alternate.
                        try writer.appendRow(tenant, id, line % 2 == 0 ? "outbound" : "inbound", line / 2, Self.lines[line % Self.lines.count],
                                             0.86 + Double(line % 10) / 100, line * step, line * step + step - 200, "en-US")
                    }
                }
            }
            counts.analytics = try db.copyFromStdin(hasSummary ? """
                COPY call_analytics (tenant_id, call_id, duration_seconds, outcome, intent, sentiment, sentiment_score, word_count, intent_confidence,
                                     counted_day, summary, key_sentences, summarized_at) FROM STDIN
                """ : """
                COPY call_analytics (tenant_id, call_id, duration_seconds, outcome, intent, sentiment, sentiment_score, word_count, intent_confidence,
                                     counted_day) FROM STDIN
                """) { writer in
                for call in calls {
                    let answered = call.answeredAt != nil
                    let intent = Self.intents[call.intent]
                    var row: [any PostgresEncodable] = [
                        Self.tenantID(call.tenant), Self.callID(tenant: call.tenant, number: call.number), call.durationSeconds,
                        answered ? (call.lead != nil ? "lead_captured" : "resolved") : "missed", answered ? intent : nil,
                        answered ? Self.sentiments[call.sentiment] : nil, answered ? [0.7, 0.1, -0.6][call.sentiment] : nil,
                        answered ? call.lines * 9 : 0, answered ? 0.9 : nil, String(call.startedAt.rfc3339.prefix(10)),
                    ]
                    if hasSummary {
                        row += [answered ? "The caller asked about \(intent) and was helped." : nil,
                                answered ? #"["\#(Self.lines[1])"]"# : nil, answered ? call.endedAt : nil]
                    }
                    try writer.appendRow(row)
                }
            }
            let leadCalls = calls.filter { $0.lead != nil }
            var seenContacts = Set<UUID>()
            let firstCallOfContact = leadCalls.filter { seenContacts.insert($0.contact ?? UUID()).inserted }
            counts.contacts = try db.copyFromStdin("COPY crm_contacts (tenant_id, contact_id, name, phone, email, first_seen_at, last_seen_at) FROM STDIN") { writer in
                for call in firstCallOfContact {
                    let caller = call.inbound ? call.from : call.to
                    try writer.appendRow(Self.tenantID(call.tenant), call.contact, Self.names[call.number % Self.names.count], caller,
                                         "caller\(caller.dropFirst())@example.com", call.startedAt, call.endedAt)
                }
            }
            counts.leads = try db.copyFromStdin("""
                COPY leads (tenant_id, lead_id, call_id, contact_id, name, phone, email, intent, source, notes, created_at) FROM STDIN
                """) { writer in
                for call in leadCalls {
                    let caller = call.inbound ? call.from : call.to
                    try writer.appendRow(Self.tenantID(call.tenant), call.lead, Self.callID(tenant: call.tenant, number: call.number), call.contact,
                                         Self.names[call.number % Self.names.count], caller, nil as String?, Self.intents[call.intent], "call",
                                         "Wants a call back about \(Self.intents[call.intent]).", call.endedAt)
                }
            }
            try db.copyFromStdin("COPY crm_lead_contacts (tenant_id, lead_id, contact_id) FROM STDIN") { writer in
                for call in leadCalls { try writer.appendRow(Self.tenantID(call.tenant), call.lead, call.contact) }
            }
            counts.interactions = try db.copyFromStdin("""
                COPY interactions (tenant_id, interaction_id, contact_id, call_id, channel, summary, duration_seconds, occurred_at) FROM STDIN
                """) { writer in
                for call in leadCalls {
                    try writer.appendRow(Self.tenantID(call.tenant), call.interaction, call.contact, Self.callID(tenant: call.tenant, number: call.number),
                                         "call", "Asked about \(Self.intents[call.intent]).", call.durationSeconds, call.startedAt)
                }
            }
            counts.usageItems = try db.copyFromStdin("""
                COPY billing_usage_items (tenant_id, usage_id, day, meter, quantity, unit, call_id, source_event_id, occurred_at) FROM STDIN
                """) { writer in
                for call in calls where call.answeredAt != nil {
                    let tenant = Self.tenantID(call.tenant)
                    let id = Self.callID(tenant: call.tenant, number: call.number)
                    let day = String(call.endedAt.rfc3339.prefix(10))
                    try writer.appendRow(tenant, call.usage.0, day, "call_minutes", (call.durationSeconds + 59) / 60, "minute", id, call.usageEvent, call.endedAt)
                    try writer.appendRow(tenant, call.usage.1, day, "transcription_seconds", call.durationSeconds, "second", id, call.usageEvent, call.endedAt)
                    try writer.appendRow(tenant, call.usage.2, day, "ai_requests", 2, "request", id, call.usageEvent, call.endedAt)
                }
            }
            // The per-day sums the projections keep beside the rows.
            try db.simpleQuery(unsafeSQL: """
                INSERT INTO billing_usage (tenant_id, day, meter, quantity, unit)
                SELECT tenant_id, day, meter, sum(quantity), min(unit) FROM billing_usage_items GROUP BY tenant_id, day, meter;
                INSERT INTO business_metrics (tenant_id, day, calls, answered, missed, handle_seconds, leads)
                SELECT s.tenant_id, a.counted_day, count(*), count(s.answered_at), count(*) - count(s.answered_at),
                       coalesce(sum(s.duration_seconds) FILTER (WHERE s.answered_at IS NOT NULL), 0),
                       count(l.lead_id)
                FROM call_sessions s JOIN call_analytics a USING (tenant_id, call_id) LEFT JOIN leads l USING (tenant_id, call_id)
                GROUP BY s.tenant_id, a.counted_day
                """)
            return counts
        }
    }

    /// The row counts the seed's tables hold now (to check a kept seed).
    public static func counts(in db: PostgresConnection) async throws -> Counts {
        let row = try await db.query("""
            SELECT (SELECT count(*) FROM tenants) AS tenants, (SELECT count(*) FROM call_sessions) AS calls,
                   (SELECT count(*) FROM transcripts) AS transcripts, (SELECT count(*) FROM call_analytics) AS analytics,
                   (SELECT count(*) FROM leads) AS leads, (SELECT count(*) FROM crm_contacts) AS contacts,
                   (SELECT count(*) FROM interactions) AS interactions, (SELECT count(*) FROM billing_usage_items) AS usage_items
            """)[0]
        return Counts(tenants: try row.decode(Int.self, "tenants"), calls: try row.decode(Int.self, "calls"), transcripts: try row.decode(Int.self, "transcripts"),
                      analytics: try row.decode(Int.self, "analytics"), leads: try row.decode(Int.self, "leads"), contacts: try row.decode(Int.self, "contacts"),
                      interactions: try row.decode(Int.self, "interactions"), usageItems: try row.decode(Int.self, "usage_items"))
    }
}

extension UUID {
    /// A version-4 UUID from `generator` (a seeded one: the same seed, the same ids).
    static func random(using generator: inout some RandomNumberGenerator) -> UUID {
        let a = generator.next(), b = generator.next()
        var bytes = withUnsafeBytes(of: a, Array.init) + withUnsafeBytes(of: b, Array.init)
        bytes[6] = (bytes[6] & 0x0F) | 0x40
        bytes[8] = (bytes[8] & 0x3F) | 0x80
        return UUID(uuid: (bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7],
                           bytes[8], bytes[9], bytes[10], bytes[11], bytes[12], bytes[13], bytes[14], bytes[15]))
    }
}
