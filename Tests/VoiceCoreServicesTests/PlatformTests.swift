import Crypto
import Foundation
import Testing
import VoiceCoreBus
import VoiceCoreEdge
import VoiceCoreEvents
import VoiceCorePostgres
import VoiceCoreRedis
import VoiceCoreServices
import VoiceCoreSimulation
import VoiceCoreTenants
import VoiceCoreTime

/// A call through edge → services → projectors, on real Redis and Postgres.
@Suite("Platform, end to end", .serialized)
struct PlatformTests {
    /// A fixed moment, so two runs of the call can be compared row by row.
    static let rang = Timestamp(rfc3339: "2026-11-24T10:15:00Z")!

    static func call(_ fixture: PlatformFixture, base: String) -> TwilioCallSimulation {
        TwilioCallSimulation.appointmentCall(tenant: fixture.tenant, accountSID: fixture.accountSID, authToken: fixture.twilioToken,
                                             publicBase: base, rangAt: rang)
    }

    /// Plays the webhooks, waits until the call is fully projected, returns the read model.
    static func play(_ order: @Sendable ([SimulatedWebhook]) -> [SimulatedWebhook]) async throws -> (rows: [String], fixture: PlatformFixture) {
        let fixture = try await PlatformFixture()
        do {
            try await fixture.run { base in
                let call = Self.call(fixture, base: base)
                for hook in order(call.webhooks) {
                    let status = try await PlatformFixture.post(hook, to: base)
                    #expect(status == 200, "\(hook.kind) answered \(status)")
                }
                let id = call.callID.uuid
                try await fixture.eventually("the call's rows") {
                    try await fixture.count("""
                        SELECT (SELECT count(*) FROM call_sessions WHERE call_id = \(id) AND end_status IS NOT NULL)
                             + (SELECT count(*) FROM leads WHERE call_id = \(id))
                             + (SELECT count(*) FROM interactions WHERE call_id = \(id))
                             + (SELECT count(*) FROM call_analytics WHERE call_id = \(id) AND word_count = 27 AND outcome IS NOT NULL)
                             + (SELECT count(*) FROM billing_usage_items WHERE call_id = \(id))
                             + (SELECT count(*) FROM transcripts WHERE call_id = \(id))
                        """) == 1 + 1 + 1 + 1 + 3 + 4
                }
                // Let anything still in flight land, so a double count would show.
                try await Task.sleep(for: .milliseconds(700))
            }
            let rows = try await fixture.readModel()
            return (rows, fixture)
        } catch {
            try? await fixture.drop()
            throw error
        }
    }

    @Test("a complete call produces exactly the expected rows")
    func completeCall() async throws {
        let (rows, fixture) = try await Self.play { $0 }
        defer { Task { try? await fixture.drop() } }
        let expected = [
            "call_sessions: provider=twilio direction=inbound from_number=+14155550123 to_number=+14155559876 status=completed started_at=2026-11-24 10:15:00+00 answered_at=2026-11-24 10:15:02+00 ended_at=2026-11-24 10:15:23+00 duration_seconds=21 end_status=completed hung_up_by=unknown",
            "transcripts: track=outbound sequence=0 text=Thanks for calling. How can I help you today? confidence=0.93 start_offset_ms=1400 end_offset_ms=5000",
            "transcripts: track=inbound sequence=2 text=Hi, this is Maria Lopez. I'd like to book an appointment for a cleaning next week. confidence=0.93 start_offset_ms=4600 end_offset_ms=11000",
            "transcripts: track=outbound sequence=3 text=Of course. What is the best number to reach you? confidence=0.93 start_offset_ms=10000 end_offset_ms=14000",
            "transcripts: track=inbound sequence=5 text=You can reach me at 415 555 0199. Thanks, that's great. confidence=0.93 start_offset_ms=15600 end_offset_ms=20000",
            "leads: name=Maria Lopez phone=+14155550199 email=null intent=appointment source=call notes=Caller intent: appointment. Contact: Maria Lopez, +14155550199. Said: Hi, this is Maria Lopez. I'd like to book an appointment for a cleaning next week. You can reach me at 415 555 0199.",
            "crm_contacts: name=null phone=+14155550123 email=null",
            "crm_contacts: name=Maria Lopez phone=+14155550199 email=null",
            "interactions: channel=call summary=Inbound call, completed, 21 s duration_seconds=21 occurred_at=2026-11-24 10:15:23+00",
            "call_analytics: duration_seconds=21 outcome=completed intent=appointment intent_confidence=0.6 sentiment=positive sentiment_score=1 word_count=27",
            "business_metrics: day=2026-11-24 calls=1 answered=1 missed=0 handle_seconds=21 leads=1",
            "billing_usage: day=2026-11-24 meter=ai_requests quantity=1 unit=request",
            "billing_usage: day=2026-11-24 meter=call_minutes quantity=1 unit=minute",
            "billing_usage: day=2026-11-24 meter=transcription_seconds quantity=21 unit=second",
        ]
        #expect(rows == expected, "\(rows.joined(separator: "\n"))")
        // Every derived event once: no duplicate publishes anywhere.
        let id = fixture.tenant.uuid
        let types = try await fixture.db.query("SELECT type, count(*) AS n FROM event_log WHERE tenant_id = \(id) GROUP BY type ORDER BY type")
        let counts = Dictionary(uniqueKeysWithValues: try types.map { (try $0.decode(String.self, "type"), try $0.decode(Int.self, "n")) })
        #expect(counts[CallStarted.type] == 1 && counts[CallAnswered.type] == 1 && counts[CallEnded.type] == 1)
        #expect(counts[TranscriptChunk.type] == 6, "4 finals and 2 partials")
        #expect(counts[LeadCreated.type] == 1 && counts[CallSummarized.type] == 1 && counts[UsageRecorded.type] == 3)
        #expect(counts[IntentDetected.type] == 1, "only the caller's appointment sentence names an intent")
    }

    @Test("the same call with callbacks shuffled and duplicated produces the same rows")
    func shuffledAndDuplicated() async throws {
        let (ordered, first) = try await Self.play { $0 }
        try await first.drop()
        let (shuffled, second) = try await Self.play { hooks in
            var generator = SplitMix64(seed: 7)
            // The incoming-call webhook comes first (the call waits for its answer); everything
            // after it arrives in any order, many twice or three times (provider retries); the
            // completed callback stays behind the transcription (see the late-transcript test).
            let voice = hooks[0]
            let completed = hooks[hooks.count - 1]
            var rest = Array(hooks[1..<(hooks.count - 1)])
            rest += rest.filter { _ in Bool.random(using: &generator) }
            rest += rest.prefix(2)
            rest.shuffle(using: &generator)
            return [voice] + rest + [completed, completed]
        }
        defer { Task { try? await second.drop() } }
        #expect(shuffled == ordered, "\(shuffled.joined(separator: "\n"))")
    }

    @Test("a transcript arriving after the call ended updates the summary and still makes the lead")
    func lateTranscript() async throws {
        let (ordered, first) = try await Self.play { $0 }
        try await first.drop()
        let (late, second) = try await Self.play { hooks in
            // The caller's last final (with the phone number) after the completed callback.
            let last = hooks.lastIndex { $0.kind == .transcription }!
            var reordered = hooks
            let hook = reordered.remove(at: last)
            reordered.append(hook)
            return reordered
        }
        defer { Task { try? await second.drop() } }
        let analytics = { (rows: [String]) in rows.filter { $0.hasPrefix("call_analytics") || $0.hasPrefix("transcripts") || $0.hasPrefix("billing") } }
        #expect(analytics(late) == analytics(ordered))
        let leads = late.filter { $0.hasPrefix("leads") }
        #expect(leads.count == 1 && leads[0].contains("intent=appointment") && leads[0].contains("Maria Lopez"))
    }
}
