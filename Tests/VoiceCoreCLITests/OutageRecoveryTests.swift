import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import Testing
import VoiceCoreBus
import VoiceCoreEvents
import VoiceCoreProjections
import VoiceCoreServices
import VoiceCorePostgres
import VoiceCoreRedis
import VoiceCoreTenants
import VoiceCoreTestSupport

/// An operator's outage: the platform under load as separate processes (edge, every service, the
/// projector), then Redis SIGKILLed and started again on its AOF, or Postgres stopped with
/// `-m immediate` and started again. Nothing the edge acknowledged may be lost, nothing may be
/// dead-lettered because of the outage, billing must equal a fold of the archive, and every
/// process must carry on by itself and still stop on SIGTERM.
@Suite("The platform through Redis and Postgres restarts, as processes", .serialized)
struct OutageRecoveryTests {
    typealias Child = UpCommandTests.Child

    @Test func aRedisKilledUnderLoadLosesNoAcknowledgedWebhookAndDeadLettersNothing() async throws {
        let redisServer = RestartableRedis()
        try await redisServer.start()
        try await platformThroughOutage(redisURL: redisServer.url, databaseURL: TestServers.databaseURL) { _ in
            redisServer.kill()
            try await Task.sleep(for: .seconds(3))
            try await redisServer.start()
        }
    }

    @Test func aPostgresStoppedImmediatelyUnderLoadLosesNoAcknowledgedWebhookAndDeadLettersNothing() async throws {
        let postgres = PrivatePostgres(root: TestServers.root)
        try postgres.start()
        try await platformThroughOutage(redisURL: TestServers.redisURL, databaseURL: postgres.databaseURL) { _ in
            try postgres.stopImmediately()
            try await Task.sleep(for: .seconds(3))
            try postgres.start()
        }
    }

    @Test func servicesAndProjectorKilledAtRandomUnderLoadLoseAndDoubleNothing() async throws {
        try await platformThroughOutage(redisURL: TestServers.redisURL, databaseURL: TestServers.databaseURL) { processes in
            // Twelve SIGKILLs over about 8 s, each process started again at once (as a supervisor
            // would), mid-batch wherever they land.
            let victims = PlatformServices.all.map(\.name) + ["projector"]
            for _ in 0..<12 {
                try processes.restart(victims.randomElement() ?? "projector")
                try await Task.sleep(for: .milliseconds(Int.random(in: 300...1000)))
            }
        }
    }

    @Test func sigtermDuringARedisOutageStopsEveryConsumerWithinItsDrainBound() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: UpCommandTests.binary.path), "build voicecore first (tools/test does)")
        let redisServer = RestartableRedis()
        try await redisServer.start()
        let schema = "g_\(UUID().uuidString.prefix(8).lowercased())"
        let separator = TestServers.databaseURL.contains("?") ? "&" : "?"
        let databaseURL = TestServers.databaseURL + separator + "options=-c%20search_path%3D\(schema)"
        let admin = try await PostgresConnection.connect(try PostgresConfiguration(url: TestServers.databaseURL))
        try await admin.query("CREATE SCHEMA \(identifier: schema)")
        defer { Task { _ = try? await admin.query("DROP SCHEMA \(identifier: schema) CASCADE") } }
        _ = try await Migrator(connection: try await PostgresConnection.connect(try PostgresConfiguration(url: databaseURL)),
                               directory: TestServers.root.appendingPathComponent("database/migrations")).up()
        let environment = [
            "VOICECORE_MASTER_KEY": Data(repeating: 9, count: 32).base64EncodedString(), "REDIS_URL": redisServer.url,
            "DATABASE_URL": databaseURL, "VOICECORE_LOG_LEVEL": "warning",
        ]
        let processes = Processes(environment: environment)
        for service in PlatformServices.all.map(\.name) {
            try processes.start(service, ["consume", service, "--instance", "sigterm", "--prefix", "t\(UUID().uuidString.prefix(6).lowercased())", "--partitions", "2"])
        }
        defer { for entry in processes.children where entry.child.process.isRunning { kill(entry.child.process.processIdentifier, SIGKILL) } }
        // Running: each has created its groups.
        let redis = try await RedisClient.connect(try redisServer.configuration)
        let deadline = ContinuousClock.now + .seconds(30)
        while try await redis.scanAll(match: "*", type: "stream").count < 2 {
            guard ContinuousClock.now < deadline else {
                throw TestFailure("the consumers did not start:\n" + processes.children.map { "\($0.name): \($0.child.text.suffix(1500))" }.joined(separator: "\n"))
            }
            try await Task.sleep(for: .milliseconds(200))
        }
        redisServer.kill()
        try await Task.sleep(for: .seconds(2))
        for entry in processes.children { kill(entry.child.process.processIdentifier, SIGTERM) }
        for (name, _, child) in processes.children {
            let exit = try await child.waitForExit(within: .seconds(11))
            #expect(exit != nil, "\(name) stops within its drain bound while Redis is down:\n\(child.text.suffix(2000))")
        }
    }

    /// The load: 30 calls of 12 s in the suite; `tools/outage-drill` runs the same tests longer
    /// (`VOICECORE_DRILL_CALLS`, `VOICECORE_DRILL_CALL_SECONDS`).
    static let calls = ProcessInfo.processInfo.environment["VOICECORE_DRILL_CALLS"].flatMap { Int($0) }.map { max(6, $0) } ?? 30
    static let callSeconds = ProcessInfo.processInfo.environment["VOICECORE_DRILL_CALL_SECONDS"].flatMap { Int($0) }.map { max(6, $0) } ?? 12

    /// The platform's processes, by name, each restartable with its own arguments.
    final class Processes: @unchecked Sendable {
        private(set) var children: [(name: String, arguments: [String], child: Child)] = []
        let environment: [String: String]

        init(environment: [String: String]) {
            self.environment = environment
        }

        func start(_ name: String, _ arguments: [String]) throws {
            children.append((name, arguments, try Child(arguments, environment: environment)))
        }

        /// SIGKILL, then the same command again.
        func restart(_ name: String) throws {
            guard let index = children.firstIndex(where: { $0.name == name }) else { return }
            let old = children[index]
            kill(old.child.process.processIdentifier, SIGKILL)
            old.child.process.waitUntilExit()
            children[index] = (name, old.arguments, try Child(old.arguments, environment: environment))
        }
    }

    /// Runs the platform as processes under load, calls `outage` (which returns when the
    /// platform's servers answer again), and checks what must hold afterwards.
    private func platformThroughOutage(redisURL: String, databaseURL baseURL: String, outage: (Processes) async throws -> Void) async throws {
        try #require(FileManager.default.isExecutableFile(atPath: UpCommandTests.binary.path), "build voicecore first (tools/test does)")
        let prefix = "r\(UUID().uuidString.prefix(6).lowercased())"
        let naming = StreamNaming(partitions: 4, prefix: prefix)
        let schema = "r_\(UUID().uuidString.prefix(8).lowercased())"
        let separator = baseURL.contains("?") ? "&" : "?"
        let databaseURL = baseURL + separator + "options=-c%20search_path%3D\(schema)"
        let admin = try await PostgresConnection.connect(try PostgresConfiguration(url: baseURL))
        try await admin.query("CREATE SCHEMA \(identifier: schema)")
        defer { Task { _ = try? await admin.query("DROP SCHEMA \(identifier: schema) CASCADE") } }
        let db = try await PostgresConnection.connect(try PostgresConfiguration(url: databaseURL))
        _ = try await Migrator(connection: db, directory: TestServers.root.appendingPathComponent("database/migrations")).up()

        // A tenant with Twilio credentials, provisioned as `voicecore tenants add` does.
        let masterKey = (0..<32).map { _ in UInt8.random(in: 0...255) }
        let redis = try await RedisClient.connect(try RedisConfiguration(url: redisURL))
        let directory = TenantDirectory(connection: db, secrets: try SecretBox(masterKey: masterKey))
        let tenant = try await directory.provision(
            NewTenant(name: "Outage Dental", plan: .starter, twilioAccountSID: "AC" + String(repeating: "1", count: 32), twilioAuthToken: "tok_\(UUID().uuidString)"),
            publisher: Publisher(connection: redis, configuration: PublisherConfiguration(source: "/test", naming: naming))).tenant.id

        let port = try UpCommandTests.freePort()
        let environment = [
            "VOICECORE_MASTER_KEY": Data(masterKey).base64EncodedString(), "REDIS_URL": redisURL, "DATABASE_URL": databaseURL,
            "VOICECORE_PUBLIC_URL": "", "VOICECORE_LOG_LEVEL": "warning",
        ]
        let deployment = ["--prefix", prefix, "--partitions", "4"]
        let processes = Processes(environment: environment)
        try processes.start("edge", ["edge", "--port", String(port)] + deployment)
        for service in PlatformServices.all.map(\.name) {
            try processes.start(service, ["consume", service, "--instance", "outage"] + deployment)
        }
        try processes.start("projector", ["project", "--instance", "outage", "--workers", "1"] + deployment)
        defer { for entry in processes.children where entry.child.process.isRunning { kill(entry.child.process.processIdentifier, SIGKILL) } }

        let deadline = ContinuousClock.now + .seconds(60)
        while true {
            if let response = try? await HTTPClient.shared.execute(HTTPClientRequest(url: "http://127.0.0.1:\(port)/health"), timeout: .seconds(2)),
               response.status.code == 200 { break }
            guard ContinuousClock.now < deadline else { throw TestFailure("the edge did not start:\n\(processes.children[0].child.text)") }
            try await Task.sleep(for: .milliseconds(200))
        }

        // In the suite 30 calls of 12 s (a segment a second each) started over 6 s: about 470
        // webhooks over 18 s; the outage comes 6 s in. loadgen checks at the end that every segment and call the edge accepted is in the
        // read models.
        let loadgen = try Child(["loadgen", "--calls", String(Self.calls), "--rate", "5", "--call-seconds", String(Self.callSeconds), "--connections-to-edge", "4",
                                 "--drain-seconds", "90", "--tenant", tenant.description, "--edge-url", "http://127.0.0.1:\(port)"],
                                environment: environment)
        try await Task.sleep(for: .seconds(6))
        try await outage(processes)
        let restarted = ContinuousClock.now
        // This test's own connections met the dead socket once; the command after that reconnects.
        _ = try? await redis.send("PING")
        _ = try? await db.query("SELECT 1")

        // Every service reads again within seconds of Redis answering: its group's last-delivered
        // id passes what its stream held when Redis came back (new traffic keeps arriving).
        let watched = [naming.stream(.calls, kind: .command, partition: 0), naming.stream(.calls, kind: .event, partition: 0)]
        var heads: [String: StreamEntryID] = [:]
        for stream in watched { heads[stream] = try await redis.execute(.xrevrange(stream, count: 1)).first?.id ?? .zero }
        var recovered: [String: Duration] = [:]
        // The tenants service reads the tenants streams and the receptionist the conversation
        // turns, which this load does not play; both run on the same consumer-group runner.
        let groups = PlatformServices.all.map(\.name).filter { $0 != "tenants" && $0 != "receptionist" }
        while recovered.count < groups.count, ContinuousClock.now - restarted < .seconds(30) {
            for stream in watched {
                for info in (try? await redis.execute(.xinfoGroups(stream))) ?? []
                where groups.contains(info.name) && recovered[info.name] == nil && (info.lastDeliveredID.map { $0 > heads[stream] ?? .zero } ?? false) {
                    recovered[info.name] = ContinuousClock.now - restarted
                }
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        print("recovery after the server answered: \(recovered.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))")
        #expect(Set(recovered.keys) == Set(groups), "every service reads again after the restart: \(recovered)")
        #expect(recovered.values.allSatisfy { $0 < .seconds(5) }, "within 5 s of the server answering: \(recovered)")

        let status = try await loadgen.waitForExit(within: .seconds(240 + Self.calls / 5 + Self.callSeconds))
        let load = loadgen.text
        print(load)
        #expect(status == 0, "\(load)")
        // Every webhook the edge answered 2xx reached the read models.
        #expect(load.contains("lost: 0"), "\(load)")

        // Nothing was dead-lettered because of the outage.
        var deadLetters: [String: Int] = [:]
        for key in try await redis.scanAll(match: "\(prefix):*:dlq:*", type: "stream") { deadLetters[key] = try await redis.execute(.xlen(key)) }
        #expect(deadLetters.values.reduce(0, +) == 0, "dead letters: \(deadLetters)")
        let failures = try await db.query("SELECT count(*) AS n FROM projection_failures")[0].decode(Int.self, "n")
        #expect(failures == 0)

        // Billing equals an independent fold of the archive's ended calls (starter plan: per
        // started minute), once the billing projection has caught up.
        let fold: PostgresQuery = """
            SELECT count(*) AS calls, coalesce(sum((payload->>'duration_seconds')::int), 0) AS seconds,
                   coalesce(sum(ceil((payload->>'duration_seconds')::numeric / 60)), 0)::int AS minutes
            FROM event_log WHERE type = 'voicecore.call.ended' AND tenant_id = \(tenant.uuid)
            """
        let billed: PostgresQuery = """
            SELECT coalesce(sum(quantity) FILTER (WHERE meter = 'ai_requests'), 0)::int AS requests,
                   coalesce(sum(quantity) FILTER (WHERE meter = 'transcription_seconds'), 0)::int AS seconds,
                   coalesce(sum(quantity) FILTER (WHERE meter = 'call_minutes'), 0)::int AS minutes
            FROM billing_usage WHERE tenant_id = \(tenant.uuid)
            """
        var expected = (0, 0, 0), actual = (-1, -1, -1)
        let billingDeadline = ContinuousClock.now + .seconds(30)
        repeat {
            let f = try await db.query(fold)[0], b = try await db.query(billed)[0]
            expected = (try f.decode(Int.self, "calls"), try f.decode(Int.self, "seconds"), try f.decode(Int.self, "minutes"))
            actual = (try b.decode(Int.self, "requests"), try b.decode(Int.self, "seconds"), try b.decode(Int.self, "minutes"))
            if expected == actual { break }
            try await Task.sleep(for: .milliseconds(250))
        } while ContinuousClock.now < billingDeadline
        #expect(expected.0 >= Self.calls * 2 / 3, "most calls ended and were archived: \(expected)")
        // Every lead the CRM decided on is in the read model once.
        let leadsArchived = try await db.query("SELECT count(DISTINCT payload->>'lead_id') AS n FROM event_log WHERE type = 'voicecore.crm.lead-created' AND tenant_id = \(tenant.uuid)")[0].decode(Int.self, "n")
        let leads = try await db.query("SELECT count(*) AS n FROM leads WHERE tenant_id = \(tenant.uuid)")[0].decode(Int.self, "n")
        #expect(leads == leadsArchived, "leads \(leads) against the archive's \(leadsArchived)")
        #expect(actual == expected, "billing \(actual) against the archive's ended calls \(expected)")

        // SIGTERM stops every process within its drain bound.
        for entry in processes.children { kill(entry.child.process.processIdentifier, SIGTERM) }
        for (name, _, child) in processes.children {
            let exit = try await child.waitForExit(within: .seconds(12))
            #expect(exit == 0, "\(name) stops on SIGTERM:\n\(child.text.suffix(3000))")
        }
    }
}
