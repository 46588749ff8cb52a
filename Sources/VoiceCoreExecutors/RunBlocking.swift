/// Runs blocking work (waiting for a subprocess, reading a pipe to its end) on a thread of its own,
/// never on Swift's cooperative pool, and returns its result.
///
/// ```swift
/// let status = try await runBlocking { try process.run(); process.waitUntilExit(); return process.terminationStatus }
/// ```
public func runBlocking<Result: Sendable>(_ name: String = "vc-blocking", _ body: @escaping @Sendable () throws -> Result) async throws -> Result {
    let executor = DedicatedThreadExecutor(name: name)
    defer { executor.shutdown() }
    // A nonisolated closure runs on the preferred task executor: the dedicated thread.
    return try await withTaskExecutorPreference(executor) { try body() }
}
