import Foundation
import NIOCore
import NIOPosix
import Synchronization
import Testing
import VoiceCoreEdge
import VoiceCoreEvents
import VoiceCoreSimulation

/// `loadgen`'s calls: what it counts is what a server answered, and every request is one Twilio
/// would send (signed for the URL the edge believes it is at).
@Suite("The load generator's calls")
struct CallLoadTests {
    @Test func everyWebhookOfEveryCallIsSentSignedAndCountedAsTheServerAnswered() async throws {
        let server = try await RecordingServer.start { request in request.body.contains("CallStatus=in-progress") ? 503 : 200 }
        let client = WebhookLoadClient(host: "127.0.0.1", port: server.port, maximumConnections: 2)
        let token = "0123456789abcdef0123456789abcdef"
        let load = CallLoad(tenant: .v7(), accountSID: "AC00000000000000000000000000000001", authToken: token, publicBase: "https://edge.example.com",
                            host: "edge.example.com", pathPrefix: "/voice", calls: 3, rate: 100, callSeconds: 2)
        let statistics = LoadStatistics()
        let progress = Mutex<[String]>([])
        try await load.play(through: client, statistics: statistics, started: .now) { line in progress.withLock { $0.append(line) } }
        await client.shutdown()
        try await server.channel.close()

        // Per call: the incoming call, in-progress (refused by this server), two final segments, completed.
        let requests = server.requests
        #expect(requests.count == 3 * 5)
        let totals = statistics.snapshot
        #expect(totals.accepted == 3 * 4 && totals.errors == 3)
        #expect(totals.acceptedSegments == 6 && totals.completedCalls == 3)
        #expect(totals.startedCalls == 3 && totals.finishedCalls == 3)
        #expect(statistics.callIDs.count == 3 && statistics.callAcceptance.count == 3)
        #expect(Set(statistics.segmentAcceptance.keys.map(\.call)) == Set(statistics.callIDs))
        #expect(statistics.httpLatencies.count == totals.accepted)
        for request in requests {
            #expect(request.path.hasPrefix("/voice/webhooks/twilio/\(load.tenant)/"))
            #expect(request.host == "edge.example.com")
            let parameters = try FormBody(parsing: Array(request.body.utf8)).parameters
            #expect(parameters.first { $0.name == "Final" }?.value != "false", "partial transcripts are not sent")
            let url = "https://edge.example.com" + request.path.dropFirst("/voice".count)
            #expect(TwilioSignature.verify(signature: request.signature, url: url, parameters: parameters, key: Array(token.utf8)), "\(request.body)")
        }
    }

    @Test func latenciesAreSummarisedByPercentile() {
        #expect(LoadStatistics.describe([]) == "no samples")
        let samples = (1...100).map { Duration.milliseconds($0) }.shuffled()
        #expect(LoadStatistics.describe(samples) == "p50 51.0 ms  p99 100.0 ms  max 100.0 ms  (100 samples)")
    }
}

/// An HTTP/1.1 server on a free port that answers each request with the status `answer` gives and
/// keeps what it was sent.
final class RecordingServer: Sendable {
    struct Request: Sendable {
        var path: String
        var host: String
        var signature: String
        var body: String
    }

    let channel: any Channel
    private let box: Box
    var port: Int { channel.localAddress?.port ?? 0 }
    var requests: [Request] { box.requests.withLock { $0 } }

    private init(channel: any Channel, box: Box) {
        self.channel = channel
        self.box = box
    }

    static func start(answer: @escaping @Sendable (Request) -> Int) async throws -> RecordingServer {
        let box = Box()
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { child in
                child.eventLoop.makeCompletedFuture {
                    try child.pipeline.syncOperations.addHandler(Handler(answer: answer) { request in box.requests.withLock { $0.append(request) } })
                }
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
        return RecordingServer(channel: channel, box: box)
    }

    private final class Box: Sendable {
        let requests = Mutex<[Request]>([])
    }

    private final class Handler: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        let answer: @Sendable (Request) -> Int
        let record: @Sendable (Request) -> Void
        private var buffer = ""

        init(answer: @escaping @Sendable (Request) -> Int, record: @escaping @Sendable (Request) -> Void) {
            self.answer = answer
            self.record = record
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            buffer += String(buffer: unwrapInboundIn(data))
            while let headEnd = buffer.range(of: "\r\n\r\n") {
                let lines = buffer[..<headEnd.lowerBound].components(separatedBy: "\r\n")
                func header(_ name: String) -> String {
                    lines.dropFirst().first { $0.lowercased().hasPrefix(name.lowercased() + ":") }
                        .map { String($0.dropFirst(name.count + 1)).trimmingCharacters(in: .whitespaces) } ?? ""
                }
                let length = Int(header("Content-Length")) ?? 0
                let rest = buffer[headEnd.upperBound...]
                guard rest.utf8.count >= length else { return }
                let body = String(decoding: Array(rest.utf8.prefix(length)), as: UTF8.self)
                buffer = String(decoding: Array(rest.utf8.dropFirst(length)), as: UTF8.self)
                let path = lines[0].split(separator: " ").dropFirst().first.map(String.init) ?? ""
                let request = Request(path: path, host: header("Host"), signature: header("X-Twilio-Signature"), body: body)
                record(request)
                let status = answer(request)
                context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: "HTTP/1.1 \(status) X\r\nContent-Length: 0\r\n\r\n")), promise: nil)
            }
        }
    }
}
