import Foundation
import Testing
import VoiceCoreBus
import VoiceCoreEvents
import VoiceCoreRedis
import VoiceCoreServices
import VoiceCoreTime

@Suite("Redelivery", .serialized)
struct RedeliveryTests {
    /// Every event of `type` under the fixture's prefix.
    static func events(_ fixture: PlatformFixture, _ type: String) async throws -> [EventEnvelope] {
        var found: [EventEnvelope] = []
        for stream in fixture.naming.streams(.calls, kind: .event) + fixture.naming.streams(.billing, kind: .event) + fixture.naming.streams(.crm, kind: .command) {
            for entry in try await fixture.redis.execute(.xrange(stream)) {
                let envelope = try EventEnvelope(fields: (entry.fields ?? []).map { EnvelopeField(name: $0.name, value: $0.value) })
                if envelope.type == type { found.append(envelope) }
            }
        }
        return found
    }

    @Test("a command handled again after a crash (its state lost, its effects published) publishes nothing twice")
    func handledTwice() async throws {
        let fixture = try await PlatformFixture()
        defer { Task { try? await fixture.drop() } }
        let callID = CallID.derive(tenant: fixture.tenant, provider: .twilio, providerCallID: "CAredelivered")
        let t0 = Timestamp(rfc3339: "2026-11-24T09:00:00Z")!
        func report(_ status: ReportCallProgress.Status, _ sequence: Int64, _ seconds: Int64, duration: Int? = nil) -> EventEnvelope {
            EventEnvelope(ReportCallProgress(callID: callID, provider: .twilio, providerCallID: "CAredelivered", status: status, sequence: sequence,
                                             occurredAt: t0.adding(microseconds: seconds * 1_000_000), direction: .inbound, from: "+14155550100",
                                             to: "+14155550199", durationSeconds: duration),
                          tenant: fixture.tenant, source: "/edge")
        }
        let ringing = report(.ringing, 0, 0)
        let completed = report(.completed, 1, 30, duration: 28)
        try await fixture.run(services: ["calls", "ai", "crm", "billing"], projectors: false) { _ in
            try await fixture.publisher.publish(ringing, category: .calls, kind: .command)
            try await fixture.eventually("CallStarted") { try await Self.events(fixture, CallStarted.type).count == 1 }
        }
        // The crash: the call service published CallStarted, then died before it wrote the call's
        // state and acknowledged (its memory is gone with it); Redis delivers the command again.
        let stateKeys = try await fixture.redis.scanAll(match: "\(fixture.prefix):*:state:calls:\(callID)")
        #expect(stateKeys.count == 1)
        _ = try await fixture.redis.execute(.del(stateKeys))
        try await fixture.run(services: ["calls", "ai", "crm", "billing"], projectors: false) { _ in
            try await fixture.publisher.publish(ringing, category: .calls, kind: .command)
            try await fixture.publisher.publish(completed, category: .calls, kind: .command)
            try await fixture.publisher.publish(completed, category: .calls, kind: .command)
            try await fixture.eventually("usage") { try await Self.events(fixture, UsageRecorded.type).count >= 3 }
            try await Task.sleep(for: .milliseconds(500))
        }
        #expect(try await Self.events(fixture, CallStarted.type).count == 1)
        #expect(try await Self.events(fixture, CallAnswered.type).count == 1)
        #expect(try await Self.events(fixture, CallEnded.type).count == 1)
        #expect(try await Self.events(fixture, CallSummarized.type).count == 1)
        #expect(try await Self.events(fixture, UsageRecorded.type).count == 3, "call minutes, transcription seconds, AI request: once each")
    }
}
