import Foundation
import Testing
import VoiceCoreBus
import VoiceCoreEvents
import VoiceCorePostgres
import VoiceCoreRedis
import VoiceCoreServices
import VoiceCoreTime

/// The call service turns the provider's recording callbacks (``ReportRecording``) into
/// voicemails, on real Redis and Postgres, projected into the call's outcomes.
@Suite("Voicemail", .serialized)
struct VoicemailTests {
    @Test("a completed recording is one VoicemailRecorded (a retried callback adds none); failed and absent ones leave no voicemail")
    func completedRecordingsBecomeVoicemails() async throws {
        let fixture = try await PlatformFixture()
        defer { Task { try? await fixture.drop() } }
        // A call the call service never saw start (its voice webhook lost): its voicemail still counts.
        let callID = CallID.derive(tenant: fixture.tenant, provider: .twilio, providerCallID: "CAvoicemail")
        let t0 = Timestamp(rfc3339: "2026-11-24T18:30:00Z") ?? .now
        func report(_ recording: String, _ status: ReportRecording.Status, seconds: Int?, at offset: Int64) -> EventEnvelope {
            EventEnvelope(ReportRecording(callID: callID, provider: .twilio, providerCallID: "CAvoicemail", recordingID: recording,
                                          recordingURL: status == .completed ? "https://api.twilio.com/Recordings/\(recording)" : nil,
                                          durationSeconds: seconds, status: status, occurredAt: t0.adding(microseconds: offset * 1_000_000)),
                          tenant: fixture.tenant, source: "/edge/twilio")
        }
        let commands = [
            report("REfailed", .failed, seconds: nil, at: 1),
            report("REabsent", .absent, seconds: 0, at: 2),
            report("RE1", .completed, seconds: 17, at: 3),
            report("RE1", .completed, seconds: 17, at: 3),  // Twilio retried the callback: a new command, the same recording
            report("REsilent", .completed, seconds: nil, at: 5),  // the provider did not say how long
        ]
        try await fixture.run(services: ["calls"]) { _ in
            for command in commands { try await fixture.publisher.publish(command, category: .calls, kind: .command) }
            // The commands of one call are handled in order: once the last one's voicemail is
            // projected, every earlier command has been handled.
            try await fixture.eventually("the last voicemail projected") {
                try await fixture.count("SELECT count(*) FROM call_outcomes WHERE details->>'recording_id' = 'REsilent'") == 1
            }
        }
        var voicemails: [(EventEnvelope, VoicemailRecorded)] = []
        for stream in fixture.naming.streams(.calls, kind: .event) {
            for entry in try await fixture.redis.execute(.xrange(stream)) {
                let fields = (entry.fields ?? []).map { EnvelopeField(name: $0.name, value: $0.value) }
                if case .known(let envelope, let message as VoicemailRecorded) = try MessageRegistry.standard.decode(fields: fields) {
                    voicemails.append((envelope, message))
                }
            }
        }
        #expect(voicemails.map(\.1.recordingID) == ["RE1", "REsilent"], "one per completed recording; none for failed or absent")
        let first = try #require(voicemails.first)
        #expect(first.1.callID == callID && first.1.durationSeconds == 17 && first.1.recordingURL == "https://api.twilio.com/Recordings/RE1")
        #expect(first.1.recordedAt == t0.adding(microseconds: 3_000_000) && first.0.tenantID == fixture.tenant)
        #expect(voicemails.last?.1.durationSeconds == 0)
        #expect(first.0.causationID == commands[2].id, "caused by the recording's command")

        let rows = try await fixture.db.query("""
            SELECT kind, turn, details->>'recording_id' AS recording, (details->>'duration_seconds')::int AS seconds
            FROM call_outcomes WHERE tenant_id = \(fixture.tenant.uuid) AND call_id = \(callID.uuid) ORDER BY occurred_at
            """)
        #expect(try rows.map { "\(try $0.decode(String.self, "kind")) \(try $0.decode(Int?.self, "turn").map(String.init) ?? "-") \(try $0.decode(String.self, "recording")) \(try $0.decode(Int.self, "seconds"))" }
                == ["voicemail - RE1 17", "voicemail - REsilent 0"])
    }
}
