import VoiceCoreEvents
import VoiceCorePostgres

/// transcripts → `transcripts`: final chunks, one row per call × track × sequence (so reading them
/// in key order gives each track in sequence order). Partial chunks are replaced by their final
/// one upstream and are not stored. A repeated chunk keeps its first text.
public struct TranscriptsProjection: Projection {
    public init() {}
    public var name: String { "transcripts" }
    public var summary: String { "transcripts: final chunks in sequence order per call and track" }
    public var categories: [StreamCategory] { [.calls] }
    public var eventTypes: Set<String>? { [TranscriptChunk.type] }
    public var tables: [String] { ["transcripts"] }

    struct Key: Hashable {
        var tenant: Identifier, call: Identifier, track: TranscriptTrack, sequence: Int
    }

    public func apply(_ events: [ProjectedEvent], in db: isolated PostgresConnection) throws {
        let chunks = events.messages(TranscriptChunk.self).filter(\.message.isFinal)
            .uniqued { Key(tenant: $0.event.tenantID, call: $0.message.callID, track: $0.message.track, sequence: $0.message.sequence) }
        guard !chunks.isEmpty else { return }
        try db.write("""
            INSERT INTO transcripts (tenant_id, call_id, track, sequence, text, confidence, start_offset_ms, end_offset_ms, language)
            SELECT * FROM unnest(\(chunks.map(\.event.tenantID))::uuid[], \(chunks.map(\.message.callID))::uuid[],
                                 \(chunks.map(\.message.track.rawValue))::text[], \(chunks.map(\.message.sequence))::int8[],
                                 \(chunks.map(\.message.text))::text[], \(chunks.map(\.message.confidence))::float8[],
                                 \(chunks.map(\.message.startOffsetMs))::int8[], \(chunks.map(\.message.endOffsetMs))::int8[],
                                 \(chunks.map(\.message.language))::text[])
            ON CONFLICT (tenant_id, call_id, track, sequence) DO NOTHING
            """)
    }
}
