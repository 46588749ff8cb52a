import Foundation
import Synchronization
import Testing
import VoiceCoreEvents
import VoiceCoreRedis
@testable import VoiceCoreBus

/// The `voicecore` binary built beside the tests, run as a real consumer process.
final class ConsumerProcess: @unchecked Sendable {
    let process: Process
    private let collected = Collected()

    /// Lines printed by the process, collected on the pipe's reading thread.
    private final class Collected: Sendable {
        let lines = Mutex<[String]>([])
        let partial = Mutex<[UInt8]>([])

        func append(_ data: Data) {
            partial.withLock { buffer in
                buffer.append(contentsOf: data)
                while let newline = buffer.firstIndex(of: 10) {
                    let line = String(decoding: buffer[..<newline], as: UTF8.self)
                    buffer.removeSubrange(...newline)
                    lines.withLock { $0.append(line) }
                }
            }
        }
    }

    static var binary: URL {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        return root.appendingPathComponent(".build/debug/voicecore")
    }

    init(arguments: [String]) throws {
        process = Process()
        process.executableURL = Self.binary
        process.arguments = arguments
        var environment = ProcessInfo.processInfo.environment
        environment["VOICECORE_LOG_LEVEL"] = "warning"
        process.environment = environment
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        pipe.fileHandleForReading.readabilityHandler = { [collected] handle in
            let data = handle.availableData
            if !data.isEmpty { collected.append(data) }
        }
        try process.run()
    }

    var output: [String] { collected.lines.withLock { $0 } }

    /// Entry ids printed so far (`stream entry`).
    var entries: Set<String> {
        Set(output.compactMap { line in
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                  let stream = object["stream"] as? String, let entry = object["entry"] as? String else { return nil }
            return "\(stream) \(entry)"
        })
    }
}

@Suite("Consumer processes killed with SIGKILL", .serialized)
struct ProcessKillTests {
    @Test func aConsumerKilledMidBatchLosesNothing() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: ConsumerProcess.binary.path), "build voicecore first (tools/test does)")
        let redis = try await TestRedis.connect()
        let prefix = TestRedis.prefix()
        let naming = StreamNaming(partitions: 16, prefix: prefix)
        let publisherConfiguration = PublisherConfiguration(source: "/test", naming: naming)
        let publisher = Publisher(connection: redis, configuration: publisherConfiguration)
        let tenant = Identifier.v7()
        let total = 20_000
        let batch = (0..<total).map { i in
            (EventEnvelope(TranscriptChunk(callID: CallID.derive(tenant: tenant, provider: .twilio, providerCallID: "CA\(i % 500)"), sequence: i / 500, track: .inbound,
                                           text: "segment \(i)", isFinal: true, confidence: 0.9, startOffsetMs: 0, endOffsetMs: 1),
                           tenant: tenant, source: "/test"), StreamCategory.calls, MessageKind.event)
        }
        for result in await publisher.publish(batch: batch) { _ = try result.get() }
        let arguments = ["tail", "--redis-url", TestRedis.url, "--prefix", prefix, "--partitions", "16", "--group", "kill", "--consumer", "worker-1", "--batch-size", "1000"]

        // First run: killed with SIGKILL as soon as it has handled some entries of its first batch.
        let first = try ConsumerProcess(arguments: arguments)
        try await eventually("the first consumer has handled entries") { first.output.count >= 200 }
        kill(first.process.processIdentifier, SIGKILL)
        first.process.waitUntilExit()
        #expect(first.process.terminationReason == .uncaughtSignal)
        var pending = 0
        for stream in naming.streams(.calls, kind: .event) { pending += try await redis.execute(.xpending(stream, group: "kill")).count }
        #expect(pending > 0, "the kill should land mid-batch, with delivered entries unacknowledged")

        // Second run, same consumer name: its unacknowledged entries come back first, then the rest.
        let second = try ConsumerProcess(arguments: arguments)
        try await eventually("every entry has been handled by one run or the other", within: .seconds(60)) {
            first.entries.union(second.entries).count == total
        }
        try await eventually("nothing is left pending") {
            var pending = 0
            for stream in naming.streams(.calls, kind: .event) { pending += try await redis.execute(.xpending(stream, group: "kill")).count }
            return pending == 0
        }
        kill(second.process.processIdentifier, SIGTERM)
        second.process.waitUntilExit()
        #expect(second.process.terminationStatus == 0, "SIGTERM is a graceful shutdown")
        #expect(first.entries.union(second.entries).count == total)
        _ = try await redis.execute(.del(naming.streams(.calls, kind: .event)))
    }
}
