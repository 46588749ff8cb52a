import Foundation
import Logging
import ServiceLifecycle
import Testing
import VoiceCoreBus
import VoiceCoreEvents
import VoiceCorePostgres
import VoiceCoreRedis
@testable import VoiceCoreProjections
import VoiceCoreSimulation

enum TestRedis {
    static var url: String { ProcessInfo.processInfo.environment["REDIS_URL"] ?? "redis://127.0.0.1:16379/1" }

    static func connect() async throws -> RedisConnection {
        do {
            return try await RedisConnection.connect(RedisConfiguration(url: url))
        } catch {
            Issue.record("Redis is not reachable at \(url): \(error). Run the tests with `tools/test`, which starts it.")
            throw error
        }
    }
}

/// A migrated schema of its own, a stream prefix of its own, a publisher, and the events published.
final class ProjectorFixture: @unchecked Sendable {
    let schema = TestSchema()
    let prefix = "p\(UUID().uuidString.prefix(8).lowercased())"
    let naming: StreamNaming
    let db: PostgresConnection
    let redis: RedisConnection
    let publisher: Publisher
    private(set) var published: [PublishedEntry] = []
    private(set) var items: [CallWorkload.Item] = []

    init(partitions: Int = 8) async throws {
        naming = StreamNaming(partitions: partitions, prefix: prefix)
        db = try await schema.create()
        _ = try await Migrator(connection: db, directory: TestSchema.migrations).up()
        redis = try await TestRedis.connect()
        let configuration = PublisherConfiguration(source: "/test", naming: naming)
        publisher = Publisher(connection: redis, configuration: configuration)
    }

    var databaseURL: String {
        let separator = TestSchema.url.contains("?") ? "&" : "?"
        return TestSchema.url + separator + "options=-c%20search_path%3D\(schema.name)"
    }

    func publish(_ items: [CallWorkload.Item]) async throws {
        let results = await publisher.publish(batch: items.map { ($0.envelope, $0.category, MessageKind.event) })
        for result in results { published.append(try result.get()) }
        self.items += items
    }

    func configuration(instance: String = "test") -> ProjectorConfiguration {
        ProjectorConfiguration(naming: naming, instance: instance, batchSize: 200, block: .milliseconds(100), rebalanceInterval: .milliseconds(300))
    }

    func runner(instance: String = "test", projections: [any Projection] = StandardProjections.all) throws -> RunningProjector {
        let runner = ProjectorRunner(
            projections: projections, redis: try RedisConfiguration(url: TestRedis.url), postgres: try PostgresConfiguration(url: databaseURL),
            configuration: configuration(instance: instance))
        let group = ServiceGroup(services: [runner], logger: Logger(label: "test"))
        return RunningProjector(runner: runner, group: group, task: Task { try await group.run() })
    }

    func status(_ projections: [any Projection] = StandardProjections.all) async throws -> [ProjectionStatus] {
        try await ProjectionStatus.read(projections, naming: naming, streams: StreamInspector(connection: BusConnection(RedisClient(redis))), db: db)
    }

    /// Waits until every projection has checkpointed everything published.
    func waitUntilCaughtUp(within limit: Duration = .seconds(60)) async throws {
        try await eventually("every projection caught up", within: limit) {
            try await status().allSatisfy { $0.gap == 0 }
        }
    }

    func drop() async throws {
        try await schema.drop(db)
        var keys: [String] = []
        for category in StreamCategory.allCases { keys += naming.streams(category, kind: .event) }
        _ = try await redis.execute(.del(keys))
    }
}

struct RunningProjector {
    let runner: ProjectorRunner
    let group: ServiceGroup
    let task: Task<Void, any Error>

    func stop() async throws {
        await group.triggerGracefulShutdown()
        try await task.value
    }
}

/// Waits (up to a generous deadline) until `condition` holds; records a failure otherwise.
func eventually(_ what: String, within limit: Duration = .seconds(15), _ condition: () async throws -> Bool) async throws {
    let clock = ContinuousClock()
    let deadline = clock.now + limit
    while clock.now < deadline {
        if try await condition() { return }
        try await Task.sleep(for: .milliseconds(50))
    }
    Issue.record("timed out waiting until \(what)")
}

/// The read models folded in plain Swift from `event_log` (payloads read as JSON dictionaries, not
/// through the Swift event types or any SQL of the projections), in the same shape as the queries
/// of ``ReadModels/read(_:)``.
struct ReadModels: Equatable, CustomStringConvertible {
    /// tenant|day|meter → quantity
    var billing: [String: Double] = [:]
    /// tenant|day → calls, answered, missed, handle seconds, leads
    var metrics: [String: [Int]] = [:]
    /// tenant|call → status, end status, duration, answered?
    var calls: [String: String] = [:]
    /// final transcript rows
    var transcripts = 0
    var leads = 0
    var interactions = 0
    /// tenant|call → strongest intent confidence
    var intentConfidence: [String: Double] = [:]
    /// receptionist turns (one per call × turn) and outcomes (one per event id)
    var turns = 0
    var outcomes = 0

    var description: String {
        "billing \(billing.count) keys Σ\(billing.values.reduce(0, +)), metrics \(metrics.count) keys, calls \(calls.count), transcripts \(transcripts), leads \(leads), interactions \(interactions), turns \(turns), outcomes \(outcomes)"
    }

    static func fold(eventLog db: PostgresConnection) async throws -> ReadModels {
        let rows = try await db.query("SELECT type, tenant_id::text AS tenant, event_id::text AS id, payload::text AS payload FROM event_log ORDER BY stream, entry_id")
        var models = ReadModels()
        var usageSeen = Set<String>(), endedSeen = Set<String>(), leadsSeen = Set<String>(), chunksSeen = Set<String>()
        var interactionsSeen = Set<String>(), turnsSeen = Set<String>(), outcomesSeen = Set<String>()
        var started = Set<String>(), answered = Set<String>()
        for row in rows {
            let type = try row.decode(String.self, "type")
            let tenant = try row.decode(String.self, "tenant")
            let payload = try JSONSerialization.jsonObject(with: Data(try row.decode(String.self, "payload").utf8)) as! [String: Any]
            func day(_ field: String) -> String { String((payload[field] as! String).prefix(10)) }
            switch type {
            case "voicecore.billing.usage-recorded":
                guard usageSeen.insert("\(tenant)|\(payload["usage_id"]!)").inserted else { continue }
                models.billing["\(tenant)|\(day("occurred_at"))|\(payload["meter"]!)", default: 0] += (payload["quantity"] as! NSNumber).doubleValue
            case "voicecore.call.started":
                started.insert("\(tenant)|\(payload["call_id"]!)")
            case "voicecore.call.answered":
                answered.insert("\(tenant)|\(payload["call_id"]!)")
            case "voicecore.call.ended":
                let call = "\(tenant)|\(payload["call_id"]!)"
                guard endedSeen.insert(call).inserted else { continue }
                let wasAnswered = payload["answered"] as! Bool
                let duration = (payload["duration_seconds"] as! NSNumber).intValue
                var m = models.metrics["\(tenant)|\(day("ended_at"))", default: [0, 0, 0, 0, 0]]
                m[0] += 1
                m[wasAnswered ? 1 : 2] += 1
                if wasAnswered { m[3] += duration }
                models.metrics["\(tenant)|\(day("ended_at"))"] = m
                models.calls[call] = "\(payload["status"]!)|\(payload["status"]!)|\(duration)"
            case "voicecore.crm.lead-created":
                guard leadsSeen.insert("\(tenant)|\(payload["lead_id"]!)").inserted else { continue }
                models.leads += 1
                models.metrics["\(tenant)|\(day("created_at"))", default: [0, 0, 0, 0, 0]][4] += 1
            case "voicecore.crm.interaction-logged":
                if interactionsSeen.insert("\(tenant)|\(payload["interaction_id"]!)").inserted { models.interactions += 1 }
            case "voicecore.call.transcript-chunk":
                guard payload["is_final"] as? Bool == true else { continue }
                if chunksSeen.insert("\(tenant)|\(payload["call_id"]!)|\(payload["track"]!)|\(payload["sequence"]!)").inserted { models.transcripts += 1 }
            case "voicecore.conversation.receptionist-replied":
                if turnsSeen.insert("\(tenant)|\(payload["call_id"]!)|\(payload["turn"]!)").inserted { models.turns += 1 }
            case "voicecore.call.appointment-requested", "voicecore.call.message-taken", "voicecore.call.transferred", "voicecore.call.voicemail-recorded":
                if outcomesSeen.insert(try row.decode(String.self, "id")).inserted { models.outcomes += 1 }
            case "voicecore.call.intent-detected":
                let call = "\(tenant)|\(payload["call_id"]!)"
                models.intentConfidence[call] = max(models.intentConfidence[call] ?? 0, (payload["confidence"] as! NSNumber).doubleValue)
            default:
                continue
            }
        }
        // Calls that never ended: status from what is known.
        for call in started.union(answered) where models.calls[call] == nil {
            models.calls[call] = answered.contains(call) ? "in-progress|-|-" : "initiated|-|-"
        }
        return models
    }

    /// The same shape read from the projections' tables.
    static func read(_ db: PostgresConnection) async throws -> ReadModels {
        var models = ReadModels()
        for row in try await db.query("SELECT tenant_id::text AS t, day::text AS d, meter, quantity::float8 AS q FROM billing_usage") {
            models.billing["\(try row.decode(String.self, "t"))|\(try row.decode(String.self, "d"))|\(try row.decode(String.self, "meter"))"] = try row.decode(Double.self, "q")
        }
        for row in try await db.query("SELECT tenant_id::text AS t, day::text AS d, calls, answered, missed, handle_seconds, leads FROM business_metrics") {
            models.metrics["\(try row.decode(String.self, "t"))|\(try row.decode(String.self, "d"))"] = [
                try row.decode(Int.self, "calls"), try row.decode(Int.self, "answered"), try row.decode(Int.self, "missed"),
                try row.decode(Int.self, "handle_seconds"), try row.decode(Int.self, "leads"),
            ]
        }
        for row in try await db.query("SELECT tenant_id::text AS t, call_id::text AS c, status, end_status, duration_seconds FROM call_sessions") {
            let end = try row.decode(String?.self, "end_status")
            let duration = try row.decode(Int?.self, "duration_seconds")
            models.calls["\(try row.decode(String.self, "t"))|\(try row.decode(String.self, "c"))"] =
                "\(try row.decode(String.self, "status"))|\(end ?? "-")|\(duration.map(String.init) ?? "-")"
        }
        models.transcripts = try await db.query("SELECT count(*) AS n FROM transcripts")[0].decode(Int.self, "n")
        models.leads = try await db.query("SELECT count(*) AS n FROM leads")[0].decode(Int.self, "n")
        models.interactions = try await db.query("SELECT count(*) AS n FROM interactions")[0].decode(Int.self, "n")
        models.turns = try await db.query("SELECT count(*) AS n FROM call_turns")[0].decode(Int.self, "n")
        models.outcomes = try await db.query("SELECT count(*) AS n FROM call_outcomes")[0].decode(Int.self, "n")
        for row in try await db.query("SELECT tenant_id::text AS t, call_id::text AS c, intent_confidence FROM call_analytics WHERE intent_confidence IS NOT NULL") {
            models.intentConfidence["\(try row.decode(String.self, "t"))|\(try row.decode(String.self, "c"))"] = try row.decode(Double.self, "intent_confidence")
        }
        return models
    }

    /// Differences worth printing when a comparison fails.
    func differences(from other: ReadModels) -> [String] {
        var out: [String] = []
        for key in Set(billing.keys).union(other.billing.keys) where abs((billing[key] ?? 0) - (other.billing[key] ?? 0)) > 1e-9 {
            out.append("billing \(key): \(billing[key] ?? 0) vs \(other.billing[key] ?? 0)")
        }
        for key in Set(metrics.keys).union(other.metrics.keys) where metrics[key] != other.metrics[key] {
            out.append("metrics \(key): \(metrics[key] ?? []) vs \(other.metrics[key] ?? [])")
        }
        for key in Set(calls.keys).union(other.calls.keys) where calls[key] != other.calls[key] {
            out.append("call \(key): \(calls[key] ?? "none") vs \(other.calls[key] ?? "none")")
        }
        if transcripts != other.transcripts { out.append("transcripts \(transcripts) vs \(other.transcripts)") }
        if leads != other.leads { out.append("leads \(leads) vs \(other.leads)") }
        if interactions != other.interactions { out.append("interactions \(interactions) vs \(other.interactions)") }
        if turns != other.turns { out.append("turns \(turns) vs \(other.turns)") }
        if outcomes != other.outcomes { out.append("outcomes \(outcomes) vs \(other.outcomes)") }
        if intentConfidence != other.intentConfidence { out.append("intent confidences differ (\(intentConfidence.count) vs \(other.intentConfidence.count) calls)") }
        return Array(out.prefix(20))
    }
}
