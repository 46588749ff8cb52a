import Foundation
import VoiceCoreExecutors

/// wrk, Debian's HTTP load generator, as the HTTP benchmarks run it.
enum Wrk {
    static let path = "/usr/bin/wrk"

    /// Refuses to start a benchmark without wrk, saying how to install it.
    static func requireInstalled() throws {
        guard FileManager.default.isExecutableFile(atPath: path) else { throw BenchmarkFailure("wrk is not installed: apt-get install -y wrk") }
    }

    /// Runs wrk with `arguments` and returns what it printed.
    static func run(_ arguments: [String]) async throws -> String {
        // wrk runs for seconds: wait for it on a thread of its own, not on the cooperative pool.
        try await runBlocking("vc-wrk") {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: path)
            process.arguments = arguments
            let pipe = Pipe()
            process.standardOutput = pipe
            try process.run()
            let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            return output
        }
    }
}
