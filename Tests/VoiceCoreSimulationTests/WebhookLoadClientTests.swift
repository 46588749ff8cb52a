import Foundation
import NIOCore
import NIOPosix
import Synchronization
import Testing
@testable import VoiceCoreSimulation

/// The load generator's HTTP client: what `voicecore loadgen` counts as accepted must be what the
/// server answered (against the edge itself: `SimulatedTrafficTests` in the edge's tests).
@Suite("The load generator's HTTP client", .serialized)
struct WebhookLoadClientTests {
    @Test func aRefusedConnectionFailsEachRequestAndGivesItsSlotBack() async {
        // tcpmux's port: nothing listens there on a Debian machine, so the connection is refused.
        let probe = 1
        let load = WebhookLoadClient(host: "127.0.0.1", port: probe, maximumConnections: 1)
        let request = WebhookLoadClient.Request(post: "/", host: "127.0.0.1", headers: [], body: "")
        for _ in 0..<3 {
            // With a slot kept after a failure, the second request would wait for ever (a wait
            // that ignores cancellation, so the test does not wait on it).
            let outcome = await Self.outcome(within: .seconds(10)) {
                do {
                    _ = try await load.send(request)
                    return "answered"
                } catch {
                    return "\(error)"
                }
            }
            #expect(outcome.hasPrefix("could not connect to 127.0.0.1:\(probe)"), "\(outcome)")
        }
        await load.shutdown()
    }

    @Test(arguments: [true, false])
    func aConnectionTheServerClosesIsNotReused(saysClose: Bool) async throws {
        // A server that answers one request per connection, then closes it: saying so
        // (`Connection: close`), or not (as a keep-alive timeout would, between requests).
        let server = try await OneResponseServer.start(saysClose: saysClose)
        let load = WebhookLoadClient(host: "127.0.0.1", port: server.port, maximumConnections: 1)
        let request = WebhookLoadClient.Request(post: "/", host: "127.0.0.1", headers: [], body: "")
        for _ in 0..<3 {
            #expect(try await load.send(request) == 503, "each request answered, none sent on a closed connection")
            if !saysClose { try await Task.sleep(for: .milliseconds(200)) }  // the close arrives while idle
        }
        #expect(server.connections == 3)
        await load.shutdown()
        try await server.channel.close()
    }

    /// What `body` returns, or "hung" when it has not returned within `limit` (left running).
    private static func outcome(within limit: Duration, _ body: @escaping @Sendable () async -> String) async -> String {
        await withCheckedContinuation { (continuation: CheckedContinuation<String, Never>) in
            let done = Mutex(false)
            let finish: @Sendable (String) -> Void = { value in
                if done.withLock({ was in defer { was = true }; return !was }) { continuation.resume(returning: value) }
            }
            Task { finish(await body()) }
            Task {
                try? await Task.sleep(for: limit)
                finish("hung")
            }
        }
    }

    // MARK: Reading responses

    private func read(_ chunks: [String]) throws -> [(status: Int, closes: Bool)] {
        var buffer = ByteBuffer()
        var responses: [(status: Int, closes: Bool)] = []
        for chunk in chunks {
            buffer.writeString(chunk)
            while let response = try HTTP1ResponseReader.next(from: &buffer) { responses.append(response) }
        }
        #expect(buffer.readableBytes == 0, "bytes left over: \(String(buffer: buffer))")
        return responses
    }

    @Test func responsesAreReadByLengthAcrossReadsAndBackToBack() throws {
        let ok = "HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: 11\r\n\r\n<Response/>"
        let refused = "HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n"
        let whole = ok + refused + ok
        // Every way of splitting the stream in two reads the same three responses.
        for split in stride(from: 1, to: whole.utf8.count, by: 1) {
            let bytes = Array(whole.utf8)
            let responses = try read([String(decoding: bytes[..<split], as: UTF8.self), String(decoding: bytes[split...], as: UTF8.self)])
            #expect(responses.map(\.status) == [200, 403, 200], "split at \(split)")
        }
    }

    @Test func chunkedBodiesNoContentAndConnectionCloseAreUnderstood() throws {
        let chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n"
        let noContent = "HTTP/1.1 204 No Content\r\n\r\n"
        let closing = "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}"
        let responses = try read([chunked + noContent, closing])
        #expect(responses.map(\.status) == [200, 204, 503])
        #expect(responses.map(\.closes) == [false, false, true])
        // Byte by byte: incomplete until the last byte, then whole.
        var partial = ByteBuffer()
        for (index, byte) in chunked.utf8.enumerated() {
            partial.writeInteger(byte)
            let response = try HTTP1ResponseReader.next(from: &partial)
            #expect((response != nil) == (index == chunked.utf8.count - 1))
        }
    }

    @Test func headerNamesAndValuesAreReadInAnyCase() throws {
        let chunked = "HTTP/1.1 200 OK\r\nTRANSFER-encoding:  gzip, Chunked \r\n\r\n2\r\nok\r\n0\r\n\r\n"
        let closing = "HTTP/1.1 200 OK\r\ncontent-LENGTH:\t3\r\nconnection: keep-alive, CLOSE\r\n\r\nabc"
        let keptOpen = "HTTP/1.1 202 Accepted\r\nX-Connection: close\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n"
        let responses = try read([chunked + closing + keptOpen])
        #expect(responses.map(\.status) == [200, 200, 202])
        #expect(responses.map(\.closes) == [false, true, false], "only the Connection header closes, whatever its case")
        for bad in ["3x", "", "-3", "99999999999999999999"] {
            var buffer = ByteBuffer(string: "HTTP/1.1 200 OK\r\nContent-Length: \(bad)\r\n\r\nabc")
            #expect(throws: WebhookLoadClient.Failure.self, "Content-Length: \(bad)") { _ = try HTTP1ResponseReader.next(from: &buffer) }
        }
    }

    @Test func aResponseThatCannotBeFramedIsAnError() {
        for bad in ["SSH-2.0-OpenSSH_9.2\r\n\r\n", "HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n",
                    "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "HTTP/1.1 200 OK\r\n\r\nbody until close"] {
            var buffer = ByteBuffer(string: bad)
            #expect(throws: WebhookLoadClient.Failure.self, "\(bad)") { _ = try HTTP1ResponseReader.next(from: &buffer) }
        }
    }
}

/// Answers the first request of each connection with a 503 and closes the connection.
final class OneResponseServer: Sendable {
    final class Counter: Sendable {
        let value = Mutex(0)
    }

    let channel: any Channel
    private let accepted: Counter
    var port: Int { channel.localAddress!.port! }
    var connections: Int { accepted.value.withLock { $0 } }

    private init(channel: any Channel, accepted: Counter) {
        self.channel = channel
        self.accepted = accepted
    }

    static func start(saysClose: Bool) async throws -> OneResponseServer {
        let accepted = Counter()
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { child in
                accepted.value.withLock { $0 += 1 }
                return child.eventLoop.makeCompletedFuture { try child.pipeline.syncOperations.addHandler(Answer(saysClose: saysClose)) }
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
        return OneResponseServer(channel: channel, accepted: accepted)
    }

    private final class Answer: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        let saysClose: Bool
        private var received = ""

        init(saysClose: Bool) { self.saysClose = saysClose }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            received += String(buffer: unwrapInboundIn(data))
            guard received.contains("\r\n\r\n") else { return }
            let response = "HTTP/1.1 503 Service Unavailable\r\n" + (saysClose ? "Connection: close\r\n" : "") + "Content-Length: 2\r\n\r\n{}"
            context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: response)), promise: nil)
            context.close(promise: nil)
        }
    }
}
