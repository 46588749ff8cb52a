import Foundation
import VoiceCoreEvents
import VoiceCoreTime

/// Encode + decode of a TranscriptChunk envelope (about 300 bytes on the wire) on one thread, and
/// each half alone (`voicecore bench codec`).
public struct CodecBenchmark: Sendable {
    /// Iterations.
    public var count: Int

    public init(count: Int = 300_000) {
        self.count = count
    }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }

    public func run(report: (String) -> Void) throws {
        let tenant = Identifier.v7()
        let callID = Identifier.v7()
        let correlation = Identifier.v7()
        let registry = MessageRegistry.standard
        let chunk = TranscriptChunk(callID: callID, sequence: 42, track: .inbound, text: "Hi, I'd like to book an appointment for Tuesday, my number is +14155550123.",
                                    isFinal: true, confidence: 0.93, startOffsetMs: 12_340, endOffsetMs: 15_870, language: "en-US")
        let sample = EventEnvelope(chunk, tenant: tenant, source: "/services/calls", correlationID: correlation).fields
        let wireBytes = sample.reduce(0) { $0 + $1.name.utf8.count + $1.value.count }

        var checksum = 0
        let clock = ContinuousClock()
        let start = clock.now
        for i in 0..<count {
            var message = chunk
            message.sequence = i
            let fields = EventEnvelope(message, tenant: tenant, source: "/services/calls", correlationID: correlation).fields
            let (_, decoded) = try registry.decode(fields: fields, as: TranscriptChunk.self)
            checksum &+= decoded.sequence
        }
        let elapsed = clock.now - start
        let seconds = Self.seconds(elapsed)
        guard checksum == (count - 1) * count / 2 else { throw BenchmarkFailure("decoded sequences do not match") }
        // The halves alone, for where the time goes: encode without keeping the results, decode
        // from a ring of pre-encoded entries (so neither half measures memory growth).
        let halfCount = min(count, 200_000)
        var sizes = 0
        let encodeStart = clock.now
        for i in 0..<halfCount {
            var message = chunk
            message.sequence = i
            sizes &+= EventEnvelope(message, tenant: tenant, source: "/services/calls", correlationID: correlation).fields.count
        }
        let encodeSeconds = Self.seconds(clock.now - encodeStart)
        let ring = (0..<1024).map { i -> [EnvelopeField] in
            var message = chunk
            message.sequence = i
            return EventEnvelope(message, tenant: tenant, source: "/services/calls", correlationID: correlation).fields
        }
        let decodeStart = clock.now
        for i in 0..<halfCount {
            checksum &+= try registry.decode(fields: ring[i & 1023], as: TranscriptChunk.self).1.sequence
        }
        let decodeSeconds = Self.seconds(clock.now - decodeStart)
        guard sizes == halfCount * sample.count else { throw BenchmarkFailure("unexpected field count") }
        let dataBytes = sample.first { $0.name == "data" }?.value.count ?? 0
        report("TranscriptChunk envelope: \(wireBytes) bytes of stream fields (data \(dataBytes) bytes), one thread")
        report("encode+decode  \(formatRate(Double(count) / seconds))/s  (\(String(format: "%.2f", seconds * 1e6 / Double(count))) µs each, \(count) iterations)")
        report("encode alone   \(formatRate(Double(halfCount) / encodeSeconds))/s")
        report("decode alone   \(formatRate(Double(halfCount) / decodeSeconds))/s")
    }
}
