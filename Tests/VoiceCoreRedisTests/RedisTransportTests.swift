import Foundation
import NIOCore
import NIOPosix
import Testing
@testable import VoiceCoreRedis

/// The one conformance suite both transports must pass: the same commands give the same replies,
/// pipelines keep their order, error replies stay values, scripts unknown to the server go again
/// with their source, and replica acknowledgement is judged the same way.
@Suite("Both Redis transports behave alike")
struct RedisTransportTests {
    enum Kind: String, CaseIterable, Sendable, CustomTestStringConvertible {
        case dedicatedThread, eventLoops
        var testDescription: String { rawValue }
    }

    /// Runs `body` over a transport of `kind` to the tests' Redis; closes it afterwards.
    private func withTransport(_ kind: Kind, _ body: (any RedisTransport) async throws -> Void) async throws {
        let configuration = try TestRedis.configuration()
        switch kind {
        case .dedicatedThread:
            let client = try await RedisClient.connect(configuration)
            var failure: (any Error)?
            do { try await body(client) } catch { failure = error }
            await client.close()
            if let failure { throw failure }
        case .eventLoops:
            let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
            let transport = EventLoopRedisTransport(group: group, configuration: configuration)
            var failure: (any Error)?
            do { try await body(transport) } catch { failure = error }
            await transport.close()
            try await group.shutdownGracefully()
            if let failure { throw failure }
        }
    }

    @Test(arguments: Kind.allCases)
    func commandsPipelinesAndErrorRepliesComeBackInOrder(_ kind: Kind) async throws {
        let key = TestRedis.key()
        try await withTransport(kind) { transport in
            #expect(try await transport.reply(to: RESPCommand("SET", .string(key), "0")) == .simpleString("OK"))
            let commands = (1...300).map { _ in RESPCommand("INCR", .string(key)) } + [RESPCommand("HGET", .string(key), "field"), RESPCommand("INCR", .string(key))]
            let results = await transport.sendEach(commands, replicas: nil)
            let replies = try results.map { try $0.get() }
            #expect(replies.prefix(300) == ArraySlice((1...300).map { RESPValue.integer(Int64($0)) }), "each reply is its own command's, in order")
            #expect(replies[300].isError, "an error reply is a value and fails only its own command")
            #expect(replies[301] == .integer(301))
            #expect(try await transport.execute(.raw("GET", .string(key))) == .bulkString(Array("301".utf8)))
            await #expect(throws: RedisError.self) { try await transport.execute(.raw("HGET", .string(key), "field")) }
            _ = try await transport.reply(to: RESPCommand("DEL", .string(key)))
        }
    }

    @Test(arguments: Kind.allCases)
    func aScriptTheServerDoesNotKnowGoesOnceMoreWithItsSource(_ kind: Kind) async throws {
        let key = TestRedis.key()
        // A script no server has seen: its call by an unknown SHA-1 is answered NOSCRIPT.
        let source = "redis.call('INCR', KEYS[1]) return ARGV[1] .. ' \(UUID().uuidString)'"
        let unknownSHA1 = String(repeating: "0", count: 40)
        let call = RESPCommand("EVALSHA", .string(unknownSHA1), "1", .string(key), "ran")
        try await withTransport(kind) { transport in
            let reply = try await transport.reply(to: call, scriptSource: source)
            #expect(reply.string?.hasPrefix("ran ") == true, "\(reply)")
            #expect(try await transport.reply(to: call, scriptSource: nil).isUnknownScript, "without a source the NOSCRIPT answer stands")

            let results = await transport.sendEach([call, RESPCommand("GET", .string(key)), call, call], replicas: nil) { index in
                index == 3 ? nil : source
            }
            let replies = try results.map { try $0.get() }
            #expect(replies[0].string?.hasPrefix("ran ") == true && replies[2].string?.hasPrefix("ran ") == true, "\(replies)")
            #expect(replies[1] == .bulkString(Array("1".utf8)), "the plain command was not sent again")
            #expect(replies[3].isUnknownScript)
            #expect(try await transport.reply(to: RESPCommand("GET", .string(key))) == .bulkString(Array("3".utf8)), "each script call ran once")
            _ = try await transport.reply(to: RESPCommand("DEL", .string(key)))
        }
    }

    @Test(arguments: Kind.allCases)
    func aWriteNoReplicaAcknowledgedFailsAsReplication(_ kind: Kind) async throws {
        let key = TestRedis.key()
        try await withTransport(kind) { transport in
            // The test server has no replica: WAIT 1 counts 0.
            let results = await transport.sendEach([RESPCommand("SET", .string(key), "v"), RESPCommand("HGET", .string(key), "f")],
                                                   replicas: ReplicaAcknowledgement(replicas: 1, timeout: .milliseconds(20)))
            #expect(results.count == 2)
            guard case .failure(let error) = results[0] else { Issue.record("a write no replica confirmed succeeded"); return }
            #expect(error.kind == .replication && error.message.contains("acknowledged by 0 of 1"), "\(error)")
            #expect((try? results[1].get())?.isError == true, "an error reply stays the command's own answer")
            _ = try await transport.reply(to: RESPCommand("DEL", .string(key)))
        }
    }

    @Test func theEventLoopTransportAnswersOnAndOffItsLoopsAndNotAfterClosing() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let transport = EventLoopRedisTransport(group: group, configuration: try TestRedis.configuration())
        let loop = group.next()
        // On a loop of the group: that loop's connection, with the future completed on the loop.
        let onLoop = try await loop.flatSubmit {
            loop.makeFutureWithTask { try await transport.reply(to: RESPCommand("PING")) }
        }.get()
        #expect(onLoop == .simpleString("PONG"))
        #expect(try await transport.reply(to: RESPCommand("ECHO", "from off the loops")) == .bulkString(Array("from off the loops".utf8)))
        await transport.close()
        await #expect(throws: RedisError.self) { try await transport.reply(to: RESPCommand("PING")) }
        try await group.shutdownGracefully()
    }
}
