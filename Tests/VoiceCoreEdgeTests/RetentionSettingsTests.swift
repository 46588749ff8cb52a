import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing
import VoiceCoreEvents
import VoiceCoreTenants
@testable import VoiceCoreEdge

/// A tenant's retention settings (`retention` of its AI settings) through `PUT /v1/settings` and
/// the console's settings page: stored as sent, defaults where left out, out-of-range days refused
/// with 422 naming the field and nothing published.
@Suite("Retention settings", .serialized)
struct RetentionSettingsTests {
    static let base = #""greeting":"Hi, Acme Dental","intents":[{"intent":"appointment","phrases":["book"]}],"business_hours":{"time_zone":"UTC","openings":[]}"#

    @Test func retentionSentToTheAPIIsStoredWithTheDefaultsWhereLeftOut() async throws {
        let fixture = try await EdgeFixture()
        let auth: HTTPFields = [.authorization: "Bearer \(fixture.apiKey)", .contentType: "application/json"]
        try await ConsoleTenantPagesTests.withTenantsService(fixture) {
            try await fixture.test { client in
                let body = "{\(Self.base),\"retention\":{\"transcripts_days\":30,\"recordings_days\":7}}"
                let response = try await client.execute(uri: "/v1/settings", method: .put, headers: auth, body: ByteBuffer(string: body))
                #expect(response.status == .accepted, "\(response.text)")
            }
            var stored: RetentionPolicy?
            let deadline = ContinuousClock.now + .seconds(10)
            while stored == nil, ContinuousClock.now < deadline {
                stored = try await fixture.directory.profile(of: fixture.tenant)?.aiSettings?.retention
                if stored == nil { try await Task.sleep(for: .milliseconds(50)) }
            }
            let policy = try #require(stored, "the tenants service stored the settings with their retention")
            #expect(policy == RetentionPolicy(transcriptsDays: 30, recordingsDays: 7, callsDays: nil))
            #expect(policy.effectiveTranscriptsDays == 30 && policy.effectiveRecordingsDays == 7)
            #expect(policy.effectiveCallsDays == 1095, "left out: the default")
        }
        let change = try MessageCodec.decode(ChangeSettings.self, from: try #require(try await fixture.commands().first { $0.type == ChangeSettings.type }).data)
        #expect(change.settings.retention == RetentionPolicy(transcriptsDays: 30, recordingsDays: 7))
        try await fixture.drop()
    }

    @Test func daysOutsideOneToTenYearsAre422NamingTheFieldAndNothingIsPublished() async throws {
        let fixture = try await EdgeFixture()
        let auth: HTTPFields = [.authorization: "Bearer \(fixture.apiKey)", .contentType: "application/json"]
        try await fixture.test { client in
            let refusals: [(retention: String, field: String)] = [
                (#"{"transcripts_days":0}"#, "body.settings.retention.transcripts_days"),
                (#"{"recordings_days":4000}"#, "body.settings.retention.recordings_days"),
                (#"{"calls_days":-1}"#, "body.settings.retention.calls_days"),
                (#"{"calls_days":"30"}"#, "body.retention.calls_days"),
                (#"{"calls_days":1.5}"#, "body.retention.calls_days"),
                (#"{"transcript_days":30}"#, "body.retention.transcript_days"),
            ]
            for refusal in refusals {
                let body = "{\(Self.base),\"retention\":\(refusal.retention)}"
                let response = try await client.execute(uri: "/v1/settings", method: .put, headers: auth, body: ByteBuffer(string: body))
                #expect(response.status == .unprocessableContent, "\(refusal.retention): \(response.text)")
                #expect(response.json["field"] as? String == refusal.field, "\(refusal.retention): \(response.text)")
            }
        }
        #expect(try await fixture.commands().isEmpty, "nothing published")
        try await fixture.drop()
    }

    @Test func theConsoleShowsTheDefaultsAndRefusesZeroDaysNextToTheField() async throws {
        let fixture = try await EdgeFixture()
        try await fixture.test { client in
            let browser = try await ConsoleBrowser.signIn(client, key: fixture.apiKey)
            let form = try await browser.get("/app/settings")
            #expect(form.text.contains(#"name="retention_transcripts_days""#) && form.text.contains(#"placeholder="365""#))
            #expect(form.text.contains(#"name="retention_recordings_days""#) && form.text.contains(#"placeholder="90""#))
            #expect(form.text.contains(#"name="retention_calls_days""#) && form.text.contains(#"placeholder="1095""#))

            let valid = ConsoleTenantPagesTests.settingsFields(greeting: "Welcome")
            let zero = try await browser.post("/app/settings", valid + [("retention_transcripts_days", "0")], from: form)
            #expect(zero.status == .unprocessableContent)
            #expect(zero.text.contains(#"id="error-retention-transcripts_days">Transcripts retention must be a number of days from 1 to 3650.</p>"#), "\(zero.text)")
            #expect(zero.text.contains(#"value="0""#), "the form comes back as it was sent")
            let words = try await browser.post("/app/settings", valid + [("retention_calls_days", "a year")], from: form)
            #expect(words.status == .unprocessableContent)
            #expect(words.text.contains(#"id="error-retention-calls_days">Calls retention must be a whole number of days.</p>"#), "\(words.text)")
            #expect(try await fixture.commands().isEmpty, "nothing published")

            let saved = try await browser.post("/app/settings", valid + [("retention_recordings_days", "14"), ("retention_calls_days", "")], from: form)
            #expect(saved.status == .seeOther, "\(saved.text)")
        }
        let change = try MessageCodec.decode(ChangeSettings.self, from: try #require(try await fixture.commands().first { $0.type == ChangeSettings.type }).data)
        #expect(change.settings.retention == RetentionPolicy(recordingsDays: 14))
        try await fixture.drop()
    }
}
