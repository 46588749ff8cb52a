import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import Testing
import VoiceCoreEvents
import VoiceCoreExecutors
import VoiceCoreRedis
import VoiceCoreTestSupport
import VoiceCoreTime
@testable import VoiceCoreBus

/// A private Redis Cluster (3 masters, 3 replicas) made by `tools/dev-env cluster start` on six
/// ports of its own, with its data in a temporary directory; each test that changes the cluster
/// (reshard, failover) gets its own.
struct TestCluster {
    let port: Int
    let directory: URL

    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static func start(port: Int) async throws -> TestCluster {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("vc-cluster-\(port)-\(UUID().uuidString.prefix(8))")
        let cluster = TestCluster(port: port, directory: directory)
        try await cluster.devEnv("stop")  // nodes left over from an interrupted run
        let output = try await cluster.devEnv("start")
        #expect(output.contains("redis-cluster://127.0.0.1:\(port)"))
        return cluster
    }

    var url: String { "redis-cluster://" + (0..<6).map { "127.0.0.1:\(port + $0)" }.joined(separator: ",") }

    /// Runs `body` against a fresh cluster and stops it afterwards, also when `body` throws.
    static func with(port: Int, _ body: (TestCluster) async throws -> Void) async throws {
        let cluster = try await start(port: port)
        do {
            try await body(cluster)
        } catch {
            try? await cluster.stop()
            throw error
        }
        try await cluster.stop()
    }

    var ports: [Int] { (0..<6).map { port + $0 } }

    func configuration() throws -> RedisConfiguration {
        var configuration = try RedisConfiguration(url: url)
        configuration.clusterRetryTimeout = .seconds(30)
        configuration.commandTimeout = .seconds(5)
        return configuration
    }

    func stop() async throws {
        _ = try await devEnv("stop")
        try? FileManager.default.removeItem(at: directory)
    }

    @discardableResult
    func devEnv(_ command: String) async throws -> String {
        let environment = ["VOICECORE_CLUSTER_PORT": "\(port)", "VOICECORE_LOCAL_DIR": directory.path]
        return try await runBlocking { try Self.run(Self.root.appendingPathComponent("tools/dev-env").path, ["cluster", command], environment: environment) }
    }

    func cli(_ arguments: [String]) async throws -> String {
        try await runBlocking { try Self.run("/usr/bin/redis-cli", arguments) }
    }

    /// The node id and port of each master, from `CLUSTER NODES`.
    func masters() async throws -> [(id: String, port: Int)] {
        let nodes = try await cli(["-p", "\(port)", "cluster", "nodes"])
        return nodes.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ")
            guard fields.count > 2, fields[2].contains("master"), !fields[2].contains("fail"),
                  let address = fields[1].split(separator: "@").first, let port = Int(address.split(separator: ":").last ?? "") else { return nil }
            return (String(fields[0]), port)
        }.sorted { $0.port < $1.port }
    }

    func pid(of port: Int) throws -> pid_t {
        let text = try String(contentsOf: directory.appendingPathComponent("cluster/\(port)/redis.pid"), encoding: .utf8)
        return pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
    }

    /// Runs a program to its end (see `runToEnd`: not Foundation's `Process`).
    static func run(_ executable: String, _ arguments: [String], environment: [String: String] = [:]) throws -> String {
        try runToEnd(executable, arguments, environment: environment)
    }
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Publishes events continuously, as a telephony edge would: each publish that fails is tried
/// again (at-least-once) until it is acknowledged. Records what was acknowledged.
final class SteadyPublisher: Sendable {
    let acknowledged = Mutex<Set<String>>([])
    let failures = Mutex(0)
    private let stopping = Mutex(false)

    func run(_ publisher: Publisher, tenant: Identifier, calls: [Identifier], count: Int, every pause: Duration) async {
        for sequence in 0..<count {
            if stopping.withLock({ $0 }) { return }
            let call = calls[sequence % calls.count]
            let event = TranscriptChunk(callID: call, sequence: sequence, track: .inbound, text: "chunk \(sequence)", isFinal: true,
                                        confidence: 0.9, startOffsetMs: 0, endOffsetMs: 1)
            let envelope = EventEnvelope(event, tenant: tenant, source: "/test")
            while !stopping.withLock({ $0 }) {
                do {
                    _ = try await publisher.publish(envelope, category: TranscriptChunk.category, kind: TranscriptChunk.kind)
                    acknowledged.withLock { _ = $0.insert(envelope.id.description) }
                    break
                } catch {
                    failures.withLock { $0 += 1 }
                    try? await Task.sleep(for: .milliseconds(50))
                }
            }
            try? await Task.sleep(for: pause)
        }
    }

    func stop() { stopping.withLock { $0 = true } }
}

/// Every event id a consumer handled, with how often.
final class HandledEvents: Sendable {
    let counts = Mutex<[String: Int]>([:])
    func record(_ id: String) { counts.withLock { $0[id, default: 0] += 1 } }
    var ids: Set<String> { Set(counts.withLock { $0.keys }) }
}

@Suite("The bus on a real Redis Cluster (3 masters, 3 replicas on loopback)", .serialized, .timeLimit(.minutes(3)))
struct ClusterTests {
    let tenant = Identifier.v7()

    private func consumer(_ cluster: TestCluster, naming: StreamNaming, handled: HandledEvents, name: String = "c1") throws -> (ConsumerGroupRunner, ServiceGroup, Task<Void, any Error>) {
        var configuration = ConsumerConfiguration(group: "cluster-test", streams: naming.streams(.calls, kind: .event), consumer: name)
        configuration.block = .milliseconds(200)
        configuration.leaseTTL = .seconds(3)
        configuration.claimIdle = .seconds(2)
        configuration.claimInterval = .milliseconds(500)
        var handlers = MessageHandlers()
        handlers.on(TranscriptChunk.self) { message, _ in handled.record(message.envelope.id.description) }
        let runner = ConsumerGroupRunner(redis: try cluster.configuration(), configuration: configuration, handlers: handlers)
        let group = ServiceGroup(services: [runner], logger: Logger(label: "test"))
        return (runner, group, Task { try await group.run() })
    }

    /// A cluster client, 16 partitions, and a plain publisher on that client.
    private func connect(_ cluster: TestCluster) async throws -> (RedisClient, StreamNaming, Publisher) {
        let redis = try await RedisClient.connect(try cluster.configuration())
        let naming = StreamNaming(partitions: 16, prefix: "vc")
        return (redis, naming, Publisher(connection: redis, configuration: PublisherConfiguration(source: "/test", naming: naming, replicaAcknowledgement: nil)))
    }

    /// Every entry of the partitions' call streams, as event ids (read from the masters that own them).
    private func storedEventIDs(_ redis: RedisClient, _ naming: StreamNaming) async throws -> [String] {
        var ids: [String] = []
        for stream in naming.streams(.calls, kind: .event) {
            for entry in try await redis.execute(.xrange(stream)) {
                if let id = entry.fields?.first(where: { $0.name == "id" }) { ids.append(String(decoding: id.value, as: UTF8.self)) }
            }
        }
        return ids
    }

    @Test func slotsCommandKeysAndRoutingAgreeWithTheCluster() async throws {
        try await TestCluster.with(port: 17101) { cluster in
            let redis = try await RedisClient.connect(try cluster.configuration())
            #expect(redis.isCluster)
            #expect(redis.masters.count == 3)

            // Our CRC16 slot function equals the server's CLUSTER KEYSLOT, hash tags included.
            let naming = StreamNaming(partitions: 16, prefix: "vc")
            var keys = naming.streams(.calls, kind: .event) + naming.streams(.calls, kind: .command)
            keys += ["foo", "{user1000}.following", "{user1000}.followers", "{}{x}", "a{}b", "{{x}}", "é{ü}", "vc:{p07}:calls:dlq:billing", "123456789"]
            for key in keys {
                let server = try await redis.execute(.raw("CLUSTER", "KEYSLOT", .string(key)))
                #expect(server.int == HashSlot.of(key), "slot of \(key)")
            }
            // The 16 partitions spread over all three masters.
            let owners = Set(naming.streams(.calls, kind: .event).compactMap { redis.master(of: $0) })
            #expect(owners.count == 3)

            // Single-key commands reach the owner wherever it is; a pipeline spans the nodes.
            let writes = keys.map { RESPCommand("SET", .string("test:\($0)"), .string($0)) }
            let replies = try await redis.send(writes)
            #expect(replies.allSatisfy { $0 == .simpleString("OK") })
            for key in keys { #expect(try await redis.execute(.raw("GET", .string("test:\(key)"))) == .bulkString(Array(key.utf8))) }

            // Keys of different slots in one command are refused before anything is sent.
            let a = "vc:{p00}:calls", b = "vc:{p01}:calls"
            _ = try await redis.execute(.raw("SET", .string("\(a):x"), "1"))
            _ = try await redis.execute(.raw("SET", .string("\(b):x"), "1"))
            let error = await #expect(throws: RedisError.self) { try await redis.execute(.del(["\(a):x", "\(b):x"])) }
            #expect(error?.kind == .crossSlot)
            #expect(error?.message.contains("\(a):x (slot \(HashSlot.of(a)))") == true)
            #expect(error?.message.contains("\(b):x (slot \(HashSlot.of(b)))") == true)
            #expect(try await redis.execute(.raw("EXISTS", .string("\(a):x"))).int == 1, "nothing was sent")
            // Keys sharing a hash tag are fine in one command.
            #expect(try await redis.execute(.del(["\(a):x", "\(a):y"])) == 1)

            // A slot being migrated: the old owner answers ASK for a key it does not have, and the
            // client asks the importing node (after ASKING), for one command and in a pipeline.
            let migrating = "{ask-test}:k"
            let slot = HashSlot.of(migrating)
            let masters = try await cluster.masters()
            guard case .tcp(_, let ownerPort) = try #require(redis.master(of: migrating)) else { throw TestFailure("not a TCP node") }
            let owner = try #require(masters.first { $0.port == ownerPort })
            let importer = try #require(masters.first { $0.port != ownerPort })
            _ = try await cluster.cli(["-p", "\(importer.port)", "cluster", "setslot", "\(slot)", "importing", owner.id])
            _ = try await cluster.cli(["-p", "\(owner.port)", "cluster", "setslot", "\(slot)", "migrating", importer.id])
            _ = try await redis.execute(.raw("SET", .string(migrating), "asked"))
            let piped = try await redis.send([RESPCommand("SET", .string("\(migrating)2"), "piped"), RESPCommand("GET", .string(migrating))])
            #expect(piped == [.simpleString("OK"), .bulkString(Array("asked".utf8))])
            for port in [importer.port, owner.port] {
                _ = try await cluster.cli(["-p", "\(port)", "cluster", "setslot", "\(slot)", "node", importer.id])
            }
            // The slot is the importer's now (the client learns it from MOVED), with both keys there.
            #expect(try await redis.execute(.raw("GET", .string("\(migrating)2"))) == .bulkString(Array("piped".utf8)))
            #expect(redis.master(of: migrating) == .tcp(host: "127.0.0.1", port: importer.port))
            #expect(try await cluster.cli(["-p", "\(importer.port)", "cluster", "countkeysinslot", "\(slot)"]).trimmingCharacters(in: .whitespacesAndNewlines) == "2")

            // SCAN covers every master.
            let scanned = try await redis.scanAll(match: "test:*")
            #expect(scanned.count == keys.count)

            // A single server is detected as such; redis-cluster:// refuses it with a clear message.
            let single = try await RedisClient.connect(try RedisConfiguration(url: TestRedis.url))
            #expect(!single.isCluster)
            let refused = await #expect(throws: RedisError.self) {
                var configuration = try RedisConfiguration(url: "redis-cluster://\(try RedisConfiguration(url: TestRedis.url).endpoint)")
                configuration.clusterRetryTimeout = .seconds(1)
                _ = try await RedisClient.connect(configuration)
            }
            #expect(refused?.kind == .invalidConfiguration)
            #expect(refused?.message.contains("not in cluster mode") == true)
            await redis.close()
        }
    }

    @Test func publishAndConsumeAcrossThreeMasters() async throws {
        try await TestCluster.with(port: 17111) { cluster in
            let (redis, naming, publisher) = try await connect(cluster)

            // Two consumers of one group share the partitions; each call's chunks arrive in order.
            let order = Mutex<[Identifier: [Int]]>([:])
            let handled = HandledEvents()
            var consumers: [(ConsumerGroupRunner, ServiceGroup, Task<Void, any Error>)] = []
            for name in ["c1", "c2"] {
                var configuration = ConsumerConfiguration(group: "cluster-test", streams: naming.streams(.calls, kind: .event), consumer: name)
                configuration.block = .milliseconds(200)
                configuration.leaseTTL = .seconds(2)
                var handlers = MessageHandlers()
                handlers.on(TranscriptChunk.self) { message, chunk in
                    handled.record(message.envelope.id.description)
                    order.withLock { $0[chunk.callID, default: []].append(chunk.sequence) }
                }
                let runner = ConsumerGroupRunner(redis: try cluster.configuration(), configuration: configuration, handlers: handlers)
                let group = ServiceGroup(services: [runner], logger: Logger(label: "test"))
                consumers.append((runner, group, Task { try await group.run() }))
            }
            // Both members hold leases before anything is published, so both get work.
            try await eventually("the two consumers share the partitions", within: .seconds(20)) {
                var holders: Set<String> = []
                for stream in naming.streams(.calls, kind: .event) {
                    if let holder = try await redis.execute(.raw("GET", .string("\(stream):lease:cluster-test"))).string { holders.insert(holder) }
                }
                return holders == ["c1", "c2"]
            }

            let calls = (0..<40).map { _ in Identifier.v7() }
            var batch: [(envelope: EventEnvelope, category: StreamCategory, kind: MessageKind)] = []
            for (index, call) in calls.enumerated() {
                for sequence in 0..<25 {
                    let chunk = TranscriptChunk(callID: call, sequence: sequence, track: .inbound, text: "call \(index) chunk \(sequence)",
                                                isFinal: true, confidence: 0.9, startOffsetMs: sequence, endOffsetMs: sequence + 1)
                    batch.append((EventEnvelope(chunk, tenant: tenant, source: "/test"), TranscriptChunk.category, TranscriptChunk.kind))
                }
            }
            let results = await publisher.publish(batch: batch)
            let published = try results.map { try $0.get() }
            #expect(published.count == 1000)
            #expect(Set(published.compactMap { redis.master(of: $0.stream) }).count == 3, "the entries landed on all three masters")

            // Deduplicated publishing: the script's keys share the stream's slot.
            let envelope = EventEnvelope(CallAnswered(callID: calls[0], answeredAt: .now), tenant: tenant, source: "/test")
            let first = try await publisher.publish(envelope, category: .calls, kind: .event, deduplicationKey: "answered")
            let again = try await publisher.publish(envelope, category: .calls, kind: .event, deduplicationKey: "answered")
            #expect(!first.isDuplicate && again.isDuplicate && again.entry == first.entry)

            try await eventually("every chunk is handled", within: .seconds(30)) { handled.ids.count == 1000 }
            for (_, group, task) in consumers {
                await group.triggerGracefulShutdown()
                try await task.value
            }
            #expect(handled.ids == Set(published.map(\.eventID.description)))
            #expect(handled.counts.withLock { $0.values.allSatisfy { $0 == 1 } }, "no redelivery without a failure")
            for (call, sequences) in order.withLock({ $0 }) {
                #expect(sequences == Array(0..<25), "call \(call) in order")
            }
            #expect(consumers.allSatisfy { $0.0.statistics.handled > 0 }, "both consumers took partitions")
            // Nothing is left pending: every entry was acknowledged on its own node.
            for stream in naming.streams(.calls, kind: .event) {
                let summary = try await redis.execute(.raw("XPENDING", .string(stream), "cluster-test"))
                #expect(summary.array?.first?.int == 0, "pending in \(stream)")
            }
            await redis.close()
        }
    }

    @Test func aReshardUnderTrafficLosesNothing() async throws {
        try await TestCluster.with(port: 17121) { cluster in
            let (redis, naming, publisher) = try await connect(cluster)
            let handled = HandledEvents()
            let (_, group, task) = try consumer(cluster, naming: naming, handled: handled)

            let steady = SteadyPublisher()
            let calls = (0..<32).map { _ in Identifier.v7() }
            let traffic = Task { await steady.run(publisher, tenant: tenant, calls: calls, count: 1_500, every: .milliseconds(2)) }
            try await eventually("traffic flows", within: .seconds(20)) { handled.ids.count > 100 }

            // Move every slot of the first master to the second while publishing and consuming.
            let masters = try await cluster.masters()
            let from = masters[0], to = masters[1]
            let movedPartitions = naming.streams(.calls, kind: .event).filter { redis.master(of: $0) == .tcp(host: "127.0.0.1", port: from.port) }
            #expect(!movedPartitions.isEmpty)
            _ = try await cluster.cli(["--cluster", "reshard", "127.0.0.1:\(cluster.port)", "--cluster-from", from.id, "--cluster-to", to.id,
                                       "--cluster-slots", "16384", "--cluster-yes", "--cluster-pipeline", "100"])
            await traffic.value
            let acknowledged = steady.acknowledged.withLock { $0 }
            #expect(acknowledged.count == 1_500)
            try await eventually("every acknowledged event is handled after the reshard", within: .seconds(30)) { handled.ids.isSuperset(of: acknowledged) }
            await group.triggerGracefulShutdown()
            try await task.value

            // The moved partitions are served by the second master now, and nothing was lost or written twice
            // beyond the publishes that were retried after an unknown outcome.
            try await redis.reconnect()
            for stream in movedPartitions { #expect(redis.master(of: stream) == .tcp(host: "127.0.0.1", port: to.port)) }
            let stored = try await storedEventIDs(redis, naming)
            #expect(Set(stored) == acknowledged)
            #expect(stored.count - acknowledged.count <= steady.failures.withLock { $0 }, "duplicates only from retried publishes")
            #expect(handled.ids == acknowledged)
            await redis.close()
        }
    }

    @Test func aKilledMasterIsReplacedAndWithWaitNoAcknowledgedEventIsLost() async throws {
        try await TestCluster.with(port: 17131) { cluster in
            let redis = try await RedisClient.connect(try cluster.configuration())
            let naming = StreamNaming(partitions: 16, prefix: "vc")
            // Two publishers on their own clients: one plain, one that waits for a replica (WAIT 1).
            let plain = Publisher(connection: try await RedisClient.connect(try cluster.configuration()),
                                  configuration: PublisherConfiguration(source: "/test", naming: naming, replicaAcknowledgement: nil))
            var waiting = PublisherConfiguration(source: "/test", naming: naming)
            waiting.replicaAcknowledgement = ReplicaAcknowledgement(replicas: 1, timeout: .milliseconds(500))
            let durable = Publisher(connection: try await RedisClient.connect(try cluster.configuration()), configuration: waiting)
            let handled = HandledEvents()
            let (runner, group, task) = try consumer(cluster, naming: naming, handled: handled)

            let steadyPlain = SteadyPublisher(), steadyDurable = SteadyPublisher()
            let calls = (0..<32).map { _ in Identifier.v7() }
            let plainTraffic = Task { await steadyPlain.run(plain, tenant: tenant, calls: calls, count: 1_500, every: .milliseconds(4)) }
            let durableTraffic = Task { await steadyDurable.run(durable, tenant: tenant, calls: calls, count: 1_500, every: .milliseconds(4)) }
            try await eventually("traffic flows", within: .seconds(20)) { handled.ids.count > 200 }

            // SIGKILL the master that owns the first partition; its replica must take over by itself.
            let victim = try #require(redis.master(of: naming.streams(.calls, kind: .event)[0]))
            guard case .tcp(_, let victimPort) = victim else { throw TestFailure("not a TCP node") }
            #expect(kill(try cluster.pid(of: victimPort), SIGKILL) == 0)
            let killedAt = ContinuousClock.now
            try await eventually("a replica is promoted", within: .seconds(30)) {
                let masters = (try? await cluster.masters()) ?? []
                return masters.count == 3 && !masters.contains { $0.port == victimPort }
            }
            let promotedAfter = ContinuousClock.now - killedAt
            let plainBeforePromotion = steadyPlain.acknowledged.withLock { $0 }

            // The plain publisher and the consumer carry on with no one touching them.
            await plainTraffic.value
            let plainAcknowledged = steadyPlain.acknowledged.withLock { $0 }
            #expect(plainAcknowledged.count == 1_500, "plain publishing carried on after the failover")
            let afterPromotion = plainAcknowledged.subtracting(plainBeforePromotion)
            #expect(!afterPromotion.isEmpty)
            try await eventually("events published after the failover are handled", within: .seconds(30)) { handled.ids.isSuperset(of: afterPromotion) }

            // The promoted master has no replica until the old one comes back: WAIT 1 refuses to
            // acknowledge its writes meanwhile (they are retried). Bring the killed node back; it
            // rejoins as a replica of the new master.
            try await cluster.devEnv("start")
            await durableTraffic.value
            let durableAcknowledged = steadyDurable.acknowledged.withLock { $0 }
            #expect(durableAcknowledged.count == 1_500)
            try await eventually("every acknowledged durable event is handled", within: .seconds(40)) { handled.ids.isSuperset(of: durableAcknowledged) }
            await group.triggerGracefulShutdown()
            try await task.value
            #expect(runner.statistics.handled >= durableAcknowledged.count)

            // No event acknowledged under WAIT 1 was lost in the failover.
            try await redis.reconnect()
            let stored = Set(try await storedEventIDs(redis, naming))
            #expect(stored.isSuperset(of: durableAcknowledged), "\(durableAcknowledged.subtracting(stored).count) acknowledged events lost")
            print("failover: replica promoted \(promotedAfter) after SIGKILL; retried publishes: plain \(steadyPlain.failures.withLock { $0 }), WAIT 1 \(steadyDurable.failures.withLock { $0 })")
            await redis.close()
        }
    }
}
