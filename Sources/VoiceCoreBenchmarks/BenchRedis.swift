import Foundation
import Synchronization
import VoiceCoreSimulation
import VoiceCoreRedis

/// A `redis-server` of a benchmark's own: a free port, a scratch directory, no data but what the
/// benchmark writes, stopped (and its directory removed) when the benchmark ends, fails or is
/// interrupted.
///
/// Why: the development server (`tools/dev-env`) keeps whatever earlier runs and tests left, and
/// rewrites its AOF when it has doubled (a forked child takes a core from what is measured): on
/// 2026-12-04 runs that crossed a rewrite measured 25–45 % lower. This server persists as the
/// development one does (AOF on, `appendfsync everysec`, no RDB snapshots) but never rewrites its
/// AOF by itself (`auto-aof-rewrite-percentage 0`), and ``forkReport()`` says whether a fork
/// happened anyway (`total_forks` since the start, and `INFO persistence`'s rewrites and saves).
///
/// ```swift
/// let redis = try await BenchRedis.start()
/// defer { redis.stop() }
/// // … measure against redis.url …
/// print(await redis.forkReport())
/// ```
// @unchecked: `process` (Foundation's, not Sendable) is only signalled and waited for, once, by `stop()`.
public final class BenchRedis: @unchecked Sendable {
    /// What the server runs with (besides port, bind address and directory), as `CONFIG GET` reads it back.
    public static let settings: [(name: String, value: String)] = [
        ("appendonly", "yes"), ("appendfsync", "everysec"), ("auto-aof-rewrite-percentage", "0"), ("save", ""),
    ]

    public let port: Int
    /// The scratch directory (AOF, log); removed by ``stop()``.
    public let directory: URL
    public let processIdentifier: Int32
    private let process: Process
    private let forksAtStart: Int?
    private let stopped = Mutex(false)

    public var url: String { "redis://127.0.0.1:\(port)" }

    public var configuration: RedisConfiguration { get throws { try RedisConfiguration(url: url) } }

    private init(port: Int, directory: URL, process: Process, forksAtStart: Int?) {
        self.port = port
        self.directory = directory
        self.process = process
        processIdentifier = process.processIdentifier
        self.forksAtStart = forksAtStart
    }

    /// Starts a server on a free port and waits until it answers.
    /// - Parameter executable: `redis-server`, found on `PATH` unless a path is given.
    public static func start(executable: String? = nil) async throws -> BenchRedis {
        guard let server = executable ?? Self.onPath("redis-server") else {
            throw BenchmarkFailure("redis-server is not on PATH (apt-get install -y redis-server), or run with --shared-redis")
        }
        SignalCleanup.installOnce()
        var lastLog = ""
        // A free port can be taken between asking and binding: try again on another.
        for _ in 0..<5 {
            let port = try Self.freePort()
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("voicecore-bench-redis-\(UUID().uuidString.prefix(8).lowercased())")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            let log = directory.appendingPathComponent("redis.log")
            let process = Process()
            process.executableURL = URL(fileURLWithPath: server)
            process.arguments = ["--port", String(port), "--bind", "127.0.0.1", "--protected-mode", "yes", "--dir", directory.path,
                                 "--logfile", log.path, "--daemonize", "no"]
                + Self.settings.flatMap { ["--\($0.name)", $0.value] }
            process.standardInput = FileHandle.nullDevice
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            SignalCleanup.live.withLock { $0[process.processIdentifier] = directory.path }
            let configuration = try RedisConfiguration(url: "redis://127.0.0.1:\(port)")
            for _ in 0..<200 where process.isRunning {
                if let connection = try? await RedisConnection.connect(configuration) {
                    let info = try? await connection.execute(.info("stats"))
                    await connection.close()
                    if let info {
                        return BenchRedis(port: port, directory: directory, process: process, forksAtStart: MachineCPU.redisForks(info))
                    }
                }
                try await Task.sleep(for: .milliseconds(25))
            }
            lastLog = (try? String(contentsOf: log, encoding: .utf8)).map { String($0.suffix(2000)) } ?? ""
            Self.terminate(process, directory: directory)
        }
        throw BenchmarkFailure("the bench's own redis-server did not start:\n\(lastLog)")
    }

    /// Runs `body` with a server of its own, stopped afterwards (also when `body` throws), and
    /// reports where it runs and, at the end, whether it forked meanwhile.
    public static func with<Result: Sendable>(report: @escaping @Sendable (String) -> Void,
                                              _ body: (BenchRedis) async throws -> Result) async throws -> Result {
        let redis = try await start()
        report("redis: a server of this bench's own on 127.0.0.1:\(redis.port) (AOF on, appendfsync everysec, no automatic AOF rewrite, no RDB saves, empty; "
            + "--shared-redis uses REDIS_URL instead)")
        let result: Result
        do {
            result = try await body(redis)
        } catch {
            report(await redis.forkReport())
            redis.stop()
            throw error
        }
        report(await redis.forkReport())
        redis.stop()
        return result
    }

    /// Stops the server (SIGKILL: nothing in it is kept) and removes its directory. Idempotent.
    public func stop() {
        guard !stopped.withLock({ let was = $0; $0 = true; return was }) else { return }
        Self.terminate(process, directory: directory)
    }

    /// "redis: no fork during the run …", or a warning naming how many forks happened and why.
    public func forkReport() async -> String {
        guard let connection = try? await RedisConnection.connect(try configuration) else {
            return "redis: the bench's own server did not answer at the end: whether it forked is unknown"
        }
        let stats = try? await connection.execute(.info("stats"))
        let persistence = (try? await connection.execute(.info("persistence"))) ?? ""
        await connection.close()
        let forks = stats.flatMap(MachineCPU.redisForks)
        func field(_ name: String) -> String { Self.infoField(name, in: persistence) ?? "?" }
        let detail = "total_forks \(forksAtStart.map(String.init) ?? "?") → \(forks.map(String.init) ?? "?"); aof_rewrites \(field("aof_rewrites")), "
            + "rdb_saves \(field("rdb_saves")), aof_rewrite_in_progress \(field("aof_rewrite_in_progress")), rdb_bgsave_in_progress \(field("rdb_bgsave_in_progress"))"
        guard let forks, let forksAtStart else { return "redis: could not read total_forks of the bench's own server (\(detail))" }
        if forks > forksAtStart {
            return "redis: the bench's own server FORKED \(forks - forksAtStart) time(s) during the run (\(detail)): a child process took a core, so figures are low"
        }
        return "redis: no fork during the run (\(detail))"
    }

    /// A field of an `INFO` section's text (`name:value` lines).
    static func infoField(_ name: String, in info: String) -> String? {
        info.split(whereSeparator: \.isNewline).first { $0.hasPrefix(name + ":") }
            .map { $0.dropFirst(name.count + 1).trimmingCharacters(in: .whitespaces) }
    }

    private static func terminate(_ process: Process, directory: URL) {
        let pid = process.processIdentifier
        if process.isRunning {
            kill(pid, SIGKILL)
            process.waitUntilExit()
        }
        SignalCleanup.live.withLock { _ = $0.removeValue(forKey: pid) }
        try? FileManager.default.removeItem(at: directory)
    }

    /// A port nothing listens on now (the kernel's choice for port 0).
    private static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw BenchmarkFailure("no socket for a free port: errno \(errno)") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        guard bound else { throw BenchmarkFailure("no free port on 127.0.0.1: errno \(errno)") }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    static func onPath(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        return path.split(separator: ":").map { "\($0)/\(name)" }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }
}

/// Stops every bench-owned `redis-server` and removes its directory when the bench is
/// interrupted (SIGINT, SIGTERM, SIGHUP), then ends the process as the signal would have.
///
/// Ctrl-C reaches the server too (same process group), but a SIGTERM sent to the bench alone
/// would leave it running, and neither removes its scratch directory.
private enum SignalCleanup {
    /// Live servers: process id → scratch directory.
    static let live = Mutex<[Int32: String]>([:])
    private static let sources = Mutex<[any DispatchSourceSignal]>([])

    static func installOnce() {
        sources.withLock { sources in
            guard sources.isEmpty else { return }
            for signalNumber in [SIGINT, SIGTERM, SIGHUP] {
                signal(signalNumber, SIG_IGN)
                let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: .global())
                source.setEventHandler {
                    let servers = live.withLock { live in
                        defer { live.removeAll() }
                        return live
                    }
                    for (pid, directory) in servers {
                        kill(pid, SIGKILL)
                        try? FileManager.default.removeItem(atPath: directory)
                    }
                    signal(signalNumber, SIG_DFL)
                    raise(signalNumber)
                }
                source.resume()
                sources.append(source)
            }
        }
    }
}

extension BenchmarkServers {
    /// Runs `body` on these servers with Redis replaced by a ``BenchRedis`` of the run's own
    /// (started before, stopped after, its fork report at the end), or on these servers
    /// unchanged when `sharedRedis` (`--shared-redis`: the URL the bench was given).
    public func withBenchRedis(shared sharedRedis: Bool, _ body: (BenchmarkServers) async throws -> Void) async throws {
        guard !sharedRedis else { return try await body(self) }
        let servers = self
        try await BenchRedis.with(report: report) { redis in
            let url = redis.url
            try await body(BenchmarkServers(redisURL: url, databaseURL: servers.databaseURL, redis: { try RedisConfiguration(url: url) },
                                            postgres: { try servers.postgresConfiguration() }, report: servers.report))
        }
    }
}
