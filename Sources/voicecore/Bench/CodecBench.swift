import ArgumentParser
import Foundation
import VoiceCoreEvents
import VoiceCoreTime

struct CodecBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "codec",
        abstract: "Encode + decode of a TranscriptChunk envelope (about 300 bytes on the wire), on one core.",
        discussion: """
            Each iteration builds the envelope of a TranscriptChunk (UUIDv7 id, JSON payload, stream \
            fields) and decodes it back through the message registry (envelope attributes, JSON, \
            validation). Runs on one thread; prints iterations per second and the wire size.
            """
    )

    @Option(help: "Iterations.")
    var count = 300_000

    func run() throws {
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
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        guard checksum == (count - 1) * count / 2 else { throw ValidationError("decoded sequences do not match") }
        print("TranscriptChunk envelope: \(wireBytes) bytes of fields, \(count) encode+decode on one thread")
        print("\(formatRate(Double(count) / seconds)) encode+decode/s (\(String(format: "%.2f", seconds * 1e6 / Double(count))) µs each)")
    }
}
