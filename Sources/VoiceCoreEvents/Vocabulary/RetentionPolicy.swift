/// How long a tenant keeps what its calls leave behind, in days; the retention job erases what is
/// older. Each field is optional: absent means the platform's default (``defaultTranscriptsDays``,
/// ``defaultRecordingsDays``, ``defaultCallsDays``), so a tenant follows a changed default unless
/// it chose a value itself.
///
/// ```json
/// "retention": {"transcripts_days": 30, "recordings_days": 14}
/// ```
public struct RetentionPolicy: Sendable, Hashable, Codable, JSONObjectCodable {
    /// One year of transcripts (and the other words said on a call).
    public static let defaultTranscriptsDays = 365
    /// Ninety days of recording URLs.
    public static let defaultRecordingsDays = 90
    /// Three years of calls (who called; the numbers stay in aggregates).
    public static let defaultCallsDays = 1095
    /// The days a tenant may choose: at least one day, at most ten years.
    public static let allowedDays = 1...3650

    /// Days transcripts, turns, summaries and messages are kept; nil: ``defaultTranscriptsDays``.
    public var transcriptsDays: Int?
    /// Days recording URLs are kept; nil: ``defaultRecordingsDays``.
    public var recordingsDays: Int?
    /// Days a call's personal data (numbers, names) is kept; nil: ``defaultCallsDays``.
    public var callsDays: Int?

    public init(transcriptsDays: Int? = nil, recordingsDays: Int? = nil, callsDays: Int? = nil) {
        self.transcriptsDays = transcriptsDays
        self.recordingsDays = recordingsDays
        self.callsDays = callsDays
    }

    public var effectiveTranscriptsDays: Int { transcriptsDays ?? Self.defaultTranscriptsDays }
    public var effectiveRecordingsDays: Int { recordingsDays ?? Self.defaultRecordingsDays }
    public var effectiveCallsDays: Int { callsDays ?? Self.defaultCallsDays }

    /// Whether every field is absent (every default applies).
    public var isEmpty: Bool { transcriptsDays == nil && recordingsDays == nil && callsDays == nil }

    func validate(_ prefix: String) throws(MessageDecodingError) {
        for (name, days) in [("transcripts_days", transcriptsDays), ("recordings_days", recordingsDays), ("calls_days", callsDays)] {
            if let days, !Self.allowedDays.contains(days) {
                throw .invalid("\(prefix).\(name)", "must be a number of days from \(Self.allowedDays.lowerBound) to \(Self.allowedDays.upperBound)")
            }
        }
    }

    enum CodingKeys: String, CodingKey {
        case transcriptsDays = "transcripts_days", recordingsDays = "recordings_days", callsDays = "calls_days"
    }
}

// MARK: JSON

extension RetentionPolicy {
    public func writeJSON(to o: inout JSONObjectWriter) {
        o.field("transcripts_days", transcriptsDays); o.field("recordings_days", recordingsDays); o.field("calls_days", callsDays)
    }

    public init(json o: JSONObject) throws(MessageDecodingError) {
        // A misspelt name would silently keep data for the default time: refuse it.
        if let unknown = o.keys.first(where: { !["transcripts_days", "recordings_days", "calls_days"].contains($0) }) {
            throw .invalid("\(o.path).\(unknown)", "is not a retention setting (transcripts_days, recordings_days, calls_days)")
        }
        self.init(transcriptsDays: try o.optionalInt("transcripts_days"), recordingsDays: try o.optionalInt("recordings_days"),
                  callsDays: try o.optionalInt("calls_days"))
    }
}
