import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import Testing
import VoiceCoreEvents
import VoiceCorePostgres
import VoiceCoreProjections
import VoiceCoreRedis
import VoiceCoreServices
import VoiceCoreTestSupport

/// `voicecore consume`, `project` and `up` as processes, watched the way an orchestrator and
/// Prometheus watch them.
@Suite("Probes of the long-running commands, as processes", .serialized)
struct ProbeCommandTests {
    typealias Child = UpCommandTests.Child

    /// The answer to a GET: status, content type, body; nil when nothing answers.
    struct Answer {
        var status: Int
        var contentType: String
        var body: String
    }

    static func get(_ url: String) async -> Answer? {
        guard let response = try? await HTTPClient.shared.execute(HTTPClientRequest(url: url), timeout: .seconds(5)),
              let body = try? await response.body.collect(upTo: 1 << 22) else { return nil }
        return Answer(status: Int(response.status.code), contentType: response.headers.first(name: "content-type") ?? "", body: String(buffer: body))
    }

    /// Polls `url` until `accept` takes the answer; throws with the last answer and the child's
    /// output after `limit`.
    @discardableResult
    static func poll(_ url: String, _ what: String, within limit: Duration = .seconds(60), of child: Child,
                     until accept: (Answer) -> Bool) async throws -> Answer {
        let deadline = ContinuousClock.now + limit
        var last: Answer?
        while ContinuousClock.now < deadline {
            if let answer = await get(url) {
                last = answer
                if accept(answer) { return answer }
            }
            guard child.process.isRunning else { break }
            try await Task.sleep(for: .milliseconds(200))
        }
        throw TestFailure("\(what): \(url) answered \(last.map { "\($0.status) \($0.body)" } ?? "nothing")\n\(child.text.suffix(3000))")
    }

    /// A migrated schema of its own; dropped by the returned closure.
    static func schema() async throws -> (databaseURL: String, drop: @Sendable () async -> Void) {
        let schema = "p_\(UUID().uuidString.prefix(8).lowercased())"
        let separator = TestServers.databaseURL.contains("?") ? "&" : "?"
        let databaseURL = TestServers.databaseURL + separator + "options=-c%20search_path%3D\(schema)"
        let admin = try await PostgresConnection.connect(try PostgresConfiguration(url: TestServers.databaseURL))
        try await admin.query("CREATE SCHEMA \(identifier: schema)")
        let db = try await PostgresConnection.connect(try PostgresConfiguration(url: databaseURL))
        _ = try await Migrator(connection: db, directory: TestServers.root.appendingPathComponent("database/migrations")).up()
        await db.close()
        return (databaseURL, { _ = try? await admin.query("DROP SCHEMA \(identifier: schema) CASCADE") })
    }

    static var masterKey: String { Data((0..<32).map { _ in UInt8.random(in: 0...255) }).base64EncodedString() }

    @Test("consume and project: /health 200; /ready 200 when caught up, 503 naming the consumer and the projection while their Redis is down, 200 once it is back; /metrics has lag, pending, dead letters and gap")
    func consumeAndProjectProbes() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: UpCommandTests.binary.path), "build voicecore first (tools/test does)")
        let redis = RestartableRedis()
        try await redis.start()
        defer { redis.kill() }
        let (databaseURL, drop) = try await Self.schema()
        defer { Task { await drop() } }
        let prefix = "probe"
        let environment = ["VOICECORE_MASTER_KEY": Self.masterKey, "REDIS_URL": redis.url, "DATABASE_URL": databaseURL]
        let consumePort = try UpCommandTests.freePort()
        let projectPort = try UpCommandTests.freePort()
        let consume = try Child(["consume", "billing", "--prefix", prefix, "--partitions", "2", "--instance", "probetest", "--probe-port", String(consumePort)],
                                environment: environment)
        // The port from the environment this time.
        let project = try Child(["project", "--prefix", prefix, "--partitions", "2", "--instance", "probetest", "--workers", "1"],
                                environment: environment.merging(["VOICECORE_PROBE_PORT": String(projectPort)]) { _, new in new })
        defer {
            kill(consume.process.processIdentifier, SIGKILL)
            kill(project.process.processIdentifier, SIGKILL)
        }
        let consumeURL = "http://127.0.0.1:\(consumePort)"
        let projectURL = "http://127.0.0.1:\(projectPort)"

        for (url, child) in [(consumeURL, consume), (projectURL, project)] {
            let health = try await Self.poll(url + "/health", "alive", of: child) { $0.status == 200 }
            #expect(health.body == #"{"status":"ok"}"#)
        }
        let consumeReady = try await Self.poll(consumeURL + "/ready", "consume ready", of: consume) { $0.status == 200 }
        #expect(consumeReady.body.contains(#"{"name":"consumer:billing","status":"ready"}"#), "\(consumeReady.body)")
        let projectReady = try await Self.poll(projectURL + "/ready", "project ready", of: project) { $0.status == 200 }
        for projection in StandardProjections.all.map(\.name) {
            #expect(projectReady.body.contains(#"{"name":"projector:\#(projection)","status":"ready"}"#), "\(projectReady.body)")
        }

        // An entry billing handles that cannot be decoded: dead-lettered at once.
        let naming = StreamNaming(partitions: 2, prefix: prefix)
        let stream = naming.streams(.calls, kind: .event)[0]
        let connection = try await RedisClient.connect(try RedisConfiguration(url: redis.url))
        _ = try await connection.send("XADD", .string(stream), "*", "type", .string(CallEnded.type), "data", "{not json")
        let deadLetters = "\(stream):dlq:billing"
        let metrics = try await Self.poll(consumeURL + "/metrics", "the stream collector's gauges", of: consume) { answer in
            answer.body.contains(#"voicecore_bus_dead_letters{stream="\#(deadLetters)"} 1"#)
        }
        #expect(metrics.contentType.hasPrefix("text/plain; version=0.0.4"))
        #expect(metrics.body.contains(#"voicecore_bus_group_lag{stream="\#(stream)",group="billing"} 0"#), "\(metrics.body)")
        #expect(metrics.body.contains(#"voicecore_bus_group_pending{stream="\#(stream)",group="billing"} 0"#), "\(metrics.body)")
        #expect(metrics.body.contains(#"voicecore_bus_group_oldest_pending_seconds{stream="\#(stream)",group="billing"}"#), "\(metrics.body)")
        #expect(metrics.body.contains(#"voicecore_bus_dead_lettered_total{group="billing"} 1"#), "\(metrics.body)")
        let projectMetrics = try await Self.poll(projectURL + "/metrics", "the projection gap", of: project) { answer in
            answer.body.contains(#"voicecore_projection_gap{projection="calls"}"#)
        }
        #expect(projectMetrics.body.contains(#"voicecore_projection_oldest_unprojected_seconds{projection="calls"}"#), "\(projectMetrics.body)")

        // Redis goes away: both still alive, neither ready, each saying who and why.
        redis.kill()
        let consumeDown = try await Self.poll(consumeURL + "/ready", "consume not ready", of: consume) { $0.status == 503 }
        #expect(consumeDown.contentType == "application/problem+json")
        #expect(consumeDown.body.contains(#""name":"consumer:billing""#) && consumeDown.body.contains(#""status":"not ready""#), "\(consumeDown.body)")
        #expect(consumeDown.body.contains("Redis"), "\(consumeDown.body)")
        let projectDown = try await Self.poll(projectURL + "/ready", "project not ready", of: project) { $0.status == 503 }
        #expect(projectDown.body.contains(#""name":"projector:calls""#) && projectDown.body.contains("Redis"), "\(projectDown.body)")
        #expect(await Self.get(consumeURL + "/health")?.status == 200)
        #expect(await Self.get(projectURL + "/health")?.status == 200)

        try await redis.start()
        try await Self.poll(consumeURL + "/ready", "consume ready again after Redis returned", of: consume) { $0.status == 200 }
        try await Self.poll(projectURL + "/ready", "project ready again after Redis returned", of: project) { $0.status == 200 }

        for child in [consume, project] {
            kill(child.process.processIdentifier, SIGTERM)
            let status = try await child.waitForExit(within: .seconds(20))
            #expect(status == 0, "stops cleanly on SIGTERM:\n\(child.text.suffix(2000))")
        }
    }

    @Test("up: the edge's /ready lists every consumer and projection, /metrics has their lag and gap; a bad probe port is refused at once")
    func upReadinessIncludesConsumersAndProjectors() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: UpCommandTests.binary.path), "build voicecore first (tools/test does)")
        let refused = try Child(["consume", "billing", "--probe-port", "70000"], environment: ["REDIS_URL": "redis://127.0.0.1:1"])
        #expect(try await refused.waitForExit(within: .seconds(30)).map { $0 != 0 } == true)
        #expect(refused.text.contains("--probe-port (or VOICECORE_PROBE_PORT) must be 0…65535"), "\(refused.text)")

        let (databaseURL, drop) = try await Self.schema()
        defer { Task { await drop() } }
        let prefix = "u\(UUID().uuidString.prefix(8).lowercased())"
        let port = try UpCommandTests.freePort()
        let up = try Child(["up", "--port", String(port), "--prefix", prefix, "--partitions", "2", "--instance", "probetest", "--projector-workers", "1",
                            "--migrations", TestServers.root.appendingPathComponent("database/migrations").path],
                           environment: ["VOICECORE_MASTER_KEY": Self.masterKey, "REDIS_URL": TestServers.redisURL, "DATABASE_URL": databaseURL,
                                         "VOICECORE_PUBLIC_URL": "", "VOICECORE_LOG_LEVEL": "warning"])
        defer {
            kill(up.process.processIdentifier, SIGKILL)
            Task {
                let redis = try await RedisClient.connect(try RedisConfiguration(url: TestServers.redisURL))
                if let keys = try? await redis.scanAll(match: "\(prefix):*"), !keys.isEmpty { _ = try? await redis.execute(.del(keys)) }
            }
        }
        let url = "http://127.0.0.1:\(port)"
        let ready = try await Self.poll(url + "/ready", "up ready", of: up) { $0.status == 200 }
        for name in ["edge"] + PlatformServices.all.map({ "consumer:\($0.name)" }) + StandardProjections.all.map({ "projector:\($0.name)" }) {
            #expect(ready.body.contains(#"{"name":"\#(name)","status":"ready"}"#), "\(name) in \(ready.body)")
        }
        let metrics = try await Self.poll(url + "/metrics", "consumer lag and projection gap", of: up) { answer in
            answer.body.contains(#"voicecore_bus_group_lag{stream="\#(prefix):"#) && answer.body.contains(#"voicecore_projection_gap{projection="calls"}"#)
        }
        #expect(metrics.body.contains("voicecore_bus_group_pending{"), "\(metrics.body.prefix(3000))")
        kill(up.process.processIdentifier, SIGTERM)
        let exit = try await up.waitForExit(within: .seconds(30))
        #expect(exit == 0, "\(up.text.suffix(2000))")
    }
}
