import Foundation
import VoiceCoreEvents
import VoiceCoreExecutors
import VoiceCorePostgres
import VoiceCoreProjections
import VoiceCoreRedis
import VoiceCoreSimulation
import VoiceCoreTenants

/// A caller turn's latency through a real edge and receptionist (`voicecore bench turn`): signed
/// Twilio `<Gather>` callbacks, from the request to the TwiML reply leaving the edge, beside the
/// same edge's plain publish latency (signed status callbacks) in the same run.
///
/// The edge (`voicecore edge`) and the receptionist (`voicecore consume receptionist`, built-in
/// policy) run as processes of their own on streams of their own; wrk plays the callbacks. A turn
/// is the whole request/reply over the bus: the edge publishes `ReportCallerTurn`, the receptionist
/// reads it with a blocking `XREADGROUP`, decides and publishes `ReceptionistReplied`, the edge's
/// shared tail reads the reply and answers the waiting callback. A status callback is verified and
/// published, nothing more. The difference between the two is what the bus round trip adds.
///
/// Each concurrency level (wrk connections: calls waiting on a turn at once) alternates a status
/// phase and a gather phase `runs` times and reports each run and the medians. Every callback is
/// distinct (its own CallSid and turn; status callbacks their own CallSid and sequence number), so
/// each one is verified, published and, for a turn, decided: a repeated gather callback would be
/// answered from the edge's cache and measure nothing. The calls of a gather phase speak four
/// turns each (asking for an appointment, a name, a time, goodbye) in blocks of twice the
/// concurrency, so a call's next turn follows its answered one.
public struct TurnBenchmark: Sendable {
    /// The `voicecore` executable that runs the edge and the receptionist under test.
    public var executable: URL
    /// wrk connections: the calls waiting on a reply at once.
    public var concurrency: [Int]
    /// Alternating status and gather phases per concurrency level (the report gives their medians).
    public var runs: Int
    /// Seconds per phase.
    public var duration: Int
    /// Distinct signed callbacks prepared per phase (a phase that would need more repeats earlier
    /// ones: the report says so).
    public var requests: Int
    /// wrk threads.
    public var threads: Int
    /// Port for the edge under test.
    public var port: Int
    /// The migrations directory.
    public var migrations: String
    /// The edge's turn deadline (`--turn-deadline-ms`); nil: the edge's default.
    public var turnDeadlineMs: Int?
    /// How long each call waits after an answer before its next callback (a caller speaks between
    /// turns); 0 plays the callbacks back to back, which measures the saturated throughput's queue
    /// rather than a turn's round trip.
    public var thinkMs: Int
    /// Each pause drawn uniformly from half to one and a half ``thinkMs`` (callers speak for
    /// different times, so their turns arrive independently); false: exactly ``thinkMs``, which
    /// keeps every call in lockstep, so all of them send their next turn within a few
    /// milliseconds — a burst real callers do not make.
    public var jitter: Bool

    public init(executable: URL, concurrency: [Int] = [50, 500], runs: Int = 3, duration: Int = 10, requests: Int = 60_000, threads: Int = 2,
                port: Int = 18_097, migrations: String = "database/migrations", turnDeadlineMs: Int? = nil, thinkMs: Int = 500, jitter: Bool = true) {
        self.executable = executable
        self.concurrency = concurrency
        self.runs = max(1, runs)
        self.duration = max(1, duration)
        self.requests = max(1, requests)
        self.threads = max(1, threads)
        self.port = port
        self.migrations = migrations
        self.turnDeadlineMs = turnDeadlineMs
        self.thinkMs = max(0, thinkMs)
        self.jitter = jitter
    }

    public func run(on servers: BenchmarkServers) async throws {
        try Wrk.requireInstalled()
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/curl") else { throw BenchmarkFailure("curl is not installed: apt-get install -y curl") }
        let suffix = UUID().uuidString.prefix(8).lowercased()
        let schema = "bench_turn_\(suffix)"
        let prefix = "bench-turn-\(suffix)"
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("voicecore-bench-turn-\(suffix)")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: work) }
        let admin = try await PostgresConnection.connect(try servers.postgresConfiguration())
        try await admin.query("CREATE SCHEMA \(identifier: schema)")
        let redis = try await RedisClient.connect(try servers.redisConfiguration())
        do {
            try await bench(prefix: prefix, databaseURL: servers.databaseURL(searchPath: schema), work: work, servers: servers)
        } catch {
            try? await cleanup(admin: admin, schema: schema, prefix: prefix, redis: redis)
            throw error
        }
        try await cleanup(admin: admin, schema: schema, prefix: prefix, redis: redis)
    }

    private func bench(prefix: String, databaseURL: String, work: URL, servers: BenchmarkServers) async throws {
        let report = servers.report
        let db = try await PostgresConnection.connect(try PostgresConfiguration(url: databaseURL))
        _ = try await Migrator(connection: db, directory: URL(fileURLWithPath: migrations)).up()
        let masterKey = Data((0..<32).map { _ in UInt8.random(in: 0...255) }).base64EncodedString()
        let token = UUID().uuidString
        let directory = TenantDirectory(connection: db, secrets: try SecretBox(base64: masterKey))
        let tenant = try await directory.provision(NewTenant(name: "Bench", twilioAuthToken: token), publisher: nil).tenant.id
        await db.close()

        let base = "http://127.0.0.1:\(port)"
        var environment = ProcessInfo.processInfo.environment
        environment["VOICECORE_MASTER_KEY"] = masterKey
        environment["VOICECORE_PUBLIC_URL"] = base
        environment["VOICECORE_LOG_LEVEL"] = "warning"
        environment["VOICECORE_ADMIN_KEY"] = nil
        // The built-in policy: the figure is the bus's, not a model's.
        environment["VOICECORE_AI_BASE_URL"] = nil
        let connection = ["--prefix", prefix, "--redis-url", servers.redisURL, "--database-url", databaseURL]
        let edge = try start(["edge", "--port", String(port)] + connection + (turnDeadlineMs.map { ["--turn-deadline-ms", String($0)] } ?? []),
                             environment: environment)
        let receptionist: Process
        do {
            receptionist = try start(["consume", "receptionist", "--instance", "bench-turn"] + connection, environment: environment)
        } catch {
            await Self.stop(edge)
            throw error
        }
        do {
            let echo = try await RedisClient.connect(try servers.redisConfiguration())
            defer { Task { await echo.close() } }
            try await measureTurns(edge: edge, receptionist: receptionist, echoRedis: echo, naming: StreamNaming(prefix: prefix), tenant: tenant, token: token,
                                   base: base, work: work, report: report)
        } catch {
            await Self.stop(receptionist)
            await Self.stop(edge)
            throw error
        }
        await Self.stop(receptionist)
        await Self.stop(edge)
    }

    private func measureTurns(edge: Process, receptionist: Process, echoRedis: RedisClient, naming: StreamNaming, tenant: Identifier, token: String,
                              base: String, work: URL,
                         report: @Sendable (String) -> Void) async throws {
        var accepting = false
        for _ in 0..<150 where !accepting {
            try await Task.sleep(for: .milliseconds(100))
            guard edge.isRunning else { throw BenchmarkFailure("the edge exited (status \(edge.terminationStatus)): see its output above") }
            accepting = EdgeBenchmark.accepts(port: port)
        }
        guard accepting else { throw BenchmarkFailure("the edge did not come up on port \(port)") }
        let signer = TwilioRequestSigner(authToken: token)
        let calls = CallScript(tenant: tenant, base: base, signer: signer)
        try await waitForReplies(calls, receptionist: receptionist)
        report("edge pid \(edge.processIdentifier), receptionist pid \(receptionist.processIdentifier) (built-in policy); wrk -t\(threads), \(duration) s per phase, "
               + "\(formatRate(Double(requests))) distinct signed callbacks prepared per phase; each call waits \(thinkDescription) after an answer before its next callback; "
               + "latency from the callback to the TwiML reply (wrk's)")

        let script = work.appendingPathComponent("play.lua")
        try Self.luaScript(threads: threads, thinkMs: thinkMs, jitter: jitter).write(to: script, atomically: false, encoding: .utf8)
        var phase = 0
        for connections in concurrency {
            report("")
            report("\(connections) concurrent calls (wrk -c\(connections)):")
            // A short unmeasured warm-up of both routes at this concurrency (connections, caches).
            phase += 1
            _ = try await play(.status, phase: phase, connections: connections, seconds: 1, calls: calls, script: script, work: work)
            phase += 1
            _ = try await play(.gather, phase: phase, connections: connections, seconds: 1, calls: calls, script: script, work: work)
            var statuses: [PhaseResult] = []
            var turns: [PhaseResult] = []
            var echoes: [PhaseResult] = []
            for run in 1...runs {
                phase += 1
                let status = try await play(.status, phase: phase, connections: connections, seconds: duration, calls: calls, script: script, work: work)
                phase += 1
                let turn = try await play(.gather, phase: phase, connections: connections, seconds: duration, calls: calls, script: script, work: work)
                phase += 1
                let echo = try await playEcho(phase: phase, connections: connections, calls: calls, script: script, work: work,
                                              receptionist: receptionist, redis: echoRedis, naming: naming)
                statuses.append(status)
                turns.append(turn)
                echoes.append(echo)
                report("  run \(run)  status callback  \(status.line)")
                report("         gather turn      \(turn.line)")
                report("         echo turn        \(echo.line)")
                for warning in status.warnings + turn.warnings + echo.warnings { report("         ! " + warning) }
                if let cpu = turn.cpu { report("         gather phase " + cpu) }
            }
            let status50 = median(statuses.map(\.p50)), status99 = median(statuses.map(\.p99))
            let turn50 = median(turns.map(\.p50)), turn99 = median(turns.map(\.p99))
            let target = connections <= 50 ? 5.0 : 25.0
            let added99 = (turn99 - status99) / 1000
            let echo50 = median(echoes.map(\.p50)), echo99 = median(echoes.map(\.p99))
            report("  median of \(runs): status p50 \(Self.ms(status50)) p99 \(Self.ms(status99)) | turn p50 \(Self.ms(turn50)) p99 \(Self.ms(turn99))"
                   + " | echo turn p50 \(Self.ms(echo50)) p99 \(Self.ms(echo99))")
            report("  the bus round trip with the least a responder can do (echo) adds p50 \(Self.signedMs(echo50 - status50)), p99 \(Self.signedMs(echo99 - status99));"
                   + " the receptionist adds p50 \(Self.signedMs(turn50 - echo50)), p99 \(Self.signedMs(turn99 - echo99)) over the echo")
            report("  the bus round trip adds p50 \(Self.signedMs(turn50 - status50)), p99 \(Self.signedMs(turn99 - status99)) "
                   + "(target at \(connections <= 50 ? "50" : "500") calls: ≤ \(Int(target)) ms p99: \(added99 <= target ? "met" : "NOT met"))")
        }
    }

    // MARK: The callbacks

    enum Route: String { case status, gather }

    /// Builds the signed callbacks: status callbacks of distinct calls, and the four turns of a call.
    struct CallScript: Sendable {
        var tenant: Identifier
        var base: String
        var signer: TwilioRequestSigner

        static let turns = [
            "Hi, I'd like to book an appointment please.",
            "My name is Dana Whitfield.",
            "Tuesday morning would be great.",
            "No, that's all, thank you. Bye.",
        ]

        /// "path \t signature \t body" lines for wrk; `phase` keeps every phase's CallSids apart.
        func lines(_ route: Route, phase: Int, count: Int, connections: Int) -> String {
            var lines = ""
            lines.reserveCapacity(count * 560)
            switch route {
            case .status:
                let path = "/webhooks/twilio/\(tenant)/status"
                let statuses = ["initiated", "ringing", "in-progress", "completed"]
                for index in 0..<count {
                    let parameters: [(name: String, value: String)] = [
                        ("AccountSid", "AC0000000000000000000000000000beef"), ("ApiVersion", "2010-04-01"), ("CallSid", Self.callSid(phase, index / 4)),
                        ("CallStatus", statuses[index % 4]), ("Direction", "inbound"), ("From", "+14155550100"), ("To", "+14155550199"),
                        ("SequenceNumber", String(index % 4)), ("Timestamp", "Tue, 24 Nov 2026 10:00:00 +0000"), ("CallbackSource", "call-progress-events"),
                        ("CallDuration", index % 4 == 3 ? "61" : "0"),
                    ]
                    lines += "\(path)\t\(signer.signature(url: base + path, parameters: parameters))\t\(TwilioRequestSigner.formBody(parameters))\n"
                }
            case .gather:
                // Blocks of twice the concurrency: every call of a block says turn 1, then turn 2, …
                let block = max(1, 2 * connections)
                var index = 0
                var first = 0
                while index < count {
                    for turn in 1...Self.turns.count {
                        for call in first..<(first + block) where index < count {
                            let (path, signature, body) = gather(phase: phase, call: call, turn: turn)
                            lines += "\(path)\t\(signature)\t\(body)\n"
                            index += 1
                        }
                    }
                    first += block
                }
            }
            return lines
        }

        func gather(phase: Int, call: Int, turn: Int) -> (path: String, signature: String, body: String) {
            let path = "/webhooks/twilio/\(tenant)/gather?turn=\(turn)"
            let parameters: [(name: String, value: String)] = [
                ("AccountSid", "AC0000000000000000000000000000beef"), ("ApiVersion", "2010-04-01"), ("CallSid", Self.callSid(phase, call)),
                ("CallStatus", "in-progress"), ("Direction", "inbound"), ("From", "+14155550100"), ("To", "+14155550199"),
                ("SpeechResult", Self.turns[(turn - 1) % Self.turns.count]), ("Confidence", "0.92"), ("Language", "en-US"),
            ]
            return (path, signer.signature(url: base + path, parameters: parameters), TwilioRequestSigner.formBody(parameters))
        }

        /// A 34-character CallSid unique to the phase and the call.
        static func callSid(_ phase: Int, _ call: Int) -> String {
            "CA" + String(format: "%08x%024x", phase, call)
        }
    }

    /// One phase's figures as wrk measured them (latencies in microseconds).
    struct PhaseResult {
        var route: Route
        var p50: Double
        var p99: Double
        var requests: Int
        var seconds: Double
        var non2xx: Int
        var errors: Int
        var wrapped: Int
        var replies: [String: Int]
        var cpu: String?

        var line: String {
            var text = "p50 \(TurnBenchmark.ms(p50).leftPadded(8))  p99 \(TurnBenchmark.ms(p99).leftPadded(8))  \(formatRate(Double(requests) / max(seconds, 0.001)).leftPadded(6)) req/s"
            if route == .gather {
                let order = ["continue", "transfer", "voicemail", "hangup", "holding", "other"]
                text += "  replies: " + order.compactMap { name in replies[name].flatMap { $0 > 0 ? "\(name) \($0)" : nil } }.joined(separator: ", ")
            }
            return text
        }

        var warnings: [String] {
            var warnings: [String] = []
            if non2xx > 0 { warnings.append("\(route.rawValue): \(non2xx) responses were not 2xx") }
            if errors > 0 { warnings.append("\(route.rawValue): \(errors) socket errors or timeouts") }
            if wrapped > 0 { warnings.append("\(route.rawValue): the prepared callbacks ran out and were repeated (raise --requests): repeats measure the cache, not the bus") }
            if (replies["holding"] ?? 0) > 0 { warnings.append("gather: \(replies["holding"] ?? 0) turns missed the edge's deadline (the caller heard the holding line)") }
            if route == .gather, (replies["other"] ?? 0) > 0 { warnings.append("gather: \(replies["other"] ?? 0) replies were not TwiML the gather route answers") }
            return warnings
        }
    }

    private func play(_ route: Route, phase: Int, connections: Int, seconds: Int, calls: CallScript, script: URL, work: URL) async throws -> PhaseResult {
        let file = work.appendingPathComponent("requests.tsv")
        try calls.lines(route, phase: phase, count: requests, connections: connections).write(to: file, atomically: false, encoding: .utf8)
        let cpu = MachineCPU.now()
        let output = try await Wrk.run(["-t\(threads)", "-c\(connections)", "-d\(seconds)s", "--timeout", "10s", "-s", script.path,
                                         "http://127.0.0.1:\(port)", "--", file.path])
        let share = MachineCPU.share(since: cpu)
        var result = PhaseResult(route: route, p50: 0, p99: 0, requests: 0, seconds: 0, non2xx: 0, errors: 0, wrapped: 0, replies: [:], cpu: share)
        var measured = false
        for line in output.split(separator: "\n") {
            let words = line.split(separator: " ")
            guard let tag = words.first else { continue }
            let numbers = words.dropFirst().compactMap { Double($0) }
            switch tag {
            case "vc-latency" where numbers.count == 4:
                result.p50 = numbers[0]; result.p99 = numbers[1]; result.requests = Int(numbers[2]); result.seconds = numbers[3] / 1e6
                measured = true
            case "vc-errors" where numbers.count == 6:
                result.errors = Int(numbers[0] + numbers[1] + numbers[2] + numbers[4]); result.non2xx = Int(numbers[3]); result.wrapped = Int(numbers[5])
            case "vc-replies" where numbers.count == 6:
                for (name, value) in zip(["continue", "transfer", "voicemail", "hangup", "holding", "other"], numbers) { result.replies[name] = Int(value) }
            default: break
            }
        }
        guard measured, result.requests > 0 else { throw BenchmarkFailure("wrk produced no result:\n\(output)") }
        return result
    }

    /// A gather phase answered by ``TurnEcho`` instead of the receptionist: the receptionist is
    /// paused (SIGSTOP) meanwhile, then resumed and given time to answer what it missed (its
    /// replies to turns already answered are ignored by the edge), so the next phase starts with
    /// its group caught up.
    private func playEcho(phase: Int, connections: Int, calls: CallScript, script: URL, work: URL, receptionist: Process,
                          redis: RedisClient, naming: StreamNaming) async throws -> PhaseResult {
        kill(receptionist.processIdentifier, SIGSTOP)
        let stop = TurnEcho.Stop()
        let echo = TurnEcho(naming: naming, group: "bench-echo-\(phase)")
        let result: PhaseResult
        do {
            result = try await withThrowingTaskGroup(of: PhaseResult?.self) { group in
                group.addTask { _ = try await echo.run(redis: redis, until: stop); return nil }
                // The echo's group exists before the first turn is sent.
                try await Task.sleep(for: .milliseconds(300))
                let played = try await play(.gather, phase: phase, connections: connections, seconds: duration, calls: calls, script: script, work: work)
                stop.set()
                try await group.waitForAll()
                return played
            }
        } catch {
            kill(receptionist.processIdentifier, SIGCONT)
            throw error
        }
        kill(receptionist.processIdentifier, SIGCONT)
        try await waitUntilCaughtUp(group: "receptionist", streams: naming.streams(.conversations, kind: .command), redis: redis)
        return result
    }

    /// Waits (up to a minute) until `group` has nothing undelivered and nothing pending.
    private func waitUntilCaughtUp(group: String, streams: [String], redis: RedisClient) async throws {
        for _ in 0..<600 {
            var behind = 0
            for stream in streams {
                for info in try await redis.execute(.xinfoGroups(stream)) where info.name == group { behind += info.pending + (info.lag ?? 0) }
            }
            if behind == 0 { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw BenchmarkFailure("the receptionist did not catch up within a minute after the echo phase")
    }

    var thinkDescription: String {
        jitter && thinkMs > 1 ? "\(thinkMs / 2)–\(thinkMs * 3 / 2) ms (uniformly, each pause drawn anew)" : "\(thinkMs) ms (every call in lockstep)"
    }

    /// The pause wrk takes after each answer (its `delay` function): ``thinkMs``, drawn from half
    /// to one and a half of it with ``jitter``.
    static func delayFunction(thinkMs: Int, jitter: Bool) -> String {
        guard thinkMs > 0 else { return "" }
        guard jitter, thinkMs > 1 else { return "delay = function() return \(thinkMs) end" }
        return "delay = function() return math.random(\(thinkMs / 2), \(thinkMs * 3 / 2)) end"
    }

    /// The wrk script: loads its thread's share of the prepared callbacks, plays them in order, and
    /// counts the replies by the TwiML verb that decides what the call does next.
    static func luaScript(threads: Int, thinkMs: Int, jitter: Bool) -> String {
        """
        local counter = 0
        local all = {}
        setup = function(thread)
          thread:set("id", counter)
          counter = counter + 1
          table.insert(all, thread)
        end
        init = function(args)
          math.randomseed(os.time() * 64 + id)
          requests = {}
          local n, i = 0, 0
          for line in io.lines(args[1]) do
            if i % \(threads) == id then
              local p, s, b = line:match("([^\\t]*)\\t([^\\t]*)\\t(.*)")
              n = n + 1
              requests[n] = wrk.format("POST", p, {["Content-Type"] = "application/x-www-form-urlencoded", ["X-Twilio-Signature"] = s}, b)
            end
            i = i + 1
          end
          count, nextIndex = n, 1
          wrapped, r_continue, r_transfer, r_voicemail, r_hangup, r_holding, r_other = 0, 0, 0, 0, 0, 0, 0
        end
        request = function()
          local r = requests[nextIndex]
          nextIndex = nextIndex + 1
          if nextIndex > count then nextIndex = 1; wrapped = wrapped + 1 end
          return r
        end
        \(delayFunction(thinkMs: thinkMs, jitter: jitter))
        response = function(status, headers, body)
          if body:find("One moment", 1, true) then r_holding = r_holding + 1
          elseif body:find("<Dial", 1, true) then r_transfer = r_transfer + 1
          elseif body:find("<Record", 1, true) then r_voicemail = r_voicemail + 1
          elseif body:find("<Hangup", 1, true) then r_hangup = r_hangup + 1
          elseif body:find("<Gather", 1, true) then r_continue = r_continue + 1
          else r_other = r_other + 1 end
        end
        done = function(summary, latency, requests)
          local names = {"r_continue", "r_transfer", "r_voicemail", "r_hangup", "r_holding", "r_other", "wrapped"}
          local totals = {}
          for _, name in ipairs(names) do totals[name] = 0 end
          for _, thread in ipairs(all) do
            for _, name in ipairs(names) do totals[name] = totals[name] + (tonumber(thread:get(name)) or 0) end
          end
          io.write(string.format("vc-latency %d %d %d %d\\n", latency:percentile(50), latency:percentile(99), summary.requests, summary.duration))
          local e = summary.errors
          io.write(string.format("vc-errors %d %d %d %d %d %d\\n", e.connect, e.read, e.write, e.status, e.timeout, totals.wrapped))
          io.write(string.format("vc-replies %d %d %d %d %d %d\\n", totals.r_continue, totals.r_transfer, totals.r_voicemail, totals.r_hangup,
                                 totals.r_holding, totals.r_other))
        end
        """
    }

    // MARK: Processes

    private func start(_ arguments: [String], environment: [String: String]) throws -> Process {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        process.environment = environment
        try process.run()
        return process
    }

    /// SIGTERM, then SIGKILL after 10 s: the streams are deleted after, so nothing may still write.
    private static func stop(_ process: Process) async {
        guard process.isRunning else { return }
        process.terminate()
        for _ in 0..<200 where process.isRunning { try? await Task.sleep(for: .milliseconds(50)) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }

    /// Waits until a turn gets the receptionist's reply (its consumer group is reading), one
    /// probe call after another, up to a minute.
    private func waitForReplies(_ calls: CallScript, receptionist: Process) async throws {
        let deadline = ContinuousClock.now + .seconds(60)
        var probe = 0
        var last = ""
        while ContinuousClock.now < deadline {
            guard receptionist.isRunning else { throw BenchmarkFailure("the receptionist exited (status \(receptionist.terminationStatus)): see its output above") }
            probe += 1
            let (path, signature, body) = calls.gather(phase: 0, call: probe, turn: 1)
            let url = "http://127.0.0.1:\(port)" + path
            last = try await runBlocking("vc-curl") {
                let process = Process()
                process.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
                process.arguments = ["-sS", "--max-time", "10", "-w", "\\n%{http_code}", "-H", "Content-Type: application/x-www-form-urlencoded",
                                     "-H", "X-Twilio-Signature: \(signature)", "--data-raw", body, url]
                let pipe = Pipe()
                process.standardOutput = pipe
                process.standardError = pipe
                try process.run()
                let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
                process.waitUntilExit()
                return output
            }
            if last.hasSuffix("\n200"), last.contains("<Say"), !last.contains("One moment") { return }
            try await Task.sleep(for: .milliseconds(500))
        }
        throw BenchmarkFailure("no turn was answered by the receptionist within a minute; the edge's last answer:\n\(last)")
    }

    private func cleanup(admin: PostgresConnection, schema: String, prefix: String, redis: RedisClient) async throws {
        try await admin.query("DROP SCHEMA \(identifier: schema) CASCADE")
        let keys = try await redis.scanAll(match: "\(prefix):*")
        if !keys.isEmpty { _ = try await redis.execute(.del(keys)) }
    }

    // MARK: Figures

    private func median(_ values: [Double]) -> Double {
        let sorted = values.sorted()
        guard !sorted.isEmpty else { return 0 }
        return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
    }

    static func ms(_ microseconds: Double) -> String { String(format: "%.2f ms", microseconds / 1000) }

    static func signedMs(_ microseconds: Double) -> String { (microseconds >= 0 ? "+" : "") + ms(microseconds) }
}
