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

    /// Whether the server keeps an AOF (as deployed; a restart then finds its data again).
    public let appendOnly: Bool
    /// More `redis-server` arguments (`--requirepass`, `--unixsocket`, …).
    public let arguments: [String]

    /// - Parameter ports: where the port is drawn from; suites that run at the same time use
    ///   ranges apart (the default is apart from the other suites' and below the ephemeral range).
    public init(ports: Range<Int> = 15_000..<16_000, appendOnly: Bool = true, arguments: [String] = []) {
        port = Int.random(in: ports)
        self.appendOnly = appendOnly
        self.arguments = arguments
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("vc-redis-\(UUID().uuidString.prefix(8))")
    }

    public var url: String { "redis://127.0.0.1:\(port)" }
    public var configuration: RedisConfiguration { get throws { try RedisConfiguration(url: url) } }

    /// Starts the server and waits until it serves (its AOF loaded).
    public func start() async throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let server = Process()
        server.executableURL = URL(fileURLWithPath: "/usr/bin/redis-server")
        server.arguments = ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--dir", directory.path]
            + (appendOnly ? ["--appendonly", "yes", "--appendfsync", "everysec"] : ["--appendonly", "no"]) + arguments
        server.standardOutput = FileHandle.nullDevice
        try server.run()
        process = server
        for _ in 0..<200 {
            if let connection = try? await RedisConnection.connect(try configuration) {
                defer { Task { await connection.close() } }
                do {
                    _ = try await connection.send("PING")
                    return
                } catch let error as RedisError where error.serverCode == "NOAUTH" {
                    return  // serving; the test's own connections authenticate
                } catch {}
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

    /// SIGKILL, then waits until the port refuses connections: an outage, not a shutdown.
    public func stop() async throws {
        kill()
        for _ in 0..<100 {
            if (try? await RedisConnection.connect(try configuration)) == nil { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw TestServerError(description: "redis-server on port \(port) still accepts connections")
    }

    deinit {
        kill()
        try? FileManager.default.removeItem(at: directory)
    }
}

