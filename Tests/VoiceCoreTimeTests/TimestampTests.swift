import Foundation
import Testing
import VoiceCoreTime

@Suite("Timestamp")
struct TimestampTests {
    @Test(arguments: [
        ("1970-01-01T00:00:00.000000Z", Int64(0)),
        ("2026-11-24T19:46:00.123456Z", Int64(1_795_549_560_123_456)),
        ("1969-12-31T23:59:58.750000Z", Int64(-1_250_000)),
        ("2000-02-29T12:00:00.000001Z", Int64(951_825_600_000_001)),
    ])
    func formatsAndParsesExactly(text: String, micros: Int64) throws {
        let instant = Timestamp(microsecondsSinceEpoch: micros)
        #expect(instant.rfc3339 == text)
        #expect(Timestamp(rfc3339: text) == instant)
    }

    @Test func acceptsOffsetsAndThePostgresForm() {
        let utc = Timestamp(rfc3339: "2026-11-24T19:46:00.5Z")
        #expect(Timestamp(rfc3339: "2026-11-24 21:16:00.5+01:30") == utc)
        #expect(Timestamp(rfc3339: "2026-11-24 19:46:00.500000+00") == utc)
        #expect(Timestamp(rfc3339: "2026-11-24T14:46:00.5-05:00") == utc)
        #expect(Timestamp(rfc3339: "2026-11-24T19:46:00.1234569Z")?.microsecondsSinceEpoch == 1_795_549_560_123_456)
    }

    @Test(arguments: ["", "not a time", "2026-11-24", "2026-13-01T00:00:00Z", "2026-11-24T19:46:00", "2026-11-24T19:46:00.Z", "2026-11-24T25:00:00Z", "2026-11-24T19:46:00Zjunk"])
    func rejectsWhatIsNotADateTime(_ text: String) {
        #expect(Timestamp(rfc3339: text) == nil)
    }

    @Test func roundTripsThroughCodableAndDate() throws {
        let instant = Timestamp(microsecondsSinceEpoch: 1_795_549_560_123_456)
        let json = try JSONEncoder().encode([instant])
        #expect(String(decoding: json, as: UTF8.self) == "[\"2026-11-24T19:46:00.123456Z\"]")
        #expect(try JSONDecoder().decode([Timestamp].self, from: json) == [instant])
        #expect(Timestamp(instant.date) == instant)
        #expect(instant.millisecondsSinceEpoch == 1_795_549_560_123)
        #expect(abs(Timestamp.now.date.timeIntervalSinceNow) < 5)
    }
}
