import Foundation
import Testing
@testable import VoiceCoreRedis

/// The Redis the tests use: `REDIS_URL` (set by `tools/test`), else the local test database.
enum TestRedis {
    static var url: String {
        ProcessInfo.processInfo.environment["REDIS_URL"] ?? "redis://127.0.0.1:16379/1"
    }

    static func configuration(commandTimeout: Duration = .seconds(10)) throws -> RedisConfiguration {
        var configuration = try RedisConfiguration(url: url)
        configuration.commandTimeout = commandTimeout
        return configuration
    }

    /// A connection, or a failure that says how to start the servers.
    static func connect(commandTimeout: Duration = .seconds(10)) async throws -> RedisConnection {
        do {
            return try await RedisConnection.connect(configuration(commandTimeout: commandTimeout))
        } catch {
            Issue.record("Redis is not reachable at \(url): \(error). Run the tests with `tools/test`, which starts it.")
            throw error
        }
    }

    /// A key no other test uses.
    static func key(_ name: String = #function) -> String {
        "test:\(name.prefix { $0 != "(" }):\(UUID().uuidString.prefix(8))"
    }
}

extension RedisConnection {
    /// Fields of an entry as text pairs, for assertions.
    func textFields(_ entry: StreamEntry) -> [String] {
        (entry.fields ?? []).flatMap { [$0.name, $0.string] }
    }
}
