import Foundation
import Synchronization
import Testing
import VoiceCoreEvents
import VoiceCoreExecutors
import VoiceCoreRedis
import VoiceCoreTime
@testable import VoiceCoreBus

@Suite("The documented team consumers run")
struct TeamConsumerTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// Runs one of `schemas/examples/` with `python`: its exit status, standard output and
    /// standard error. It runs for a while: waited for on a thread of its own, not the pool's.
    static func runExample(_ python: String, _ script: String, _ arguments: [String]) async throws -> (status: Int32, output: String, stderr: String) {
        try await runBlocking { () throws -> (status: Int32, output: String, stderr: String) in
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = [python, script] + arguments
            let pipe = Pipe()
            let errors = Pipe()
            process.standardOutput = pipe
            process.standardError = errors
            try process.run()
            let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            let stderr = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            return (process.terminationStatus, output, stderr)
        }
    }

    private func publishCalls(prefix: String, tenants: [Identifier], perTenant: Int) async throws -> [PublishedEntry] {
        let redis = try await TestRedis.connect()
        let publisher = Publisher(connection: redis, configuration: PublisherConfiguration(source: "/test", naming: StreamNaming(partitions: 16, prefix: prefix)))
        var published: [PublishedEntry] = []
        for tenant in tenants {
            for i in 0..<perTenant {
                let call = CallID.derive(tenant: tenant, provider: .twilio, providerCallID: "CA\(i)")
                published.append(try await publisher.publish(CallEnded(callID: call, endedAt: .now, status: .completed, durationSeconds: 30 + i, answered: true), tenant: tenant))
            }
        }
        return published
    }

    @Test func theSwiftExampleCountsCalls() async throws {
        let prefix = TestRedis.prefix()
        let tenants = [Identifier.v7(), Identifier.v7()]
        _ = try await publishCalls(prefix: prefix, tenants: tenants, perTenant: 7)
        let latest = Mutex<[Identifier: Int]>([:])
        let task = Task { try await runCallCounter(redisURL: TestRedis.url, prefix: prefix) { tenant, total in latest.withLock { $0[tenant] = total } } }
        try await eventually("both tenants have 7 calls") { latest.withLock { $0 } == [tenants[0]: 7, tenants[1]: 7] }
        task.cancel()
        _ = try? await task.value
        let redis = try await TestRedis.connect()
        _ = try await redis.execute(.del(StreamNaming(partitions: 16, prefix: prefix).streams(.calls, kind: .event)))
    }

    @Test func theSwiftExampleImportsTheBusAndTheEventsOnly() throws {
        let example = try String(contentsOf: Self.root.appendingPathComponent("Tests/VoiceCoreBusTests/TeamConsumerExample.swift"), encoding: .utf8)
        let ours = example.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { $0.hasPrefix("import") || $0.hasPrefix("@") && $0.contains("import") }
            .filter { $0.contains("VoiceCore") }
        #expect(ours == ["import VoiceCoreBus", "import VoiceCoreEvents"])
    }

    @Test func theBusGuideShowsTheCompiledSwiftExample() throws {
        let example = try String(contentsOf: Self.root.appendingPathComponent("Tests/VoiceCoreBusTests/TeamConsumerExample.swift"), encoding: .utf8)
        let guide = try String(contentsOf: Self.root.appendingPathComponent("docs/bus.md"), encoding: .utf8)
        func region(_ text: String) -> String? {
            guard let start = text.range(of: "// BEGIN team consumer example\n"), let end = text.range(of: "// END team consumer example") else { return nil }
            return String(text[start.upperBound..<end.lowerBound])
        }
        let code = try #require(region(example))
        #expect(region(guide) == code, "docs/bus.md's team consumer example differs from TeamConsumerExample.swift")
    }

    @Test func thePythonExampleReadsTheSameStreams() async throws {
        let python = ProcessInfo.processInfo.environment["VOICECORE_PYTHON"] ?? "python3"
        let prefix = TestRedis.prefix()
        let published = try await publishCalls(prefix: prefix, tenants: [Identifier.v7()], perTenant: 12)
        let script = Self.root.appendingPathComponent("schemas/examples/team_consumer.py").path
        let url = TestRedis.url
        let (status, output, stderr) = try await Self.runExample(python, script, ["--redis-url", url, "--prefix", prefix, "--group", "python", "--stop-after", "12"])
        #expect(status == 0, "team_consumer.py failed: \(stderr)")
        let ids = output.split(separator: "\n").compactMap { line in
            (try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])?["id"] as? String
        }
        #expect(Set(ids) == Set(published.map(\.eventID.description)))
        let redis = try await TestRedis.connect()
        _ = try await redis.execute(.del(StreamNaming(partitions: 16, prefix: prefix).streams(.calls, kind: .event)))
    }
}
