import Foundation
import Testing
import VoiceCoreBus
import VoiceCoreEvents
import VoiceCorePostgres
import VoiceCoreRedis
import VoiceCoreServices
import VoiceCoreTenants

@Suite("Tenants service", .serialized)
struct TenantsServiceTests {
    @Test("a settings change is stored for the AI, announced once and projected; the AI then listens for the tenant's phrases")
    func settingsChange() async throws {
        let fixture = try await PlatformFixture()
        defer { Task { try? await fixture.drop() } }
        let settings = AISettings(greeting: "Hello from Bright Smiles", intents: [.init(intent: .support, phrases: ["wobbly tooth"])],
                                  businessHours: .init(timeZone: "Europe/Berlin", openings: [.init(day: .mon, opens: "08:00", closes: "12:00")]))
        let command = EventEnvelope(ChangeSettings(tenantID: fixture.tenant, settings: settings), tenant: fixture.tenant, source: "/edge")
        try await fixture.run(services: ["tenants", "calls", "ai"]) { _ in
            // Published twice (a redelivery): stored and announced once.
            try await fixture.publisher.publish(command, category: .tenants, kind: .command)
            try await fixture.publisher.publish(command, category: .tenants, kind: .command)
            try await fixture.eventually("the settings projected") {
                try await fixture.count("SELECT count(*) FROM tenants WHERE settings->>'greeting' = 'Hello from Bright Smiles'") == 1
            }
            #expect(try await fixture.directory.profile(of: fixture.tenant)?.aiSettings == settings)

            // A caller saying the tenant's own phrase: the AI detects the tenant's intent.
            let callID = CallID.derive(tenant: fixture.tenant, provider: .twilio, providerCallID: "CAsettings")
            try await fixture.publisher.publish(TranscriptChunk(callID: callID, sequence: 0, track: .inbound, text: "I have a wobbly tooth",
                                                                isFinal: true, confidence: 0.9, startOffsetMs: 0, endOffsetMs: 1000), tenant: fixture.tenant)
            try await fixture.eventually("the tenant's intent detected") {
                try await fixture.count("SELECT count(*) FROM event_log WHERE type = \(IntentDetected.type) AND payload->>'intent' = 'support' AND payload->>'matched_phrase' = 'wobbly tooth'") == 1
            }
        }
        #expect(try await fixture.count("SELECT count(*) FROM event_log WHERE type = \(TenantSettingsChanged.type)") == 1)
    }
}
