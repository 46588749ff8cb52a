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

    /// Runs a program to its end with posix_spawn and waitpid. Not Foundation's `Process`: on
    /// Linux it waits for the output the child inherits, which the server `dev-env` starts keeps
    /// open, so it would never see the script end.
    private func run(_ executable: String, _ arguments: [String], environment: [String: String] = [:]) throws {
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("vc-run-\(UUID().uuidString)").path
        defer { unlink(log) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let merged = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let envp = merged.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { (argv + envp).forEach { free($0) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, executable, &actions, nil, argv, envp)
        guard spawned == 0 else { throw TestServerError(description: "cannot start \(executable): errno \(spawned)") }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let exited = status & 0x7f == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        guard exited == 0 else {
            let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            throw TestServerError(description: "\(executable) \(arguments.joined(separator: " ")) exited with \(exited): \(text)")
        }
    }
}
