import Foundation
import NIOCore
import NIOPosix
import Testing
@testable import VoiceCoreRedis
import VoiceCoreTestSupport

/// A redis-server of a test's own, to stop and start again (ports 26000–26999, apart from the
/// edge tests' 23000–25999 and the bus tests' own).
func loopTestRedis(arguments: [String] = []) -> RestartableRedis {
    RestartableRedis(ports: 26_000..<27_000, appendOnly: false, arguments: arguments)
}

struct TestError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

@Suite("Redis from NIO event loops", .serialized)
struct EventLoopConnectionTests {
    private func configuration(_ url: String, commandTimeout: Duration = .seconds(10)) throws -> RedisConfiguration {
        var configuration = try RedisConfiguration(url: url)
        configuration.commandTimeout = commandTimeout
        return configuration
    }

    /// Runs `body` with a connection on a loop of its own; closes both afterwards.
    private func withConnection(_ configuration: RedisConfiguration, reconnectDelay: TimeAmount = .milliseconds(250),
                                _ body: (EventLoopRedisConnection) async throws -> Void) async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let connection = EventLoopRedisConnection(loop: group.next(), configuration: configuration, reconnectDelay: reconnectDelay)
        var failure: (any Error)?
        do { try await body(connection) } catch { failure = error }
        try await connection.loop.submit { connection.close() }.get()
        try await group.shutdownGracefully()
        if let failure { throw failure }
    }

    /// Sends on the connection's loop.
    private func send(_ connection: EventLoopRedisConnection, _ arguments: RESPArgument...) async throws -> RESPValue {
        try await connection.loop.flatSubmit { connection.send(RESPCommand(arguments)) }.get()
    }

    @Test func repliesComeBackInOrderOnTheLoopThatSentTheCommands() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let key = "test:loop-order:\(UUID().uuidString.prefix(8))"
        let connections = try group.makeIterator().map { EventLoopRedisConnection(loop: $0, configuration: try configuration(TestRedis.url)) }
        // Both loops push to one list: 400 commands each, the first 200 sent in one tick (one
        // pipeline), the rest one tick each.
        let results: [[(RESPValue, Bool)]] = try await withThrowingTaskGroup(of: [(RESPValue, Bool)].self) { tasks in
            for (index, connection) in connections.enumerated() {
                tasks.addTask {
                    let loop = connection.loop
                    var futures = try await loop.submit {
                        (0..<200).map { i in connection.send(RESPCommand("RPUSH", .string(key), .string("\(index):\(i)"))).map { ($0, loop.inEventLoop) } }
                    }.get()
                    for i in 200..<400 {
                        futures.append(try await loop.submit { connection.send(RESPCommand("RPUSH", .string(key), .string("\(index):\(i)"))) }.get()
                            .map { ($0, loop.inEventLoop) })
                    }
                    var replies: [(RESPValue, Bool)] = []
                    for future in futures { replies.append(try await future.get()) }
                    return replies
                }
            }
            return try await tasks.reduce(into: []) { $0.append($1) }
        }
        for replies in results {
            #expect(replies.count == 400)
            #expect(replies.allSatisfy { $0.1 }, "every reply completes on the connection's loop")
            let lengths = replies.compactMap { reply -> Int64? in if case .integer(let n) = reply.0 { return n } else { return nil } }
            #expect(lengths.count == 400)
            #expect(lengths == lengths.sorted(), "each command's reply is its own: the list grew in the order sent")
        }
        let admin = try await RedisConnection.connect(try configuration(TestRedis.url))
        guard case .array(let items) = try await admin.send("LRANGE", .string(key), "0", "-1") else { throw TestError("LRANGE") }
        let pushed = items.compactMap { item -> String? in if case .bulkString(let b) = item { return String(decoding: b, as: UTF8.self) } else { return nil } }
        #expect(pushed.count == 800)
        for index in 0..<2 {
            #expect(pushed.filter { $0.hasPrefix("\(index):") } == (0..<400).map { "\(index):\($0)" }, "one loop's commands are applied in the order sent")
        }
        _ = try await admin.send("DEL", .string(key))
        for connection in connections { try await connection.loop.submit { connection.close() }.get() }
        try await group.shutdownGracefully()
    }

    @Test func commandsSentWhileConnectingGoOutOnceWhenTheConnectionOpens() async throws {
        let key = "test:loop-connecting:\(UUID().uuidString.prefix(8))"
        try await withConnection(try configuration(TestRedis.url)) { connection in
            // The first command starts the connection; the other 99 queue behind it, over several ticks.
            var futures = try await connection.loop.submit { [connection.send(RESPCommand("INCR", .string(key)))] }.get()
            for _ in 1..<100 { futures.append(try await connection.loop.submit { connection.send(RESPCommand("INCR", .string(key))) }.get()) }
            var replies: [RESPValue] = []
            for future in futures { replies.append(try await future.get()) }
            #expect(replies == (1...100).map { RESPValue.integer(Int64($0)) }, "each command applied once, in order")
            #expect(try await send(connection, "GET", .string(key)) == .bulkString(Array("100".utf8)))
            _ = try await send(connection, "DEL", .string(key))
        }
    }

    @Test func aServerThatNeverAnswersFailsTheCommandAsATimeout() async throws {
        // A socket that listens but never accepts: the kernel completes the connection, nobody reads.
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        try #require(bound == 0 && listen(fd, 16) == 0)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        let port = Int(UInt16(bigEndian: address.sin_port))

        try await withConnection(try configuration("redis://127.0.0.1:\(port)", commandTimeout: .milliseconds(300))) { connection in
            let start = ContinuousClock.now
            do {
                _ = try await send(connection, "SET", "k", "v")
                Issue.record("a command without a reply succeeded")
            } catch let error as RedisError {
                #expect(error.kind == .timeout, "\(error)")
                #expect(error.message.contains("no reply"), "\(error)")
            }
            #expect(ContinuousClock.now - start < .seconds(5))
        }
    }

    @Test func theConnectionAuthenticatesAndSelectsItsDatabaseAndNeverTellsAWrongPassword() async throws {
        let password = "pw-\(UUID().uuidString)"
        let server = loopTestRedis(arguments: ["--requirepass", password])
        try await server.start()
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let good = EventLoopRedisConnection(loop: group.next(), configuration: try configuration("redis://:\(password)@127.0.0.1:\(server.port)/3"))
        #expect(try await send(good, "SET", "greeting", "hello") == .simpleString("OK"))
        let admin = try await RedisConnection.connect(try configuration("redis://:\(password)@127.0.0.1:\(server.port)/3"))
        #expect(try await admin.send("GET", "greeting") == .bulkString(Array("hello".utf8)), "written to database 3")

        let wrong = "wrong-\(UUID().uuidString)"
        let bad = EventLoopRedisConnection(loop: group.next(), configuration: try configuration("redis://:\(wrong)@127.0.0.1:\(server.port)/3"))
        var first: RedisError?
        do { _ = try await send(bad, "SET", "greeting", "evil") } catch let error as RedisError { first = error }
        let error = try #require(first, "a wrong password must fail the command")
        #expect(error.message.contains("authentication failed"), "\(error)")
        #expect(!error.description.contains(wrong) && !error.description.contains(password))
        // Within the reconnect delay the next command fails at once, without a new connection.
        let connectionsBefore = try await connectionsReceived(admin)
        do {
            _ = try await send(bad, "SET", "greeting", "evil")
            Issue.record("a second command with a wrong password succeeded")
        } catch let again as RedisError {
            #expect(again.message.contains("authentication failed"))
        }
        #expect(try await connectionsReceived(admin) == connectionsBefore)
        #expect(try await admin.send("GET", "greeting") == .bulkString(Array("hello".utf8)))
        for connection in [good, bad] { try await connection.loop.submit { connection.close() }.get() }
        try await group.shutdownGracefully()
        try await server.stop()
    }

    private func connectionsReceived(_ admin: RedisConnection) async throws -> Int {
        guard case .bulkString(let bytes) = try await admin.send("INFO", "stats") else { throw TestError("INFO") }
        let line = String(decoding: bytes, as: UTF8.self).split(whereSeparator: \.isNewline).first { $0.hasPrefix("total_connections_received:") }
        return Int(line?.split(separator: ":").last ?? "") ?? -1
    }

    @Test func aUnixSocketURLConnectsThroughTheSocketAndSelectsItsDatabase() async throws {
        let socket = FileManager.default.temporaryDirectory.appendingPathComponent("vc-\(UUID().uuidString.prefix(8)).sock").path
        let server = loopTestRedis(arguments: ["--unixsocket", socket, "--unixsocketperm", "700"])
        try await server.start()
        try await withConnection(try configuration("unix://\(socket)?db=2")) { connection in
            #expect(try await send(connection, "SET", "over-the-socket", "yes") == .simpleString("OK"))
            let admin = try await RedisConnection.connect(try configuration("redis://127.0.0.1:\(server.port)/2"))
            #expect(try await admin.send("GET", "over-the-socket") == .bulkString(Array("yes".utf8)))
            guard case .bulkString(let clients) = try await admin.send("CLIENT", "LIST") else { throw TestError("CLIENT LIST") }
            #expect(String(decoding: clients, as: UTF8.self).contains("addr=\(socket)"), "one client came through the socket")
        }
        try await server.stop()
    }

    @Test func commandsFailWhileRedisIsDownAndTheConnectionComesBackWithIt() async throws {
        let server = loopTestRedis()
        try await server.start()
        try await withConnection(try configuration(server.url), reconnectDelay: .milliseconds(100)) { connection in
            #expect(try await send(connection, "SET", "k", "1") == .simpleString("OK"))
            try await server.stop()
            do {
                _ = try await send(connection, "SET", "k", "2")
                Issue.record("a command succeeded with Redis down")
            } catch let error as RedisError {
                #expect(error.kind == .connection, "\(error)")
            }
            try await server.start()
            var reply: RESPValue?
            for _ in 0..<50 where reply == nil {
                reply = try? await send(connection, "SET", "k", "3")
                if reply == nil { try await Task.sleep(for: .milliseconds(50)) }
            }
            #expect(reply == .simpleString("OK"), "the next command after Redis returned reconnects")
        }
        try await server.stop()
    }
}
