import Foundation
import Testing
import VoiceCoreBenchmarks
import VoiceCoreRedis

@Suite("A bench's own Redis")
struct BenchRedisTests {
    @Test func startsEmptyWithTheAskedPersistenceAndIsGoneAfterStop() async throws {
        let redis = try await BenchRedis.start()
        let connection = try await RedisConnection.connect(try redis.configuration)
        for (name, expected) in [("appendonly", "yes"), ("appendfsync", "everysec"), ("auto-aof-rewrite-percentage", "0"), ("save", "")] {
            let reply = try await connection.send("CONFIG", "GET", .string(name))
            #expect(reply.array?.map(\.string) == [name, expected], "CONFIG GET \(name)")
        }
        // No development data: nothing in it but what the bench writes.
        #expect(try await connection.send("DBSIZE").int == 0)
        #expect(try await connection.execute(.info("persistence")).contains("aof_enabled:1"))
        #expect(FileManager.default.fileExists(atPath: redis.directory.path))
        #expect(redis.port != 16379)
        #expect(await redis.forkReport().hasPrefix("redis: no fork during the run"))
        await connection.close()

        redis.stop()
        #expect(!FileManager.default.fileExists(atPath: redis.directory.path))
        #expect(kill(redis.processIdentifier, 0) != 0, "the redis-server process is gone")
        await #expect(throws: (any Error).self) { _ = try await RedisConnection.connect(try redis.configuration) }
        redis.stop()  // twice is harmless
    }

    @Test func aForkDuringTheRunIsReported() async throws {
        let redis = try await BenchRedis.start()
        defer { redis.stop() }
        let connection = try await RedisConnection.connect(try redis.configuration)
        _ = try await connection.send("SET", "bench:key", "value")
        _ = try await connection.send("BGREWRITEAOF")
        for _ in 0..<200 {
            let persistence = try await connection.execute(.info("persistence"))
            if persistence.contains("aof_rewrite_in_progress:0") && persistence.contains("aof_rewrite_scheduled:0") { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        await connection.close()
        let report = await redis.forkReport()
        #expect(report.contains("FORKED 1 time(s)"), "\(report)")
    }
}
