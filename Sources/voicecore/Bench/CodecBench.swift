import ArgumentParser
import VoiceCoreBenchmarks

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
        try CodecBenchmark(count: count).run(report: say)
    }
}
