import Foundation
import Testing
import VoiceCoreBus
import VoiceCoreEvents
import VoiceCorePostgres
@testable import VoiceCoreProjections
import VoiceCoreSimulation

/// The `audit` projection among the standard ones: it records the tenant API's commands from the
/// command streams, and replay never rebuilds or truncates what it wrote.
@Suite("The audit projection", .serialized)
struct AuditProjectionTests {
    static let keyID = "0123456789abcdef"

    /// Every audit row as text, in a fixed order.
    static func trail(_ db: PostgresConnection) async throws -> [String] {
        try await db.query("SELECT a::text AS row FROM audit_logs a ORDER BY request_id").map { try $0.decode(String.self, "row") }
    }

    /// Commands of the tenant API (two), and one of a service (no audit row), for `tenant`.
    static func publishCommands(_ fixture: ProjectorFixture, tenant: Identifier) async throws -> [EventEnvelope] {
        let api = "/edge/api/keys/\(keyID)"  // the wire contract: schemas/README.md
        let envelopes = [
            (EventEnvelope(CreateLead(leadID: .v7(), name: "Jane Caller", phone: "+14155550142", intent: .appointment), tenant: tenant, source: api),
             CreateLead.category),
            (EventEnvelope(UpdateContact(contactID: .v7(), email: "jane@example.com"), tenant: tenant, source: api), UpdateContact.category),
            (EventEnvelope(CreateLead(leadID: .v7(), name: "From a call", intent: .sales), tenant: tenant, source: "/services/ai"), CreateLead.category),
        ]
        for (envelope, category) in envelopes { _ = try await fixture.publisher.publish(envelope, category: category, kind: .command) }
        return envelopes.map(\.0)
    }

    static func dropCommandStreams(_ fixture: ProjectorFixture) async throws {
        var keys: [String] = []
        for category in StreamCategory.allCases { keys += fixture.naming.streams(category, kind: .command) }
        _ = try await fixture.redis.execute(.del(keys))
    }

    @Test("the standard projector records the tenant API's commands; replay refuses the trail and leaves it untouched")
    func replayNeverTouchesTheTrail() async throws {
        let fixture = try await ProjectorFixture()
        defer { Task { try? await Self.dropCommandStreams(fixture); try? await fixture.drop() } }
        var workload = CallWorkload(seed: 29, tenants: 2)
        try await fixture.publish(workload.provisioning() + workload.calls(40))
        let commands = try await Self.publishCommands(fixture, tenant: workload.tenants[0])

        #expect(StandardProjections.all.contains { $0.name == "audit" }, "voicecore up and voicecore project run it")
        let projector = try fixture.runner()
        try await fixture.waitUntilCaughtUp()
        try await projector.stop()
        #expect(projector.runner.statistics["audit"]?.applied == 3 && projector.runner.statistics["audit"]?.failed == 0)
        let rows = try await fixture.db.query("SELECT request_id, actor, api_key_id, action, outcome, tenant_id FROM audit_logs ORDER BY at")
        try #require(rows.count == 2)
        #expect(try rows.map { Identifier(try $0.decode(UUID.self, "request_id")) } == [commands[0].id, commands[1].id])
        for row in rows {
            #expect(try row.decode(String.self, "actor") == "api_key")
            #expect(try row.decode(String?.self, "api_key_id") == Self.keyID)
            #expect(try row.decode(String.self, "outcome") == "accepted")
            #expect(Identifier(try row.decode(UUID.self, "tenant_id")) == workload.tenants[0])
        }
        let trail = try await Self.trail(fixture.db)
        #expect(!trail.joined().contains("Jane") && !trail.joined().contains("jane@"), "no caller data in the trail")

        // Replay refuses the trail in every mode, before touching anything.
        for mode in [ReplayOptions.Mode.rebuild, .verify, .dryRun] {
            let replayer = Replayer(projection: AuditProjection(), postgres: try PostgresConfiguration(url: fixture.databaseURL))
            await #expect(throws: ReplayError.self) { try await replayer.run(ReplayOptions(mode: mode)) }
        }
        #expect(!AuditProjection().isReplayable)
        #expect(try await fixture.db.query("SELECT count(*) AS n FROM pg_namespace WHERE nspname = \(Replayer.shadowSchema(of: "audit", live: fixture.schema.name))")[0].decode(Int.self, "n") == 0)

        // Rebuilding every replayable projection (all of them, one after another) leaves it as it was.
        let replayable = StandardProjections.all.filter(\.isReplayable)
        #expect(!replayable.contains { $0.tables.contains("audit_logs") })
        for projection in replayable {
            _ = try await Replayer(projection: projection, postgres: try PostgresConfiguration(url: fixture.databaseURL)).run(ReplayOptions(mode: .rebuild))
        }
        #expect(try await Self.trail(fixture.db) == trail)

        // Running the projector again (from its checkpoints) records nothing twice.
        let again = try fixture.runner()
        try await fixture.waitUntilCaughtUp()
        try await again.stop()
        #expect(try await Self.trail(fixture.db) == trail)
    }

    @Test("the audit projection reads the command streams, checkpointed like any other")
    func commandStreamsAreReadFromTheCheckpoints() async throws {
        let fixture = try await ProjectorFixture(partitions: 2)
        defer { Task { try? await Self.dropCommandStreams(fixture); try? await fixture.drop() } }
        let tenant = Identifier.v7()
        let commands = try await Self.publishCommands(fixture, tenant: tenant)
        let projector = try fixture.runner(projections: [AuditProjection()])
        try await fixture.waitUntilCaughtUp()
        try await projector.stop()
        // Checkpoints on the command streams, none on event streams.
        let streams = try await fixture.db.query("SELECT stream FROM projection_checkpoints WHERE projection = 'audit'").map { try $0.decode(String.self, "stream") }
        #expect(!streams.isEmpty && streams.allSatisfy { $0.hasSuffix(":commands") }, "\(streams)")
        let status = try #require(try await fixture.status([AuditProjection()]).first)
        #expect(status.streams.allSatisfy { $0.stream.hasSuffix(":commands") })
        #expect(status.gap == 0)
        #expect(try await fixture.db.query("SELECT count(*) AS n FROM audit_logs")[0].decode(Int.self, "n") == 2)
        _ = commands
    }
}
