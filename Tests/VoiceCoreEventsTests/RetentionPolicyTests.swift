import Foundation
import Testing
@testable import VoiceCoreEvents

@Suite("Retention in a tenant's settings")
struct RetentionPolicyTests {
    @Test func theDefaultsApplyToWhatIsLeftOut() {
        let none = RetentionPolicy()
        #expect(none.effectiveTranscriptsDays == 365 && none.effectiveRecordingsDays == 90 && none.effectiveCallsDays == 1095)
        let some = RetentionPolicy(recordingsDays: 7)
        #expect(some.effectiveTranscriptsDays == 365 && some.effectiveRecordingsDays == 7 && some.effectiveCallsDays == 1095)
    }

    @Test func settingsWithRetentionRoundTripAndSettingsWithoutItReadBackUnchanged() throws {
        var settings = AISettings.builtIn
        settings.retention = RetentionPolicy(transcriptsDays: 30, callsDays: 3650)
        let json = JSONObjectWriter.object { settings.writeJSON(to: &$0) }
        let object = try #require(try JSONSerialization.jsonObject(with: Data(json)) as? [String: Any])
        #expect(object["retention"] as? [String: Int] == ["transcripts_days": 30, "calls_days": 3650])
        #expect(try AISettings(json: JSONObject.parse(json)) == settings)
        #expect(try JSONDecoder().decode(AISettings.self, from: Data(json)) == settings)

        // Settings stored before retention existed (and settings with every default) carry no key.
        let plain = JSONObjectWriter.object { AISettings.builtIn.writeJSON(to: &$0) }
        #expect(!String(decoding: plain, as: UTF8.self).contains("retention"))
        #expect(try AISettings(json: JSONObject.parse(plain)).retention == nil)
    }

    @Test func daysOutsideOneToTenYearsAreRefusedNamingTheField() {
        for (policy, field) in [(RetentionPolicy(transcriptsDays: 0), "transcripts_days"), (RetentionPolicy(recordingsDays: 4000), "recordings_days"),
                                (RetentionPolicy(callsDays: -5), "calls_days")] {
            var settings = AISettings.builtIn
            settings.retention = policy
            #expect(throws: MessageDecodingError(field: "data.settings.retention.\(field)", reason: "must be a number of days from 1 to 3650")) {
                try ChangeSettings(tenantID: .v7(), settings: settings).validate()
            }
        }
        var edges = AISettings.builtIn
        edges.retention = RetentionPolicy(transcriptsDays: 1, recordingsDays: 3650, callsDays: 1095)
        #expect(throws: Never.self) { try ChangeSettings(tenantID: .v7(), settings: edges).validate() }
    }
}
