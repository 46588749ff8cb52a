import Foundation

/// A Postgres cluster of the test's own, started by `tools/dev-env` on a port and data directory
/// of its own, that the test can stop with `-m immediate` (a crash: no checkpoint, clients cut
/// off) and start again on the same data.
public final class PrivatePostgres: @unchecked Sendable {
    public let port: Int
    private let directory: URL
    private let root: URL

    /// - Parameter root: the repository (where `tools/dev-env` is).
    public init(root: URL) {
        self.root = root
        port = Int.random(in: 17_100..<17_900)
        directory = URL(fileURLWithPath: "/tmp").appendingPathComponent("vc-pg-\(UUID().uuidString.prefix(8))")
    }

    /// `voicecore_test` on this server, as the test role.
    public var databaseURL: String { "postgres://voicecore:voicecore@127.0.0.1:\(port)/voicecore_test" }

    /// Starts the server (creating the cluster, role and databases the first time).
    public func start() throws {
        try devEnv("start", "postgres")
    }

    /// `pg_ctl stop -m immediate`: every backend killed at once, recovery from the WAL at the next start.
    public func stopImmediately() throws {
        try run("/usr/sbin/runuser", ["-u", "postgres", "--", Self.pgCtl, "-D", directory.appendingPathComponent("postgres/data").path, "-m", "immediate", "-w", "stop"])
    }

    deinit {
        try? run("/usr/sbin/runuser", ["-u", "postgres", "--", Self.pgCtl, "-D", directory.appendingPathComponent("postgres/data").path, "-m", "immediate", "-w", "stop"])
        try? FileManager.default.removeItem(at: directory)
    }

    private static var pgCtl: String {
        let candidates = (try? FileManager.default.contentsOfDirectory(atPath: "/usr/lib/postgresql"))?.sorted().reversed() ?? []
        for version in candidates where FileManager.default.isExecutableFile(atPath: "/usr/lib/postgresql/\(version)/bin/pg_ctl") {
            return "/usr/lib/postgresql/\(version)/bin/pg_ctl"
        }
        return "/usr/lib/postgresql/15/bin/pg_ctl"
    }

    private func devEnv(_ arguments: String...) throws {
        try run(root.appendingPathComponent("tools/dev-env").path, arguments,
                environment: ["VOICECORE_LOCAL_DIR": directory.path, "VOICECORE_POSTGRES_PORT": String(port)])
    }

    private func run(_ executable: String, _ arguments: [String], environment: [String: String] = [:]) throws {
        _ = try runToEnd(executable, arguments, environment: environment)
    }
}
