import Foundation
import Logging
import ServiceLifecycle
import Testing
import VoiceCoreBus
import VoiceCoreEvents
import VoiceCorePostgres
import VoiceCoreRedis
import VoiceCoreTenants
import VoiceCoreTestSupport
import VoiceCoreTime

/// The outbox as a relay reads it, except that removing never happens: the state a relay leaves
/// when it dies right after its publishes were acknowledged.
struct DiesBeforeRemoving: OutboxSource {
    let outbox: TenantOutbox

    func pending(limit: Int) async throws -> [OutboxEntry] {
        try await outbox.pending(limit: limit)
    }

    func remove(_ positions: [Int64]) async throws {
        throw TestFailure("the relay died before removing \(positions)")
    }
}

@Suite("The tenant directory's outbox", .serialized)
struct OutboxTests {
    @Test("a tenant and its TenantProvisioned commit together or not at all")
    func tenantAndEventCommitTogether() async throws {
        let fixture = try await TenantsFixture()
        defer { Task { try? await fixture.drop() } }

        // Committed together: no publisher, so the event waits in the outbox beside the tenant.
        let provisioned = try await fixture.directory.provision(NewTenant(name: "Bright Smiles", timeZone: "Europe/Berlin"), publisher: nil)
        #expect(!provisioned.announced)
        let tenant = provisioned.tenant.id
        #expect(try await fixture.count("SELECT count(*) FROM tenant_directory WHERE tenant_id = \(tenant.uuid)") == 1)
        let pending = try await fixture.directory.outbox.pending(limit: 10)
        #expect(pending.count == 1)
        let event = try #require(pending.first?.message)
        #expect(event.envelope.type == TenantProvisioned.type && event.envelope.tenantID == tenant && event.category == .tenants && event.kind == .event)
        let decoded = try MessageCodec.decode(TenantProvisioned.self, from: event.envelope.data)
        #expect(decoded.tenantID == tenant && decoded.name == "Bright Smiles" && decoded.timeZone == "Europe/Berlin")

        // A provisioning that fails at the tenant (the id exists) leaves no event behind.
        await #expect(throws: TenantError.self) { _ = try await fixture.directory.provision(NewTenant(id: tenant, name: "Again"), publisher: nil) }
        #expect(try await fixture.directory.outbox.count() == 1)

        // One whose event cannot be written leaves no tenant (and no API key) behind.
        let refused = Identifier.v7()
        // DDL takes no parameters; the value is a UUID this test made.
        try await fixture.db.query(PostgresQuery(unsafeSQL: "ALTER TABLE tenant_outbox ADD CONSTRAINT refuse_one CHECK (tenant_id <> '\(refused.uuid)')"))
        await #expect(throws: PostgresError.self) { _ = try await fixture.directory.provision(NewTenant(id: refused, name: "Refused"), publisher: nil) }
        #expect(try await fixture.count("SELECT count(*) FROM tenant_directory WHERE tenant_id = \(refused.uuid)") == 0)
        #expect(try await fixture.count("SELECT count(*) FROM tenant_api_keys WHERE tenant_id = \(refused.uuid)") == 0)
        #expect(try await fixture.directory.outbox.count() == 1)
    }

    @Test("settings and their TenantSettingsChanged commit together or not at all")
    func settingsAndEventCommitTogether() async throws {
        let fixture = try await TenantsFixture()
        defer { Task { try? await fixture.drop() } }
        let tenant = try await fixture.directory.provision(NewTenant(name: "Bright Smiles"), publisher: nil).tenant.id
        try await fixture.directory.outbox.remove(try await fixture.directory.outbox.pending(limit: 10).map(\.position))
        let settings = AISettings(greeting: "Hello", intents: [], businessHours: .init(timeZone: "UTC", openings: []))
        func announcement(for tenant: Identifier) -> OutboxMessage {
            let event = TenantSettingsChanged(tenantID: tenant, settings: settings, changedAt: .now)
            return OutboxMessage(EventEnvelope(event, tenant: tenant, source: "/test"), category: .tenants, kind: .event, deduplicationKey: "settings:\(UUID())")
        }

        // An unknown tenant: neither.
        let unknown = Identifier.v7()
        await #expect(throws: TenantError.unknownTenant(unknown.description)) {
            try await fixture.directory.setAISettings(settings, of: unknown, announcing: announcement(for: unknown), publisher: nil)
        }
        #expect(try await fixture.directory.outbox.count() == 0)

        // The event refused: the settings are not stored either.
        try await fixture.db.query(PostgresQuery(unsafeSQL: "ALTER TABLE tenant_outbox ADD CONSTRAINT refuse_settings CHECK (type <> '\(TenantSettingsChanged.type)')"))
        await #expect(throws: PostgresError.self) {
            try await fixture.directory.setAISettings(settings, of: tenant, announcing: announcement(for: tenant), publisher: nil)
        }
        #expect(try await fixture.directory.profile(of: tenant)?.aiSettings == nil)

        // Both.
        try await fixture.db.query("ALTER TABLE tenant_outbox DROP CONSTRAINT refuse_settings")
        try await fixture.directory.setAISettings(settings, of: tenant, announcing: announcement(for: tenant), publisher: nil)
        #expect(try await fixture.directory.profile(of: tenant)?.aiSettings == settings)
        #expect(try await fixture.directory.outbox.pending(limit: 10).map(\.message.envelope.type) == [TenantSettingsChanged.type])
    }

    @Test("a relay that dies after publishing and before removing: the next relay publishes again, and the stream has the event once")
    func relayDyingBeforeRemovingPublishesOnce() async throws {
        let fixture = try await TenantsFixture()
        let redis = try await RedisClient.connect(try RedisConfiguration(url: TestServers.redisURL))
        defer { Task { try? await fixture.drop(redis: redis) } }
        let publisher = fixture.publisher(redis)
        let first = try await fixture.directory.provision(NewTenant(name: "First"), publisher: nil).tenant.id
        let second = try await fixture.directory.provision(NewTenant(name: "Second"), publisher: nil).tenant.id

        await #expect(throws: TestFailure.self) {
            try await OutboxRelay(source: DiesBeforeRemoving(outbox: fixture.directory.outbox), publisher: publisher).relayPending()
        }
        #expect(try await fixture.tenantEvents(redis).count == 2)
        #expect(try await fixture.directory.outbox.count() == 2)

        // The next relay (another process, or this one's service) finds both entries again.
        #expect(try await OutboxRelay(source: fixture.directory.outbox, publisher: publisher).relayPending() == 2)
        let events = try await fixture.tenantEvents(redis)
        #expect(Set(events.map(\.tenantID)) == [first, second])
        #expect(events.count == 2, "each TenantProvisioned once: \(events.map(\.id))")
        #expect(try await fixture.directory.outbox.count() == 0)
    }

    @Test("provisioning publishes right after the commit; one tenant's events reach the stream in the order they were written")
    func provisioningPublishesAtOnceInOrder() async throws {
        let fixture = try await TenantsFixture()
        let redis = try await RedisClient.connect(try RedisConfiguration(url: TestServers.redisURL))
        defer { Task { try? await fixture.drop(redis: redis) } }
        let publisher = fixture.publisher(redis)
        let provisioned = try await fixture.directory.provision(NewTenant(name: "At Once"), publisher: publisher)
        #expect(provisioned.announced)
        let tenant = provisioned.tenant.id
        #expect(try await fixture.tenantEvents(redis).map(\.type) == [TenantProvisioned.type])
        #expect(try await fixture.directory.outbox.count() == 0)

        // Three changes while Redis "is away" (no publisher), then one relay pass: in order.
        let greetings = ["one", "two", "three"]
        for greeting in greetings {
            let settings = AISettings(greeting: greeting, intents: [], businessHours: .init(timeZone: "UTC", openings: []))
            let event = TenantSettingsChanged(tenantID: tenant, settings: settings, changedAt: .now)
            try await fixture.directory.setAISettings(settings, of: tenant, announcing: OutboxMessage(EventEnvelope(event, tenant: tenant, source: "/test"),
                                                                                                   category: .tenants, kind: .event), publisher: nil)
        }
        #expect(try await OutboxRelay(source: fixture.directory.outbox, publisher: publisher).relayPending() == 3)
        let changes = try await fixture.tenantEvents(redis).filter { $0.type == TenantSettingsChanged.type }
        #expect(try changes.map { try MessageCodec.decode(TenantSettingsChanged.self, from: $0.data).settings.greeting } == greetings)
    }

    @Test("the relay service publishes what a writer left, waiting out a Redis outage")
    func relayServicePicksUpLeftEntriesThroughAnOutage() async throws {
        let fixture = try await TenantsFixture()
        defer { Task { try? await fixture.drop() } }
        let server = RestartableRedis()
        try await server.start()
        let redis = try await RedisClient.connect(try server.configuration)
        let relay = OutboxRelay(source: fixture.directory.outbox, publisher: fixture.publisher(redis),
                                configuration: OutboxRelayConfiguration(pollInterval: .milliseconds(100), maximumBackoff: .milliseconds(500)),
                                logger: Logger(label: "test.outbox"))
        let group = ServiceGroup(services: [relay], logger: Logger(label: "test"))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            // Left by a writer that could not publish (no publisher: as if it crashed after its commit).
            let first = try await fixture.directory.provision(NewTenant(name: "Before"), publisher: nil).tenant.id
            try await fixture.eventually("the first event relayed") { try await fixture.directory.outbox.count() == 0 }

            // Redis down: the entry waits; Redis back: it is published, once.
            server.kill()
            let second = try await fixture.directory.provision(NewTenant(name: "During"), publisher: nil).tenant.id
            try await Task.sleep(for: .seconds(1))
            #expect(try await fixture.directory.outbox.count() == 1)
            try await server.start()
            try await fixture.eventually("the second event relayed") { try await fixture.directory.outbox.count() == 0 }
            let events = try await fixture.tenantEvents(redis)
            #expect(events.count == 2)
            #expect(Set(events.map(\.tenantID)) == [first, second])
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
        await redis.close()
    }
}
