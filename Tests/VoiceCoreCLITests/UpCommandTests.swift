import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import Testing
import VoiceCorePostgres
import VoiceCoreRedis
import VoiceCoreTestSupport

/// The README's first command, as processes: `voicecore up` on an empty deployment, then
/// `voicecore demo` against it, then SIGTERM.
@Suite("voicecore up and demo, as processes", .serialized)
struct UpCommandTests {
    static var binary: URL { VoiceCoreProcess.binary }

    /// The CLI as a process, its output collected into a file (read at the end).
    typealias Child = VoiceCoreProcess

    /// A port the child process can bind. Taken below Linux's ephemeral range (32768–60999):
    /// a port the kernel handed out for `bind(0)` and released could be given to another test's
    /// outgoing connection before the child binds it ("Address already in use").
    static func freePort() throws -> Int {
        for _ in 0..<50 {
            // Apart from the other suites' test ports, which start servers without such a check
            // (see EdgeTests.redisUnreachableAnswers503WithRetryAfter).
            let port = Int.random(in: 28_000..<32_000)
            let socket = Foundation.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            defer { close(socket) }
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            address.sin_port = in_port_t(UInt16(port).bigEndian)
            let bound = withUnsafePointer(to: &address) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
            }
            if bound { return port }
        }
        throw TestFailure("no free port between 28000 and 32000")
    }

    /// Runs a command line as a shell would (the demo prints it for one) and returns its standard output.
    static func shell(_ line: String) async throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", line]
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("voicecore-shell-\(UUID().uuidString)")
        FileManager.default.createFile(atPath: output.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: output) }
        process.standardOutput = try FileHandle(forWritingTo: output)
        try process.run()
        let deadline = ContinuousClock.now + .seconds(20)
        while process.isRunning {
            guard ContinuousClock.now < deadline else {
                process.terminate()
                throw TestFailure("`\(line)` did not finish within 20 s")
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        return try String(contentsOf: output, encoding: .utf8)
    }

    @Test("a prepared-statement count that is not a number stops up at once and says which variable and what it takes")
    func badPreparedStatementCountIsRefused() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.binary.path), "build voicecore first (tools/test does)")
        let up = try Child(["up", "--port", String(try Self.freePort())],
                           // Servers nobody listens on: refused before any connection, nothing is touched.
                           environment: ["VOICECORE_PG_PREPARED_STATEMENTS": "lots", "DATABASE_URL": "postgres://voicecore:x@127.0.0.1:1/none", "REDIS_URL": "redis://127.0.0.1:1",
                                         "VOICECORE_MASTER_KEY": Data(repeating: 7, count: 32).base64EncodedString()])
        let status = try await up.waitForExit(within: .seconds(30))
        #expect(status != nil && status != 0, "\(up.text)")
        #expect(up.text.contains("VOICECORE_PG_PREPARED_STATEMENTS must be a whole number, 0 or more (got \"lots\")"), "\(up.text)")
    }

    @Test("a trusted proxy that is not an IP address stops edge and up at once, saying what the option takes")
    func badTrustedProxyIsRefused() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.binary.path), "build voicecore first (tools/test does)")
        let environment = ["DATABASE_URL": "postgres://voicecore:x@127.0.0.1:1/none", "REDIS_URL": "redis://127.0.0.1:1",
                           "VOICECORE_MASTER_KEY": Data(repeating: 7, count: 32).base64EncodedString()]
        let edge = try Child(["edge", "--port", String(try Self.freePort()), "--trusted-proxy", "proxy.example.com"], environment: environment)
        #expect(try await edge.waitForExit(within: .seconds(30)).map { $0 != 0 } == true, "\(edge.text)")
        #expect(edge.text.contains("--trusted-proxy (or VOICECORE_TRUSTED_PROXIES) takes IP addresses such as 10.0.0.2, not 'proxy.example.com'"), "\(edge.text)")
        var fromEnvironment = environment
        fromEnvironment["VOICECORE_TRUSTED_PROXIES"] = "10.0.0.2, 10.0.0.300"
        let up = try Child(["up", "--port", String(try Self.freePort())], environment: fromEnvironment)
        #expect(try await up.waitForExit(within: .seconds(30)).map { $0 != 0 } == true, "\(up.text)")
        #expect(up.text.contains("not '10.0.0.300'"), "\(up.text)")
    }

    @Test("up provisions a demo tenant and runs everything; demo's call comes out as rows and its printed curl commands read it back; loadgen's calls come out as rows; SIGTERM stops it cleanly")
    func upAndDemo() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.binary.path), "build voicecore first (tools/test does)")
        let schema = "u_\(UUID().uuidString.prefix(8).lowercased())"
        let prefix = "u\(UUID().uuidString.prefix(8).lowercased())"
        let separator = TestServers.databaseURL.contains("?") ? "&" : "?"
        let databaseURL = TestServers.databaseURL + separator + "options=-c%20search_path%3D\(schema)"
        let admin = try await PostgresConnection.connect(try PostgresConfiguration(url: TestServers.databaseURL))
        try await admin.query("CREATE SCHEMA \(identifier: schema)")
        let redis = try await RedisConnection.connect(try RedisConfiguration(url: TestServers.redisURL))
        defer {
            Task {
                _ = try? await admin.query("DROP SCHEMA \(identifier: schema) CASCADE")
                if let keys = try? await redis.scanAll(match: "\(prefix):*"), !keys.isEmpty { _ = try? await redis.execute(.del(keys)) }
            }
        }
        let port = try Self.freePort()
        // Where up stores the demo tenant's API key, and demo reads it from (as tools/dev-env sets it).
        let keyFile = FileManager.default.temporaryDirectory.appendingPathComponent("voicecore-demo-key-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: keyFile) }
        let environment = [
            "VOICECORE_MASTER_KEY": Data((0..<32).map { _ in UInt8.random(in: 0...255) }).base64EncodedString(),
            "REDIS_URL": TestServers.redisURL, "DATABASE_URL": databaseURL, "VOICECORE_PUBLIC_URL": "", "VOICECORE_LOG_LEVEL": "warning",
            "VOICECORE_DEMO_API_KEY_FILE": keyFile.path, "VOICECORE_API_KEY": "",
        ]
        let up = try Child(["up", "--port", String(port), "--prefix", prefix, "--partitions", "4", "--instance", "uptest",
                            "--migrations", TestServers.root.appendingPathComponent("database/migrations").path], environment: environment)
        do {
            // Listening once /health answers.
            let deadline = ContinuousClock.now + .seconds(60)
            while true {
                if let response = try? await HTTPClient.shared.execute(HTTPClientRequest(url: "http://127.0.0.1:\(port)/health"), timeout: .seconds(2)),
                   response.status.code == 200 { break }
                guard ContinuousClock.now < deadline, up.process.isRunning else { throw TestFailure("voicecore up did not start:\n\(up.text)") }
                try await Task.sleep(for: .milliseconds(200))
            }
            #expect(up.text.contains("Demo tenant provisioned"), "\(up.text)")
            #expect(up.text.contains("/webhooks/twilio/"))

            let demo = try Child(["demo", "--edge-url", "http://127.0.0.1:\(port)"], environment: environment)
            let status = try await demo.waitForExit(within: .seconds(90))
            let output = demo.text
            #expect(status == 0, "\(output)")
            #expect(output.contains("POST status completed → 200"), "\(output)")
            #expect(!output.contains("Not every row arrived"), "\(output)")
            let lines = output.split(separator: "\n").map(String.init)
            // First the conversation over <Gather>, line by line: the greeting, the caller's turn,
            // and the receptionist's reply (over the bus) with what the call does next.
            #expect(output.contains("A conversation with the receptionist over Twilio <Gather>"), "\(output)")
            #expect(lines.contains("  caller says        Hi, I'd like to book an appointment for a cleaning."), "\(output)")
            #expect(lines.filter { $0.hasPrefix("  receptionist says  ") }.count >= 2, "the greeting and a reply:\n\(output)")
            #expect(lines.contains { $0.contains("action: continue (listens for turn 2)") }, "the receptionist answered turn 1:\n\(output)")
            #expect(lines.contains("  caller says        It's Dana Whitfield."), "the caller answered the receptionist's questions:\n\(output)")
            #expect(lines.contains { $0.contains("action: hang up") } && lines.contains("  (call over: hang up)"), "the caller said goodbye:\n\(output)")
            #expect(lines.contains { $0.contains("completed") && $0.contains("+14155550123") && $0.contains("21") }, "the call session")
            #expect(lines.contains { $0.contains("Maria Lopez") && $0.contains("+14155550199") && $0.contains("appointment") }, "the lead")
            #expect(lines.contains { $0.contains("call_minutes") && $0.contains("minute") }, "the billing")

            // The demo ends with the curl commands that read its call back with the tenant's API key
            // (the one up printed and stored), and they work.
            let stored = try String(contentsOf: keyFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(!stored.isEmpty && up.text.contains("API key            \(stored)"), "up stores the key it printed:\n\(up.text)")
            #expect(output.contains("Read it back through the tenant API (both answered 200):"), "\(output)")
            let curls = lines.map { $0.trimmingCharacters(in: .whitespaces) }.filter { $0.hasPrefix("curl ") }
            try #require(curls.count == 3, "three curl commands:\n\(output)")
            #expect(curls.allSatisfy { $0.contains("'Authorization: Bearer \(stored)'") }, "\(curls)")
            let callID = try #require(curls[1].firstMatch(of: /\/v1\/calls\/([0-9a-f-]{36})'/).map { String($0.1) }, "\(curls[1])")
            #expect(curls[0].hasSuffix("'http://127.0.0.1:\(port)/v1/calls?limit=5'"), "\(curls[0])")
            let list = try await Self.shell(curls[0])
            #expect(list.contains(#""items":["#) && list.contains(#""\#(callID)""#), "GET /v1/calls lists the demo call:\n\(list)")
            let detail = try await Self.shell(curls[1])
            #expect(detail.contains(#""\#(callID)""#) && detail.contains("Maria Lopez") && detail.contains("book an appointment"),
                    "GET /v1/calls/<id> is the call whole, its lead and transcript:\n\(detail)")
            // The live feed: a stream that stays open (curl stops it after 2 s), answered 200.
            let events = try await Self.shell(curls[2].replacingOccurrences(of: "   # ", with: " --max-time 2 -o /dev/null -w '%{http_code}' # "))
            #expect(events.hasPrefix("200"), "GET /v1/events answers 200 with the stream:\n\(events)\n\(curls[2])")

            // The load generator against the same edge: every webhook accepted, every segment and
            // call in the read models, latencies measured for each.
            let loadgen = try Child(["loadgen", "--calls", "6", "--rate", "6", "--call-seconds", "3", "--connections-to-edge", "2",
                                     "--edge-url", "http://127.0.0.1:\(port)"], environment: environment)
            let loadStatus = try await loadgen.waitForExit(within: .seconds(90))
            let load = loadgen.text
            #expect(loadStatus == 0, "\(load)")
            // 6 calls × (incoming call, in progress, 3 segments, completed).
            #expect(load.contains("sent 36 webhooks") && load.contains("36 accepted") && load.contains(", 0 failed"), "\(load)")
            #expect(load.contains("18 of 18 accepted segments, 6 of 6 completed calls; lost: 0"), "\(load)")
            #expect(load.contains("(18 samples)") && load.contains("(6 samples)"), "a latency for each segment and call start:\n\(load)")
            // Beside the figures, the share of the machine the run had (steal: a shared host's other guests).
            let shares = load.firstMatch(of: /machine CPU meanwhile: (\d+) % busy, (\d+) % idle, (\d+) % stolen by the hypervisor/)
                .map { [Int($0.1)!, Int($0.2)!, Int($0.3)!] }
            #expect(shares.map { (99...101).contains($0.reduce(0, +)) } == true, "the machine's CPU shares while loading, summing to 100 %:\n\(load)")
        } catch {
            kill(up.process.processIdentifier, SIGKILL)
            throw error
        }
        kill(up.process.processIdentifier, SIGTERM)
        let exit = try await up.waitForExit(within: .seconds(30))
        #expect(exit == 0, "voicecore up stops cleanly on SIGTERM:\n\(up.text.suffix(2000))")
    }
}
