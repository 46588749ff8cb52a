import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import Metrics
import NIOCore
import Prometheus
import ServiceLifecycle
import Synchronization
import Testing
import VoiceCoreBus
import VoiceCoreEvents
import VoiceCoreRedis
import VoiceCoreTestSupport
@testable import VoiceCoreEdge

/// The probe listener of `consume` and `project`, in process, with real consumer group runners
/// behind its readiness: what an orchestrator's probes see.
@Suite("Probes: /health, /ready and /metrics of a process", .serialized)
struct ProbeServerTests {
    let tenant = Identifier.v7()

    /// Polls until `condition` holds; throws (with `what`) after `limit`.
    private func eventually(_ what: String, within limit: Duration = .seconds(20), _ condition: () async throws -> Bool) async throws {
        let deadline = ContinuousClock.now + limit
        while ContinuousClock.now < deadline {
            if try await condition() { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw TestError("timed out waiting until \(what)")
    }

    private func chunk(_ call: Identifier, _ sequence: Int) -> TranscriptChunk {
        TranscriptChunk(callID: call, sequence: sequence, track: .inbound, text: "hello", isFinal: true, confidence: 0.9, startOffsetMs: 0, endOffsetMs: 1)
    }

    private func consumerConfiguration(_ naming: StreamNaming, group: String) -> ConsumerConfiguration {
        var configuration = ConsumerConfiguration(group: group, streams: naming.streams(.calls, kind: .event), consumer: "\(group)-1")
        configuration.block = .milliseconds(100)
        configuration.retryDelay = .milliseconds(5)
        return configuration
    }

    private func body(_ response: TestResponse) -> String { String(buffer: response.body) }

    @Test("/ready: 200 when the consumer is caught up, 503 naming it while its Redis is down, 200 again once Redis is back; /health stays 200")
    func readinessFollowsARedisOutage() async throws {
        let redisServer = privateRedis()
        try await redisServer.start()
        defer { Task { try? await redisServer.stop() } }
        let redis = try RedisConfiguration(url: redisServer.url)
        let naming = StreamNaming(partitions: 2, prefix: "probe")
        let handled = Mutex(0)
        var handlers = MessageHandlers()
        handlers.on(TranscriptChunk.self) { _, _ in handled.withLock { $0 += 1 } }
        let runner = ConsumerGroupRunner(redis: redis, configuration: consumerConfiguration(naming, group: "billing"), handlers: handlers)
        let readiness = ConsumerReadiness(runners: [runner], redis: redis, interval: .milliseconds(500))
        let probes = ProbeServer(configuration: ProbeConfiguration(port: 0), checks: readiness.checks, registry: nil)
        let group = ServiceGroup(services: [runner, readiness], logger: Logger(label: "test"))
        let running = Task { try await group.run() }
        defer { Task { await group.triggerGracefulShutdown(); _ = try? await running.value } }

        let publisher = Publisher(connection: try await RedisClient.connect(redis), configuration: PublisherConfiguration(source: "/test", naming: naming))
        for sequence in 0..<5 { try await publisher.publish(chunk(.v7(), sequence), tenant: tenant) }
        try await eventually("the consumer handled what was published") { handled.withLock { $0 } == 5 }

        try await Application(router: probes.router()).test(.router) { client in
            // Each answer is judged as it came: on a loaded machine the sampler may run late, and a
            // second request could find the sample stale.
            var readyType = "", readyBody = ""
            try await eventually("/ready answers 200") {
                let ready = try await client.execute(uri: "/ready", method: .get)
                (readyType, readyBody) = (ready.headers[.contentType] ?? "", body(ready))
                return ready.status == .ok
            }
            #expect(readyType == "application/json")
            #expect(readyBody.contains(#"{"name":"consumer:billing","status":"ready"}"#), "\(readyBody)")

            try await redisServer.stop()
            var downType = "", text = ""
            try await eventually("/ready answers 503 naming Redis while Redis is down") {
                let down = try await client.execute(uri: "/ready", method: .get)
                (downType, text) = (down.headers[.contentType] ?? "", body(down))
                return down.status == .serviceUnavailable && text.contains("Redis")
            }
            #expect(downType == "application/problem+json")
            #expect(text.contains(#""name":"consumer:billing""#) && text.contains(#""status":"not ready""#), "\(text)")
            #expect(text.contains("Redis"), "the reason names the dependency: \(text)")
            #expect(try await client.execute(uri: "/health", method: .get).status == .ok, "alive, though not ready")

            try await redisServer.start()
            try await eventually("/ready answers 200 again after Redis returns", within: .seconds(30)) {
                try await client.execute(uri: "/ready", method: .get).status == .ok
            }
        }
    }

    @Test("a consumer whose lag grows while its handler is stuck turns not ready after the stall limit, and ready once it handles again")
    func stalledConsumerIsNotReady() async throws {
        let redis = try RedisConfiguration(url: TestServers.redisURL)
        let naming = StreamNaming(partitions: 1, prefix: "p\(UUID().uuidString.prefix(8).lowercased())")
        let released = Mutex(false)
        var handlers = MessageHandlers()
        handlers.on(TranscriptChunk.self) { _, _ in
            // Stuck until the test lets go (a handler waiting on something that never answers).
            while !released.withLock({ $0 }) { try await Task.sleep(for: .milliseconds(20)) }
        }
        let runner = ConsumerGroupRunner(redis: redis, configuration: consumerConfiguration(naming, group: "crm"), handlers: handlers)
        let readiness = ConsumerReadiness(runners: [runner], redis: redis, interval: .milliseconds(100), stallLimit: .seconds(1))
        let check = try #require(readiness.checks.first)
        #expect(check.name == "consumer:crm")
        let group = ServiceGroup(services: [runner, readiness], logger: Logger(label: "test"))
        let running = Task { try await group.run() }
        let connection = try await RedisClient.connect(redis)
        defer {
            released.withLock { $0 = true }
            Task {
                await group.triggerGracefulShutdown()
                _ = try? await running.value
                _ = try? await connection.execute(.del(naming.streams(.calls, kind: .event)))
            }
        }
        let publisher = Publisher(connection: connection, configuration: PublisherConfiguration(source: "/test", naming: naming))
        let call = Identifier.v7()
        try await publisher.publish(chunk(call, 0), tenant: tenant)
        try await eventually("ready while nothing is behind") { await check.evaluate() == .ready }

        // Entries keep arriving behind the stuck one: the lag grows, nothing is handled.
        var sequence = 1
        // (Under a loaded machine the sampler may also run late and be reported stale: wait for
        // the stall itself.)
        var reason = ""
        try await eventually("not ready once the lag has grown for the stall limit") {
            try await publisher.publish(chunk(call, sequence), tenant: tenant)
            sequence += 1
            reason = await check.evaluate().reason ?? ""
            return reason.contains("backlog grew from")
        }
        #expect(reason.contains("backlog grew from") && reason.contains("processed nothing"), "\(reason)")
        #expect(runner.statistics.handled == 0)

        released.withLock { $0 = true }
        try await eventually("ready again once it handles") { await check.evaluate() == .ready }
        #expect(runner.statistics.handled > 0)
        // A sampler that stopped sampling (stuck on a dead connection) is no evidence of readiness.
        let later = readiness.readiness(of: runner, at: .now + .seconds(60))
        #expect(later.reason?.hasPrefix("its lag was last sampled 6") == true, "\(later)")
    }

    @Test("/metrics renders the process's registry: the stream collector's lag, pending and dead-letter gauges; no registry answers 404; unknown paths 404")
    func metricsAndHealth() async throws {
        let redis = try RedisConfiguration(url: TestServers.redisURL)
        let naming = StreamNaming(partitions: 1, prefix: "p\(UUID().uuidString.prefix(8).lowercased())")
        let connection = try await RedisClient.connect(redis)
        let publisher = Publisher(connection: connection, configuration: PublisherConfiguration(source: "/test", naming: naming))
        try await publisher.publish(chunk(.v7(), 0), tenant: tenant)
        let stream = naming.streams(.calls, kind: .event)[0]
        _ = try await connection.send("XGROUP", "CREATE", .string(stream), "billing", "0")
        let deadLetters = consumerConfiguration(naming, group: "billing").deadLetterStream(of: stream)
        _ = try await connection.send("XADD", .string(deadLetters), "*", "dlq.reason", "test")
        defer { Task { _ = try? await connection.execute(.del([stream, deadLetters])) } }

        let registry = PrometheusCollectorRegistry()
        let collector = StreamMetricsCollector(redis: redis, prefix: naming.prefix, factory: PrometheusMetricsFactory(registry: registry))
        try await collector.sample(StreamAdmin(connection: connection))
        let probes = ProbeServer(configuration: ProbeConfiguration(port: 0), checks: [], registry: registry)
        try await Application(router: probes.router()).test(.router) { client in
            let health = try await client.execute(uri: "/health", method: .get)
            #expect(health.status == .ok && body(health) == #"{"status":"ok"}"#)
            let metrics = try await client.execute(uri: "/metrics", method: .get)
            #expect(metrics.status == .ok)
            #expect(metrics.headers[.contentType]?.hasPrefix("text/plain; version=0.0.4") == true)
            let text = body(metrics)
            #expect(text.contains(#"voicecore_bus_group_lag{stream="\#(stream)",group="billing"} 1"#), "\(text)")
            #expect(text.contains(#"voicecore_bus_group_pending{stream="\#(stream)",group="billing"} 0"#), "\(text)")
            #expect(text.contains(#"voicecore_bus_dead_letters{stream="\#(deadLetters)"} 1"#), "\(text)")
            // No checks: ready (a process with nothing to wait for).
            #expect(try await client.execute(uri: "/ready", method: .get).status == .ok)
            #expect(try await client.execute(uri: "/nothing", method: .get).status == .notFound)
        }
        try await Application(router: ProbeServer(configuration: ProbeConfiguration(port: 0), checks: [], registry: nil).router()).test(.router) { client in
            let response = try await client.execute(uri: "/metrics", method: .get)
            #expect(response.status == .notFound)
        }
    }

    @Test("the edge's /ready includes the process's other checks (voicecore up): 503 problem+json naming the one that fails, 200 listing all")
    func edgeReadinessIncludesOtherChecks() async throws {
        let fixture = try await EdgeFixture()
        let failing = Mutex(true)
        var edge = fixture.edge
        edge.readinessChecks = [
            ReadinessCheck("consumer:calls") { .ready },
            ReadinessCheck("projector:billing") { failing.withLock { $0 } ? .notReady("its backlog grew from 1 to 9 entries while it processed nothing for 31 s") : .ready },
        ]
        try await Application(router: edge.router()).test(.router) { client in
            let down = try await client.execute(uri: "/ready", method: .get)
            #expect(down.status == .serviceUnavailable)
            #expect(down.headers[.contentType] == "application/problem+json")
            let text = body(down)
            #expect(text.contains(#""detail":"projector:billing: its backlog grew from 1 to 9 entries while it processed nothing for 31 s""#), "\(text)")
            #expect(text.contains(#"{"name":"edge","status":"ready"}"#) && text.contains(#"{"name":"consumer:calls","status":"ready"}"#), "\(text)")
            failing.withLock { $0 = false }
            let up = try await client.execute(uri: "/ready", method: .get)
            #expect(up.status == .ok)
            #expect(body(up).contains(#"{"name":"projector:billing","status":"ready"}"#), "\(body(up))")
        }
        try await fixture.drop()
    }
}
