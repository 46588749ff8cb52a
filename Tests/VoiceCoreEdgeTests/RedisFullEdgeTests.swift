import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Testing
import VoiceCoreRedis
@testable import VoiceCoreEdge

/// A Redis at its `maxmemory` (with `noeviction`, as tools/dev-env and compose configure it)
/// refuses every write: the edge answers 503 with `Retry-After` and says the store is full, and
/// answers 2xx again once memory is available.
@Suite("The edge when Redis is full")
struct RedisFullEdgeTests {
    @Test func aFullRedisIsAnswered503WithRetryAfterAndAClearDetail() async throws {
        // A Redis of this test's own (ports 19000–19999, apart from the other suites'): its memory cap is changed.
        let port = Int.random(in: 19_000..<20_000)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("edge-full-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let server = Process()
        server.executableURL = URL(fileURLWithPath: "/usr/bin/redis-server")
        server.arguments = ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", directory.path,
                            "--maxmemory-policy", "noeviction"]
        server.standardOutput = FileHandle.nullDevice
        try server.run()
        defer { kill(server.processIdentifier, SIGKILL) }
        var made: EdgeFixture?
        for _ in 0..<50 where made == nil {
            made = try? await EdgeFixture(redisURL: "redis://127.0.0.1:\(port)")
            if made == nil { try await Task.sleep(for: .milliseconds(100)) }
        }
        let fixture = try #require(made)
        let admin = try await RedisConnection.connect(try RedisConfiguration(url: "redis://127.0.0.1:\(port)"))
        try await fixture.test { client in
            let first = try await client.post(fixture.twilio("status", fixture.statusCallback(callSid: "CA88888888888888888888888888888888", status: "ringing", sequence: 1)))
            #expect(first.status == .ok)
            // The cap below what Redis already uses: every write is refused with -OOM.
            _ = try await admin.send("CONFIG", "SET", "maxmemory", "1")
            let refused = try await client.post(fixture.twilio("status", fixture.statusCallback(callSid: "CA88888888888888888888888888888888", status: "completed", sequence: 2)))
            #expect(refused.status == .serviceUnavailable)
            #expect(refused.headers[.retryAfter] == "30")
            #expect(refused.headers[.contentType] == "application/problem+json")
            let detail = String(buffer: refused.body)
            #expect(detail.contains("full"), "\(detail)")
            _ = try await admin.send("CONFIG", "SET", "maxmemory", "0")
            let again = try await client.post(fixture.twilio("status", fixture.statusCallback(callSid: "CA88888888888888888888888888888888", status: "completed", sequence: 2)))
            #expect(again.status == .ok)
        }
        #expect(try await fixture.commands().count == 2)
        try await fixture.drop()
    }
}
