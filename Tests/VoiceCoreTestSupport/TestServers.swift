import Foundation

/// The servers `tools/dev-env` runs for the tests (`REDIS_URL`, `DATABASE_URL`) and the
/// repository's root (migrations, the `voicecore` binary under `.build/debug`).
public enum TestServers {
    public static var redisURL: String { ProcessInfo.processInfo.environment["REDIS_URL"] ?? "redis://127.0.0.1:16379/1" }
    public static var databaseURL: String { ProcessInfo.processInfo.environment["DATABASE_URL"] ?? "postgres://voicecore:voicecore@127.0.0.1:15432/voicecore_test" }
    public static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
}

/// A test's own failure (a wait that timed out, a server that did not start), with what happened.
public struct TestFailure: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
