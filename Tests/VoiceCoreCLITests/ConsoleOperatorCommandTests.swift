import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import Testing
import VoiceCoreEvents
import VoiceCoreRedis
import VoiceCoreTestSupport

/// `voicecore edge` with an admin key serves the operator's console from the real servers: the
/// backends `edge` wires (streams and dead letters on Redis, the projections' status, the
/// tenants read on the read pool) are the ones the pages show.
@Suite("voicecore edge: the operator's console, as a process", .serialized)
struct ConsoleOperatorCommandTests {
    typealias Child = UpCommandTests.Child

    /// Answers as they come: a sign-in's 303 carries the session cookie, so redirects are not followed.
    static let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: HTTPClient.Configuration(redirectConfiguration: .disallow))

    static func request(_ url: String, method: HTTPMethod = .GET, cookie: String? = nil, form: String? = nil) async throws -> (status: Int, headers: HTTPHeaders, body: String) {
        var request = HTTPClientRequest(url: url)
        request.method = method
        if let cookie { request.headers.add(name: "Cookie", value: cookie) }
        if let form {
            request.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
            request.body = .bytes(ByteBuffer(string: form))
        }
        let response = try await client.execute(request, timeout: .seconds(10))
        let body = try await response.body.collect(upTo: 1 << 22)
        return (Int(response.status.code), response.headers, String(buffer: body))
    }

    @Test("the platform page shows a stream's length and a projection's gap, the dead letters and the tenants, read through edge's own backends")
    func operatorPagesThroughTheEdgeProcess() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: UpCommandTests.binary.path), "build voicecore first (tools/test does)")
        let (databaseURL, drop) = try await ProbeCommandTests.schema()
        defer { Task { await drop() } }
        let prefix = "o\(UUID().uuidString.prefix(8).lowercased())"
        let naming = StreamNaming(partitions: 2, prefix: prefix)
        let redis = try await RedisClient.connect(try RedisConfiguration(url: TestServers.redisURL))
        defer {
            Task {
                if let keys = try? await redis.scanAll(match: "\(prefix):*"), !keys.isEmpty { _ = try? await redis.execute(.del(keys)) }
            }
        }
        // Two billing events no projector has read: the billing projection is 2 behind.
        let billing = naming.stream(.billing, kind: .event, partition: 1)
        for index in 0..<2 { _ = try await redis.execute(.xadd(billing, fields: [("n", String(index))])) }
        let origin = naming.stream(.crm, kind: .command, partition: 0)
        _ = try await redis.execute(.xadd("\(origin):dlq:svc-crm", fields: [
            ("type", "voicecore.test.thing"), ("dlq.origin_stream", origin), ("dlq.group", "svc-crm"), ("dlq.reason", "handler <failed>"),
        ]))

        let adminKey = "admin-\(UUID().uuidString)"
        let port = try UpCommandTests.freePort()
        let edge = try Child(["edge", "--port", String(port), "--prefix", prefix, "--partitions", "2"],
                             environment: ["VOICECORE_MASTER_KEY": ProbeCommandTests.masterKey, "REDIS_URL": TestServers.redisURL, "DATABASE_URL": databaseURL,
                                           "VOICECORE_ADMIN_KEY": adminKey, "VOICECORE_PUBLIC_URL": "", "VOICECORE_LOG_LEVEL": "warning"])
        defer { edge.kill() }
        let base = "http://127.0.0.1:\(port)"
        try await ProbeCommandTests.poll(base + "/health", "edge listening", of: edge) { $0.status == 200 }

        let signIn = try await Self.request(base + "/app/sign-in", method: .POST, form: "key=\(adminKey)")
        #expect(signIn.status == 303)
        let cookie = try #require(signIn.headers.first(name: "Set-Cookie")?.split(separator: ";").first.map(String.init), "\(edge.text.suffix(2000))")

        let overview = try await Self.request(base + "/app/operator", cookie: cookie)
        #expect(overview.status == 200, "\(overview.body.prefix(2000))\n\(edge.text.suffix(2000))")
        let page = overview.body
        #expect(page.contains(#"<tr data-stream="\#(billing)" data-group="">"#))
        #expect(page.contains(#"<td class="number stream-length">2</td>"#))
        #expect(page.contains(#"<tr data-projection="billing" data-gap="2" class="behind">"#), "\(page)")
        #expect(page.contains(#"<tr data-projection="calls" data-gap="0">"#))

        let deadLetters = try await Self.request(base + "/app/operator/dead-letters", cookie: cookie)
        #expect(deadLetters.status == 200)
        #expect(deadLetters.body.contains(#"data-stream="\#(origin):dlq:svc-crm""#))

        let tenants = try await Self.request(base + "/app/operator/tenants", cookie: cookie)
        #expect(tenants.status == 200, "\(tenants.body.prefix(2000))")
        #expect(tenants.body.contains(#"id="tenants""#))

        let rates = try await Self.request(base + "/app/operator/rates.json", cookie: cookie)
        #expect(rates.status == 200)
        #expect(rates.body.contains(#""requests":"#))
    }
}
