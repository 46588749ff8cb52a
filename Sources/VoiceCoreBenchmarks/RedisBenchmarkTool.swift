import Foundation
import VoiceCoreExecutors

/// Runs Redis' own `redis-benchmark` on the same server, for the figures our benches print beside.
enum RedisBenchmarkTool {
    /// Requests per second for `arguments` (a command and its arguments), or `nil` when
    /// redis-benchmark is not installed or printed no rate.
    static func run(host: String, port: Int, clients: Int, pipeline: Int, requests: Int, database: Int = 0, password: String?, arguments: [String]) async throws -> Double? {
        // redis-benchmark runs for seconds: wait for it on a thread of its own, not the pool's.
        try await runBlocking {
            try runWaiting(host: host, port: port, clients: clients, pipeline: pipeline, requests: requests, database: database, password: password, arguments: arguments)
        }
    }

    private static func runWaiting(host: String, port: Int, clients: Int, pipeline: Int, requests: Int, database: Int, password: String?, arguments: [String]) throws -> Double? {
        guard let tool = ["/usr/bin/redis-benchmark", "/usr/local/bin/redis-benchmark"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else { return nil }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: tool)
        var options = ["-h", host, "-p", String(port), "-c", String(clients), "-P", String(pipeline), "-n", String(requests), "-q"]
        if database != 0 { options += ["--dbnum", String(database)] }
        process.arguments = options + arguments
        var environment = ProcessInfo.processInfo.environment
        if let password { environment["REDISCLI_AUTH"] = password }
        process.environment = environment
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        // -q prints `xadd …: 812345.67 requests per second, p50=…`; the last line has the total.
        guard let line = output.split(whereSeparator: { $0 == "\n" || $0 == "\r" }).last(where: { $0.contains("requests per second") }),
              let colon = line.range(of: ": ", options: .backwards),
              let rate = Double(line[colon.upperBound...].prefix { $0.isNumber || $0 == "." })
        else { return nil }
        return rate
    }
}
