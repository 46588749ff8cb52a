import Foundation
import Testing
import VoiceCoreBus
import VoiceCoreEvents
@testable import VoiceCoreProjections
import VoiceCorePostgres
import VoiceCoreSimulation

/// `voicecore project` run as a real process and killed with SIGKILL.
final class ProjectorProcess: @unchecked Sendable {
    let process = Process()

    static var binary: URL { TestSchema.root.appendingPathComponent(".build/debug/voicecore") }

    init(_ fixture: ProjectorFixture, instance: String = "crash", crashPoint: String? = nil) throws {
        process.executableURL = Self.binary
        process.arguments = [
            "project", "--redis-url", TestRedis.url, "--database-url", fixture.databaseURL, "--prefix", fixture.prefix,
            "--partitions", String(fixture.naming.partitions), "--instance", instance, "--batch-size", "20",
        ] + (crashPoint.map { ["--crash-point", $0] } ?? [])
        var environment = ProcessInfo.processInfo.environment
        environment["VOICECORE_LOG_LEVEL"] = "error"
        process.environment = environment
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
    }

    func kill() { Foundation.kill(process.processIdentifier, SIGKILL) }

    /// Waits for the process to end (off the cooperative pool) and returns how.
    func waitForExit(within limit: Duration = .seconds(60)) async throws -> (reason: Process.TerminationReason, status: Int32) {
        let deadline = ContinuousClock.now + limit
        while process.isRunning {
            if ContinuousClock.now > deadline {
                kill()
                Issue.record("the projector process did not exit in time")
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        return (process.terminationReason, process.terminationStatus)
    }
}

@Suite("Projector processes killed with SIGKILL", .serialized)
struct ProjectorCrashTests {
    @Test func killedBeforeCommitAfterCommitAndAtRandomTheTablesEqualAFoldOfTheArchive() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: ProjectorProcess.binary.path), "build voicecore first (tools/test does)")
        let fixture = try await ProjectorFixture(partitions: 4)
        var workload = CallWorkload(seed: 11, tenants: 3)
        try await fixture.publish(workload.provisioning())

        // Exact crash points of the commit protocol, each in a process of its own, each with new
        // traffic to work on.
        for point in ["before-commit:0", "before-commit:5", "after-commit:0", "after-commit:5"] {
            try await fixture.publish(workload.calls(25))
            let process = try ProjectorProcess(fixture, crashPoint: point)
            let exit = try await process.waitForExit()
            #expect(exit.reason == .uncaughtSignal && exit.status == SIGKILL, "\(point): the process was not killed at its crash point")
        }

        // Random kills while traffic keeps coming.
        let publishing = Task { [workload] in
            var workload = workload
            for _ in 0..<12 {
                try await fixture.publish(workload.calls(15))
                try await Task.sleep(for: .milliseconds(150))
            }
            return workload
        }
        for round in 0..<5 {
            let process = try ProjectorProcess(fixture, instance: round % 2 == 0 ? "crash" : "other")
            try await Task.sleep(for: .milliseconds(Int.random(in: 300...1200)))
            process.kill()
            _ = try await process.waitForExit()
        }
        workload = try await publishing.value

        // A last process, left alone until everything is projected, then stopped.
        let last = try ProjectorProcess(fixture)
        try await Task.sleep(for: .seconds(1))  // its signal handlers are installed
        try await fixture.publish(workload.calls(10))
        try await fixture.waitUntilCaughtUp(within: .seconds(90))
        last.process.terminate()
        let exit = try await last.waitForExit()
        #expect(exit.reason == .exit && exit.status == 0, "SIGTERM ends the projector gracefully")

        // Nothing lost: every published event is archived, once.
        let archived = Set(try await fixture.db.query("SELECT event_id FROM event_log").map { try $0.decode(Identifier.self, "event_id") })
        #expect(archived == Set(fixture.published.map(\.eventID)))
        // Nothing double counted: every table equals the fold of the archive.
        let expected = try await ReadModels.fold(eventLog: fixture.db)
        let actual = try await ReadModels.read(fixture.db)
        #expect(actual == expected, "\(actual.differences(from: expected))")
        #expect(try await fixture.db.query("SELECT count(*) AS n FROM projection_failures")[0].decode(Int.self, "n") == 0)
        try await fixture.drop()
    }
}
