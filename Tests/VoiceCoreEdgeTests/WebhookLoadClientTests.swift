import Foundation
import Hummingbird
import HummingbirdTesting
import NIOCore
import Synchronization
import Testing
import VoiceCoreEvents
@testable import VoiceCoreEdge

/// The load generator's HTTP client: what `voicecore loadgen` counts as accepted must be what the
/// edge answered.
@Suite("The load generator's HTTP client", .serialized)
struct WebhookLoadClientTests {
    @Test func aCallsSignedWebhooksAreAcceptedAndAForgedOneRefusedOverTwoConnections() async throws {
        let fixture = try await EdgeFixture(requestsPerSecond: 10_000)
        let call = TwilioCallSimulation(tenant: fixture.tenant, accountSID: "AC00000000000000000000000000000001", authToken: fixture.twilioToken,
                                        publicBase: EdgeFixture.publicBase, from: "+14155550100", to: "+14155550199", ringSeconds: 1,
                                        utterances: (1...6).map { TwilioCallSimulation.Utterance(.inbound, "segment \($0)", at: $0) })
        let hooks = call.webhooks
        let app = Application(router: fixture.edge.router())
        try await app.test(.live) { client in
            let port = try #require(client.port)
            let load = WebhookLoadClient(host: "localhost", port: port, maximumConnections: 2)
            func request(_ hook: SimulatedWebhook, signature: String? = nil) -> WebhookLoadClient.Request {
                WebhookLoadClient.Request(post: hook.path, host: "localhost:\(port)",
                                          headers: [("Content-Type", "application/x-www-form-urlencoded"), ("X-Twilio-Signature", signature ?? hook.signature)],
                                          body: hook.body)
            }
            // All at once: more requests than connections, so they queue for and reuse the two.
            let statuses = try await withThrowingTaskGroup(of: (Int, Int).self) { group in
                for (index, hook) in hooks.enumerated() {
                    group.addTask { (index, try await load.send(request(hook))) }
                }
                group.addTask { (-1, try await load.send(request(hooks[0], signature: "AAAAAAAAAAAAAAAAAAAAAAAAAAA="))) }
                var statuses: [Int: Int] = [:]
                for try await (index, status) in group { statuses[index] = status }
                return statuses
            }
            #expect(statuses[-1] == 403)
            #expect(hooks.indices.allSatisfy { statuses[$0] == 200 }, "\(statuses)")
            // The edge answers the incoming-call webhook with TwiML: a body the client must skip to read the next response.
            #expect(hooks[0].kind == .voice)
            await load.shutdown()
        }
        // One command per signed webhook; nothing for the forged one.
        #expect(try await fixture.commands().count == hooks.count)
        try await fixture.drop()
    }

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

    @Test func aResponseThatCannotBeFramedIsAnError() {
        for bad in ["SSH-2.0-OpenSSH_9.2\r\n\r\n", "HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n",
                    "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "HTTP/1.1 200 OK\r\n\r\nbody until close"] {
            var buffer = ByteBuffer(string: bad)
            #expect(throws: WebhookLoadClient.Failure.self, "\(bad)") { _ = try HTTP1ResponseReader.next(from: &buffer) }
        }
    }
}
