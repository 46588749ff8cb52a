import Foundation
import Testing
import VoiceCoreExecutors
@testable import VoiceCoreRedis

@Suite("Redis connection against a real server")
struct ConnectionTests {
    @Test func everyReplyType() async throws {
        let redis = try await TestRedis.connect()
        let key = TestRedis.key()
        let binary: [UInt8] = [0, 1, 13, 10, 36, 42, 255, 0]
        let replies = try await redis.send([
            RESPCommand("SET", .string(key), .bytes(binary)),       // simple string
            RESPCommand("GET", .string(key)),                       // bulk string, binary
            RESPCommand("INCR", .string(key + ":n")),               // integer
            RESPCommand("GET", .string(key + ":missing")),          // nil
            RESPCommand("RPUSH", .string(key + ":l"), "a", "b"),
            RESPCommand("LRANGE", .string(key + ":l"), 0, -1),      // array
            RESPCommand("NOSUCHCOMMAND"),                           // error
            RESPCommand("DEL", .string(key), .string(key + ":n"), .string(key + ":l")),
        ])
        #expect(replies[0] == .simpleString("OK"))
        #expect(replies[1] == .bulkString(binary))
        #expect(replies[2] == .integer(1))
        #expect(replies[3] == .null)
        #expect(replies[5] == .array([.bulkString(Array("a".utf8)), .bulkString(Array("b".utf8))]))
        guard case .error(let message) = replies[6] else {
            Issue.record("expected an error reply, got \(replies[6])")
            return
        }
        #expect(message.hasPrefix("ERR unknown command"))
        #expect(replies[7] == .integer(3))
    }

    /// Replies are built in an arena that is released before each read: a value larger than an
    /// arena chunk, a reply of tens of megabytes (beyond what the arena keeps between replies) and
    /// the small replies after it all read back exactly, on the same connection.
    @Test func repliesOfEverySizeReadBackExactlyFromTheArena() async throws {
        let redis = try await TestRedis.connect()
        let key = TestRedis.key()
        defer { Task { _ = try? await redis.execute(.del([key, key + ":s"])) } }
        let big = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 >> 9) }  // more than a 256 KB chunk
        let replies = try await redis.send([RESPCommand("SET", .string(key + ":s"), .bytes(big)), RESPCommand("GET", .string(key + ":s"))])
        #expect(replies[1] == .bulkString(big))
        // 600 entries of 30 KB: one XRANGE reply of about 18 MB (the arena keeps 16 MB between replies).
        // Built once (this test must not hold a thread of the shared pool for long: others time it).
        let letters = (0..<26).map { String(repeating: String(UnicodeScalar(UInt8(65 + $0))), count: 30_000) }
        let value = { (i: Int) in letters[i % 26] + "\(i)" }
        for start in stride(from: 0, to: 600, by: 100) {
            _ = try await redis.pipeline((start..<start + 100).map { i in
                RedisCommand<StreamEntryID>.xadd(key, fields: [("n", "\(i)"), ("v", value(i))])
            })
        }
        let entries = try await redis.execute(.xrange(key))
        #expect(entries.count == 600)
        let texts = entries.map { ($0.fields ?? []).flatMap { [$0.name, $0.string] } }
        let mismatched = texts.enumerated().filter { i, text in text != ["n", "\(i)", "v", value(i)] }.count
        #expect(mismatched == 0)
        // After the arena gave its extra chunks back, small replies of every kind still read.
        #expect(try await redis.execute(.ping()) == "PONG")
        #expect(try await redis.execute(.xlen(key)) == 600)
        let again = try await redis.send([RESPCommand("GET", .string(key + ":s")), RESPCommand("GET", .string(key + ":missing"))])
        #expect(again == [.bulkString(big), .null])
    }

    @Test func tenThousandPipelinedCommandsAnswerInOrder() async throws {
        let redis = try await TestRedis.connect()
        let key = TestRedis.key()
        let commands = (0..<10_000).map { _ in RedisCommand<RESPValue>.raw("INCR", .string(key)) }
        let results = try await redis.pipeline(commands)
        #expect(results.count == 10_000)
        let values = try results.map { try $0.get().int ?? -1 }
        #expect(values == Array(1...10_000))
        _ = try await redis.execute(.del([key]))
    }

    @Test("each connection's thread is named after its role, so top -H and perf tell them apart")
    func connectionThreadsAreNamedAfterTheirRole() async throws {
        func threadNames() throws -> Set<String> {
            let tasks = try FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")
            return Set(tasks.compactMap { try? String(contentsOfFile: "/proc/self/task/\($0)/comm", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines) })
        }
        let group = "g\(UUID().uuidString.prefix(3))"
        var named = try TestRedis.configuration()
        named.clientName = "vc-consumer:\(group):host-\(group):reader"
        let reader = try await RedisConnection.connect(named)
        named.clientName = "vc-service:\(group)-publisher:host"
        let publisher = try await RedisConnection.connect(named)
        // The thread names itself when it starts: give it a moment.
        let deadline = ContinuousClock.now + .seconds(5)
        while try !threadNames().isSuperset(of: ["rd:\(group).reader", "rd:\(group)-publish"]), ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(10))
        }
        let names = try threadNames()
        #expect(names.contains("rd:\(group).reader"), "\(names.sorted())")
        #expect(names.contains("rd:\(group)-publish"), "\(names.sorted())")
        // Linux keeps 15 bytes of a thread's name; a long role is cut, never refused.
        #expect(RedisConnection.threadName("vc-consumer:integrations:host-integrations:control") == "rd:integ.contro")
        #expect(RedisConnection.threadName(nil) == "vc-redis")
        // The client name still reaches Redis whole.
        let clients = try await publisher.send("CLIENT", "LIST").string ?? ""
        #expect(clients.contains("name=vc-service:\(group)-publisher:host"))
        await reader.close()
        await publisher.close()
    }

    @Test func serverErrorsCarryTheirCode() async throws {
        let redis = try await TestRedis.connect()
        let key = TestRedis.key()
        try await redis.send("SET", .string(key), "text")
        await #expect {
            try await redis.execute(.xlen(key))
        } throws: { error in
            (error as? RedisError)?.serverCode == "WRONGTYPE" && (error as? RedisError)?.kind == .server
        }
        // The connection stays usable after a server error.
        #expect(try await redis.execute(.ping()) == "PONG")
        _ = try await redis.execute(.del([key]))
    }

    @Test func aKilledConnectionFailsTheCommandInFlightAndReconnectsByItself() async throws {
        let redis = try await TestRedis.connect()
        let admin = try await TestRedis.connect()
        let id = try await redis.execute(.clientID())
        let key = "reconnect:\(UUID().uuidString)"
        try await admin.send("CLIENT", "KILL", "ID", .integer(id))

        // The command that met the dead socket fails (Redis may or may not have applied it; it is
        // never sent again behind the caller's back).
        await #expect {
            try await redis.execute(.raw("INCR", .string(key)))
        } throws: { error in
            guard let error = error as? RedisError else { return false }
            return error.kind == .connection && error.endpoint != nil && error.isOutage
        }
        #expect(try await admin.send("GET", .string(key)) == .null)
        // The next command connects again by itself: a new session, selected on the same database.
        #expect(try await redis.execute(.ping()) == "PONG")
        #expect(try await redis.execute(.clientID()) != id)
        #expect(await redis.isConnected)
        #expect(try await redis.send("CLIENT", "INFO").string?.contains("db=\(redis.configuration.database)") == true)

        // A connection its owner closed stays closed until reconnect().
        await redis.close()
        await #expect {
            try await redis.execute(.ping())
        } throws: { error in
            (error as? RedisError)?.kind == .connectionClosed && "\(error)".contains("reconnect")
        }
        try await redis.reconnect()
        #expect(try await redis.execute(.ping()) == "PONG")
    }

    @Test func theReconnectScheduleSpacesAttemptsOutAndResets() {
        var schedule = ReconnectSchedule(initial: .milliseconds(50), maximum: .seconds(2))
        let start = ContinuousClock.now
        #expect(schedule.wait(at: start) == nil, "a first attempt is made at once")
        var waits: [Duration] = []
        var now = start
        for _ in 0..<10 {
            schedule.failed(at: now)
            let wait = schedule.wait(at: now) ?? .zero
            waits.append(wait)
            #expect(wait > .zero && wait <= .seconds(2))
            #expect(schedule.wait(at: now + wait) == nil, "an attempt is allowed once the wait is over")
            now += wait
        }
        // Doubling from 50 ms (×0.5–1 at random), capped at 2 s.
        #expect(waits[0] <= .milliseconds(50) && waits[0] >= .milliseconds(25))
        #expect(waits[4] >= .milliseconds(400) && waits[4] <= .milliseconds(800))
        #expect(waits[9] >= .seconds(1))
        schedule.succeeded()
        #expect(schedule.failures == 0 && schedule.wait(at: now) == nil)
    }

    @Test func anUnreachableServerIsRetriedWithBackoffAndFoundAgain() async throws {
        // A server of the test's own, stopped and started again on the same port.
        let port = Int.random(in: 16_000..<17_000)
        func startServer() throws -> Process {
            let server = Process()
            server.executableURL = URL(fileURLWithPath: "/usr/bin/redis-server")
            server.arguments = ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
            server.standardOutput = FileHandle.nullDevice
            try server.run()
            return server
        }
        var server = try startServer()
        defer { kill(server.processIdentifier, SIGKILL) }
        var configuration = try RedisConfiguration(url: "redis://127.0.0.1:\(port)/2")
        configuration.clientName = "vc-test:reconnect"
        var connection: RedisConnection?
        for _ in 0..<100 where connection == nil {
            connection = try? await RedisConnection.connect(configuration)
            if connection == nil { try await Task.sleep(for: .milliseconds(25)) }
        }
        let redis = try #require(connection)
        #expect(try await redis.execute(.ping()) == "PONG")
        kill(server.processIdentifier, SIGKILL)
        server.waitUntilExit()

        // Down: every command fails at once as an outage; between attempts (spaced out more and
        // more) the wait is said.
        var failures: [RedisError] = []
        var answered = 0
        let downUntil = ContinuousClock.now + .seconds(2)
        while ContinuousClock.now < downUntil {
            do {
                _ = try await redis.execute(.ping())
                answered += 1
            } catch let error as RedisError {
                failures.append(error)
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(answered == 0 && !failures.isEmpty)
        #expect(failures.allSatisfy { $0.isOutage })

        // Back: the same connection finds it by itself, with its database and name.
        server = try startServer()
        var back = false
        for _ in 0..<200 where !back {
            back = (try? await redis.execute(.ping())) == "PONG"
            if !back { try await Task.sleep(for: .milliseconds(25)) }
        }
        #expect(back)
        let info = try await redis.send("CLIENT", "INFO").string ?? ""
        #expect(info.contains("db=2") && info.contains("name=vc-test:reconnect"))
    }

    @Test func commandTimeoutClosesTheConnection() async throws {
        // BLPOP sent as a plain command (no BLOCK allowance) holds the reply for 5 s; the 300 ms
        // command timeout must fire instead (the bound is loose: the suite runs in parallel).
        let redis = try await TestRedis.connect(commandTimeout: .milliseconds(300))
        let key = TestRedis.key()
        let clock = ContinuousClock()
        let start = clock.now
        await #expect {
            try await redis.send("BLPOP", .string(key), 5)
        } throws: { error in
            (error as? RedisError)?.kind == .timeout
        }
        #expect(clock.now - start < .seconds(4))
        #expect(await !redis.isConnected)
        try await redis.reconnect()
        #expect(try await redis.execute(.ping()) == "PONG")
    }

    @Test func connectionRefusedNamesTheEndpoint() async throws {
        await #expect {
            try await RedisConnection.connect(RedisConfiguration(url: "redis://127.0.0.1:1"))
        } throws: { error in
            guard let error = error as? RedisError else { return false }
            return error.kind == .connection && error.message.contains("127.0.0.1:1") && error.message.contains("refused")
        }
    }

    @Test func wrongPasswordIsAServerErrorWithoutThePassword() async throws {
        var configuration = try TestRedis.configuration()
        configuration.password = "not-the-password-4711"
        await #expect {
            try await RedisConnection.connect(configuration)
        } throws: { error in
            guard let error = error as? RedisError else { return false }
            return error.kind == .server && error.message.contains("authentication failed")
                && !"\(error)".contains("not-the-password-4711")
        }
    }

    @Test func authenticatesAsAnACLUserFromTheURL() async throws {
        let admin = try await TestRedis.connect()
        let user = "vc-test-\(UUID().uuidString.prefix(6).lowercased())"
        try await admin.send("ACL", "SETUSER", .string(user), "on", ">s3cret-pw", "~*", "+@all")
        defer { Task { try? await admin.send("ACL", "DELUSER", .string(user)) } }
        guard case .tcp(let host, let port) = try TestRedis.configuration().endpoint else { return }
        let redis = try await RedisConnection.connect(RedisConfiguration(url: "redis://\(user):s3cret-pw@\(host):\(port)/3"))
        #expect(try await redis.send("ACL", "WHOAMI").string == user)
        #expect(try await redis.send("CLIENT", "INFO").string?.contains(" db=3 ") == true)
        #expect(!redis.configuration.description.contains("s3cret-pw"))
    }

    @Test func selectsTheDatabaseFromTheURL() async throws {
        var configuration = try TestRedis.configuration()
        configuration.database = 5
        let redis = try await RedisConnection.connect(configuration)
        let info = try await redis.send("CLIENT", "INFO")
        #expect(info.string?.contains(" db=5 ") == true)
    }

    @Test func scriptsLoadOnFirstUseAndAfterAFlush() async throws {
        let redis = try await TestRedis.connect()
        let key = TestRedis.key()
        let script = RedisScript("return redis.call('INCRBY', KEYS[1], ARGV[1])")
        #expect(try await script.run(on: RedisClient(redis), keys: [key], arguments: [5]) == .integer(5))
        // A flushed script cache (a restarted server) is reloaded transparently.
        try await redis.send("SCRIPT", "FLUSH")
        #expect(try await script.run(on: RedisClient(redis), keys: [key], arguments: [2]) == .integer(7))
        _ = try await redis.execute(.del([key]))
    }

    @Test func eachConnectionRunsOnAThreadOfItsOwn() async throws {
        let first = try await TestRedis.connect()
        let second = try await TestRedis.connect()
        let a1 = await first.threadForTesting()
        try await Task.sleep(for: .milliseconds(5))
        let a2 = await first.threadForTesting()
        let b = await second.threadForTesting()
        #expect(a1.id == a2.id)
        #expect(a1.id != b.id)
        #expect(a1.name == "vc-redis")
    }
}

extension RedisConnection {
    func threadForTesting() -> (id: UInt, name: String) {
        let name = (try? String(contentsOfFile: "/proc/thread-self/comm", encoding: .utf8)) ?? ""
        return (UInt(pthread_self()), name.trimmingCharacters(in: .whitespacesAndNewlines))
    }
}
