import Foundation

/// The `voicecore` CLI (`.build/debug/voicecore`, built by `tools/test`) as a child process, its
/// output (stdout and stderr) collected into a file the test reads at the end; stdin is empty,
/// as under CI.
public final class VoiceCoreProcess: @unchecked Sendable {
    public static var binary: URL { TestServers.root.appendingPathComponent(".build/debug/voicecore") }

    public let process = Process()
    public let output: URL

    public init(_ arguments: [String], environment: [String: String]) throws {
        output = FileManager.default.temporaryDirectory.appendingPathComponent("voicecore-\(UUID().uuidString).log")
        _ = FileManager.default.createFile(atPath: output.path, contents: nil)
        let handle = try FileHandle(forWritingTo: output)
        process.executableURL = Self.binary
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
        process.standardOutput = handle
        process.standardError = handle
        process.standardInput = FileHandle.nullDevice
        try process.run()
    }

    /// What the process printed so far.
    public var text: String { (try? String(contentsOf: output, encoding: .utf8)) ?? "" }

    /// Its exit status, or nil (after a SIGKILL) when it did not exit within `limit`.
    public func waitForExit(within limit: Duration) async throws -> Int32? {
        let deadline = ContinuousClock.now + limit
        while process.isRunning {
            guard ContinuousClock.now < deadline else {
                kill()
                return nil
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        return process.terminationStatus
    }

    /// SIGKILL (a crash, not a shutdown), then waits for the exit.
    public func kill() {
        guard process.isRunning else { return }
        Foundation.kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }
}
