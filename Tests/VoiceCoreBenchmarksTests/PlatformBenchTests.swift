import Foundation
import Testing
@testable import VoiceCoreBenchmarks
import VoiceCoreTestSupport

/// `voicecore bench platform` run tiny, end to end, as a process: both sides searched, a ratio,
/// the half-rate run, and nothing of its own Redis servers left behind. No timing is asserted:
/// the p99 bound is set out of reach of a slow machine, so only loss and errors fail a step.
@Suite("voicecore bench platform, as a process", .serialized)
struct PlatformBenchTests {
    @Test func reportsBothSidesAndTheirRatioAndRemovesItsRedisServers() async throws {
        let port = Int.random(in: 18_200..<18_300)
        let bench = try VoiceCoreProcess(["bench", "platform", "--rounds", "1", "--start-rate", "20", "--max-rate", "40", "--step-seconds", "2",
                                          "--call-seconds", "1", "--bisect-steps", "1", "--half-rate-seconds", "2", "--p99-ms", "5000",
                                          "--drain-seconds", "30", "--partitions", "4", "--port", String(port),
                                          "--migrations", TestServers.root.appendingPathComponent("database/migrations").path],
                                         environment: ["REDIS_URL": TestServers.redisURL, "DATABASE_URL": TestServers.databaseURL])
        let status = try await bench.waitForExit(within: .seconds(300))
        let text = bench.text
        #expect(status == 0, "\(text)")

        // Each side found a rate with nothing lost, and the round prints their ratio.
        let round = text.split(separator: "\n").first { $0.hasPrefix("round 1: sustainable rate: edge alone ") }
        let pattern = /round 1: sustainable rate: edge alone ([0-9,]+) webhooks\/s, voicecore up ([0-9,]+) webhooks\/s; ratio ([0-9.]+)×/
        let match = try #require(round.flatMap { try? pattern.firstMatch(in: String($0)) }, "\(text)")
        #expect(Int(match.output.1.replacingOccurrences(of: ",", with: "")) ?? 0 > 0)
        #expect(Int(match.output.2.replacingOccurrences(of: ",", with: "")) ?? 0 > 0)
        #expect(Double(match.output.3) != nil)
        #expect(text.contains("median of 1 round(s): edge alone"))
        #expect(text.contains("at half the platform's sustainable rate"))
        #expect(text.contains("end to end (webhook accepted → its transcripts row committed)"))
        #expect(text.contains("voicecore up RSS: peak"))
        #expect(text.contains("CPU per accepted webhook"))
        #expect(!text.contains("FAILED"), "\(text)")

        // One Redis of its own per side and round, and one for the half-rate run: all gone.
        let servers = text.matches(of: /redis of its own on 127\.0\.0\.1:([0-9]+) in (\S+)/).map { (port: Int($0.output.1) ?? 0, directory: String($0.output.2)) }
        #expect(servers.count == 3, "\(text)")
        for server in servers {
            #expect(!FileManager.default.fileExists(atPath: server.directory), "\(server.directory) left behind")
            #expect(!EdgeBenchmark.accepts(port: server.port), "a redis-server still listens on \(server.port)")
        }
        #expect(!EdgeBenchmark.accepts(port: port), "the process under test still listens")
    }

    @Test func refusesAStartRateAboveTheMaximum() async throws {
        let bench = try VoiceCoreProcess(["bench", "platform", "--start-rate", "100", "--max-rate", "50"], environment: [:])
        let status = try await bench.waitForExit(within: .seconds(30))
        #expect(status != 0)
        #expect(bench.text.contains("--start-rate must be between 1 and --max-rate (50)"), "\(bench.text)")
    }
}
