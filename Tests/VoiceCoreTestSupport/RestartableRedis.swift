import Foundation
import VoiceCoreRedis

/// A server of the test's own did not start or stop.
public struct TestServerError: Error, CustomStringConvertible {
    public var description: String
}

/// A `redis-server` of the test's own, with AOF on (as deployed), that the test can SIGKILL and
/// start again on the same data and port.
public final class RestartableRedis: @unchecked Sendable {
    public let port: Int
    public let directory: URL
    private var process: Process?

    public init() {
        // Apart from the other suites' test ports and below the ephemeral range.
        port = Int.random(in: 15_000..<16_000)
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("vc-redis-\(UUID().uuidString.prefix(8))")
    }

    public var url: String { "redis://127.0.0.1:\(port)" }
    public var configuration: RedisConfiguration { get throws { try RedisConfiguration(url: url) } }

    /// Starts the server and waits until it serves (its AOF loaded).
    public func start() async throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let server = Process()
        server.executableURL = URL(fileURLWithPath: "/usr/bin/redis-server")
        server.arguments = ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes", "--appendfsync", "everysec",
                            "--dir", directory.path]
        server.standardOutput = FileHandle.nullDevice
        try server.run()
        process = server
        for _ in 0..<200 {
            if let connection = try? await RedisConnection.connect(try configuration), (try? await connection.send("PING")) != nil {
                await connection.close()
                return
            }
            try await Task.sleep(for: .milliseconds(25))
        }
        throw TestServerError(description: "redis-server on port \(port) did not start")
    }

    /// SIGKILL: no shutdown, no final AOF flush beyond what the server wrote before replying.
    public func kill() {
        guard let process else { return }
        Foundation.kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        self.process = nil
    }

    deinit {
        kill()
        try? FileManager.default.removeItem(at: directory)
    }
}

