import Foundation
import Testing
@testable import VoiceCorePostgres

/// The Postgres the tests use: `DATABASE_URL` (set by `tools/test`), else the local test database.
enum TestPostgres {
    static var url: String {
        ProcessInfo.processInfo.environment["DATABASE_URL"] ?? "postgres://voicecore:voicecore@127.0.0.1:15432/voicecore_test"
    }

    static func connect() async throws -> PostgresConnection {
        do {
            return try await PostgresConnection.connect(PostgresConfiguration(url: url))
        } catch {
            Issue.record("Postgres is not reachable at \(PostgresConfiguration.redacted(url)): \(error). Run the tests with `tools/test`, which starts it.")
            throw error
        }
    }

    /// A table name no other test uses.
    static func table(_ name: String = #function) -> String {
        "t_\(name.prefix { $0 != "(" }.prefix(24).lowercased())_\(UUID().uuidString.prefix(8).lowercased())"
    }
}
