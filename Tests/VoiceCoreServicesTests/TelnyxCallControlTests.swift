import AsyncHTTPClient
import CoreMetrics
import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOHTTP1
import ServiceLifecycle
import Synchronization
import Testing
import VoiceCoreBus
import VoiceCoreEdge
import VoiceCoreEvents
import VoiceCorePostgres
import VoiceCoreRedis
import VoiceCoreServices
import VoiceCoreTenants
import VoiceCoreTestSupport
import VoiceCoreTime

/// A local stand-in for Telnyx's REST API: records every request (method, path, headers, JSON
/// body) and answers each with the status `respond` gives (Telnyx's bodies: `{"data":{"result":"ok"}}`,
/// or an `errors` list).
final class FakeTelnyx: Sendable {
    struct Request: Sendable {
        var method: String
        var path: String
        var authorization: String?
        var contentType: String?
        var body: [String: JSONValue]

        var action: String { String(path.split(separator: "/").last ?? "") }
        var commandID: String? { body["command_id"]?.string }
        var clientState: String? { body["client_state"]?.string }
    }

    let received = Mutex<[Request]>([])
    private let respond: @Sendable (_ index: Int, _ request: Request) -> HTTPResponse.Status

    init(respond: @escaping @Sendable (_ index: Int, _ request: Request) -> HTTPResponse.Status = { _, _ in .ok }) {
        self.respond = respond
    }

    var requests: [Request] { received.withLock { $0 } }

    func requests(of callControlID: String) -> [Request] {
        requests.filter { $0.path.hasPrefix("/calls/\(callControlID)/") }
    }

    func serve(_ body: @Sendable (String) async throws -> Void) async throws {
        let router = Router()
        for method in [HTTPRequest.Method.post, .get, .put, .delete] {
            router.on("**", method: method) { request, _ -> Response in
                let bytes = Array(buffer: try await request.body.collect(upTo: 1 << 20))
                let recorded = Request(method: request.method.rawValue, path: request.uri.path, authorization: request.headers[.authorization],
                                       contentType: request.headers[.contentType], body: (try? JSONValue.object(parsing: bytes)) ?? [:])
                let index = self.received.withLock { received in
                    received.append(recorded)
                    return received.count - 1
                }
                let status = self.respond(index, recorded)
                let answer = (200..<300).contains(status.code) ? #"{"data":{"result":"ok"}}"#
                    : #"{"errors":[{"code":"90018","title":"Call has already ended","detail":"This call is no longer active"}]}"#
                return Response(status: status, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(string: answer)))
            }
        }
        try await withServer(router, body)
    }
}

/// Every log line (message and metadata) of the loggers it makes.
final class LogCapture: Sendable {
    let lines = Mutex<[String]>([])

    func logger(_ label: String) -> Logger {
        Logger(label: label) { _ in Handler(capture: self) }
    }

    struct Handler: LogHandler {
        let capture: LogCapture
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            let all = metadata.merging(event.metadata ?? [:]) { _, new in new }
            capture.lines.withLock { $0.append("\(event.level) \(event.message) \(all.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "))") }
        }
    }
}

/// Counters by label and dimensions, for `counted` checks.
final class CountingMetrics: MetricsFactory, Sendable {
    final class Count: CounterHandler, Sendable {
        let value = Atomic<Int64>(0)
        func increment(by amount: Int64) { value.add(amount, ordering: .relaxed) }
        func reset() { value.store(0, ordering: .relaxed) }
    }

    final class Ignored: RecorderHandler, TimerHandler, Sendable {
        func record(_ value: Int64) {}
        func record(_ value: Double) {}
        func recordNanoseconds(_ duration: Int64) {}
    }

    private let counts = Mutex<[String: Count]>([:])

    static func key(_ label: String, _ dimensions: [(String, String)]) -> String {
        label + dimensions.sorted { $0.0 < $1.0 }.map { "|\($0.0)=\($0.1)" }.joined()
    }

    func count(_ label: String, _ dimensions: [(String, String)]) -> Int64 {
        counts.withLock { $0[Self.key(label, dimensions)] }?.value.load(ordering: .relaxed) ?? 0
    }

    func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler {
        counts.withLock { counts in
            let key = Self.key(label, dimensions)
            if let existing = counts[key] { return existing }
            let count = Count()
            counts[key] = count
            return count
        }
    }

    func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler { Ignored() }
    func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler { Ignored() }
    func destroyCounter(_ handler: any CounterHandler) {}
    func destroyRecorder(_ handler: any RecorderHandler) {}
    func destroyTimer(_ handler: any TimerHandler) {}
}

@Suite("Telnyx Call Control", .serialized)
struct TelnyxCallControlTests {
    static let key = TelnyxAPIKey(bearerToken: "KEY0188_test_\(UUID().uuidString.prefix(8))")

    static func fastRetries(_ base: String, attempts: Int = 3) -> TelnyxConfiguration {
        TelnyxConfiguration(apiURL: base, timeout: .seconds(5), attempts: attempts, backoff: RetryBackoff(initial: .milliseconds(10), maximum: .milliseconds(50)))
    }

    @Test("a command goes out as Telnyx documents it: POST /calls/{id}/actions/{action}, Bearer the tenant's key, JSON with command_id and client_state")
    func wireFormat() async throws {
        let fake = FakeTelnyx()
        let commandID = Identifier.v7()
        try await fake.serve { base in
            let control = TelnyxCallControl(configuration: Self.fastRetries(base), logger: Logger(label: "test.telnyx"))
            let command = CallControlCommand(action: "gather_using_speak", callControlID: "v3:Abc-123_x", commandID: commandID,
                                             clientState: CallControlState.clientState(turn: 3), fields: ["payload": .string("How can we help?")])
            let outcome = try await control.send(command, key: Self.key)
            #expect(outcome == .accepted)
        }
        let requests = fake.requests
        try #require(requests.count == 1)
        let request = requests[0]
        #expect(request.method == "POST")
        #expect(request.path == "/calls/v3:Abc-123_x/actions/gather_using_speak")
        #expect(request.authorization == "Bearer \(Self.key.bearerToken)")
        #expect(request.contentType == "application/json")
        #expect(request.commandID == commandID.description)
        #expect(request.clientState == "Mw==")  // base64("3")
        #expect(Data(base64Encoded: request.clientState ?? "").map { String(decoding: $0, as: UTF8.self) } == "3")
        #expect(request.body["payload"]?.string == "How can we help?")
    }

    @Test("the client_state names the turn both ways; a foreign one names none")
    func clientState() {
        for turn in [1, 2, 9, 10, 42, 2_147_483_647] {
            #expect(CallControlState.turn(clientState: CallControlState.clientState(turn: turn)) == turn)
        }
        for foreign in [nil, "", "aGF2ZSBhIG5pY2UgZGF5ID1d", CallControlState.closing, Data("0".utf8).base64EncodedString(),
                        Data("-1".utf8).base64EncodedString(), Data("2147483648".utf8).base64EncodedString(), "not base64!"] {
            #expect(CallControlState.turn(clientState: foreign) == nil)
        }
        // The speak before a follow-up names the turn it closes, and awaits none.
        for turn in [1, 9, 10, 2_147_483_647] {
            #expect(CallControlState.closingTurn(clientState: CallControlState.closing(after: turn)) == turn)
            #expect(CallControlState.turn(clientState: CallControlState.closing(after: turn)) == nil)
        }
        for other in [nil, "", CallControlState.closing, CallControlState.clientState(turn: 3), Data("closing:".utf8).base64EncodedString(),
                      Data("closing:0".utf8).base64EncodedString(), Data("closing:2147483648".utf8).base64EncodedString(),
                      Data("closing:1x".utf8).base64EncodedString(), "not base64!"] {
            #expect(CallControlState.closingTurn(clientState: other) == nil)
        }
    }

    @Test("5xx and 429 are retried with the same command_id until Telnyx takes the command")
    func retriesServerErrors() async throws {
        let fake = FakeTelnyx { index, _ in [HTTPResponse.Status.internalServerError, .tooManyRequests][safe: index] ?? .ok }
        let metrics = CountingMetrics()
        try await fake.serve { base in
            let control = TelnyxCallControl(configuration: Self.fastRetries(base), metrics: TelephonyMetrics(factory: metrics), logger: Logger(label: "test.telnyx"))
            let outcome = try await control.send(CallControlCommand(action: "answer", callControlID: "v3:retried", commandID: .v7(), clientState: "MQ=="), key: Self.key)
            #expect(outcome == .accepted)
        }
        let requests = fake.requests
        #expect(requests.count == 3)
        #expect(Set(requests.map(\.commandID)).count == 1)
        #expect(metrics.count(TelephonyMetrics.commandsLabel, [("action", "answer"), ("outcome", "retried")]) == 2)
        #expect(metrics.count(TelephonyMetrics.commandsLabel, [("action", "answer"), ("outcome", "accepted")]) == 1)
    }

    @Test("a 4xx is final: counted, not retried; Telnyx down past every attempt is an error the consumer group retries")
    func refusedAndUnavailable() async throws {
        let refusing = FakeTelnyx { _, _ in .unprocessableContent }
        let metrics = CountingMetrics()
        try await refusing.serve { base in
            let control = TelnyxCallControl(configuration: Self.fastRetries(base), metrics: TelephonyMetrics(factory: metrics), logger: Logger(label: "test.telnyx"))
            let outcome = try await control.send(CallControlCommand(action: "speak", callControlID: "v3:ended", commandID: .v7(), clientState: "MQ=="), key: Self.key)
            #expect(outcome == .refused(status: 422, code: "90018"))
        }
        #expect(refusing.requests.count == 1)
        #expect(metrics.count(TelephonyMetrics.commandsLabel, [("action", "speak"), ("outcome", "refused")]) == 1)

        let down = FakeTelnyx { _, _ in .serviceUnavailable }
        try await down.serve { base in
            let control = TelnyxCallControl(configuration: Self.fastRetries(base, attempts: 4), logger: Logger(label: "test.telnyx"))
            await #expect(throws: TelnyxCallControl.Unavailable.self) {
                _ = try await control.send(CallControlCommand(action: "hangup", callControlID: "v3:down", commandID: .v7(), clientState: "MQ=="), key: Self.key)
            }
        }
        #expect(down.requests.count == 4)
    }

    // MARK: The edge's mapping

    static let mappingTenant = Identifier("0193a1b2-7c4d-7e5f-8a9b-0c1d2e3f4a5b")!

    static func mapped(_ body: String) throws -> TelnyxMapping.Command? {
        try TelnyxMapping.command(try TelnyxMapping.parse(Array(body.utf8)), tenant: mappingTenant)
    }

    @Test("call.gather.ended → the turn its client_state names; hang-ups, cancels and foreign client_state are no turn")
    func gatherMapping() throws {
        guard case .turn(let turn)? = try Self.mapped(Self.webhook("call.gather.ended", callControlID: "v3:map", payload: [
            "digits": .string("12#"), "status": .string("valid"), "client_state": .string(CallControlState.clientState(turn: 7)),
            "from": .string("sip:alice@example.com"),
        ])) else { throw TestFailure("no turn") }
        #expect(turn.turn == 7 && turn.digits == "12#" && turn.text == "" && turn.channel == .callControl && turn.from == nil && turn.to == "+14155550199")
        #expect(turn.callID == CallID.derive(tenant: Self.mappingTenant, provider: .telnyx, providerCallID: "v3:map"))
        guard case .turn(let silent)? = try Self.mapped(Self.webhook("call.gather.ended", callControlID: "v3:map", payload: [
            "digits": .string(""), "status": .string("timeout"), "client_state": .string("MQ=="),
        ])) else { throw TestFailure("a timeout is a turn") }
        #expect(silent.turn == 1 && silent.digits == nil)
        for (status, state) in [("call_hangup", "MQ=="), ("cancelled", "MQ=="), ("valid", "aGF2ZSBhIG5pY2UgZGF5ID1d"), ("valid", CallControlState.closing)] {
            #expect(try Self.mapped(Self.webhook("call.gather.ended", callControlID: "v3:map", payload: [
                "digits": .string("1"), "status": .string(status), "client_state": .string(state),
            ])) == nil)
        }
        #expect(throws: (any Error).self) {
            _ = try Self.mapped(Self.webhook("call.gather.ended", callControlID: "v3 bad", payload: ["status": .string("valid"), "client_state": .string("MQ==")]))
        }
    }

    @Test("call.speak.ended of a closing reply's speak → ReportPromptPlayed for its turn; a gather prompt's, a foreign one's or one cut off by the hang-up is nothing")
    func speakEndedMapping() throws {
        guard case .promptPlayed(let played)? = try Self.mapped(Self.webhook("call.speak.ended", callControlID: "v3:spoke", payload: [
            "status": .string("completed"), "client_state": .string(CallControlState.closing(after: 4)),
        ])) else { throw TestFailure("no prompt played") }
        #expect(played.turn == 4 && played.provider == .telnyx && played.providerCallID == "v3:spoke")
        #expect(played.callID == CallID.derive(tenant: Self.mappingTenant, provider: .telnyx, providerCallID: "v3:spoke"))
        for (status, state) in [("call_hangup", CallControlState.closing(after: 4)), ("completed", CallControlState.closing),
                                ("completed", CallControlState.clientState(turn: 4)), ("completed", "aGF2ZSBhIG5pY2UgZGF5ID1d")] {
            #expect(try Self.mapped(Self.webhook("call.speak.ended", callControlID: "v3:spoke", payload: [
                "status": .string(status), "client_state": .string(state),
            ])) == nil)
        }
        #expect(throws: (any Error).self) {
            _ = try Self.mapped(Self.webhook("call.speak.ended", callControlID: "v3 bad", payload: ["client_state": .string(CallControlState.closing(after: 1))]))
        }
    }

    @Test("call.recording.saved of the voicemail the service recorded → ReportRecording; any other recording is no voicemail")
    func recordingMapping() throws {
        guard case .recording(let recording)? = try Self.mapped(Self.webhook("call.recording.saved", callControlID: "v3:rec", payload: [
            "client_state": .string(CallControlState.closing), "recording_started_at": .string("2026-12-07T10:00:00Z"),
            "recording_ended_at": .string("2026-12-07T10:00:10Z"),
            "recording_urls": .object(["mp3": .string("https://example.com/" + String(repeating: "a", count: 3000))]),
        ], id: "6a1f2b9e-0000-4000-8000-000000000001")) else { throw TestFailure("no recording") }
        // No recording_id: the webhook's id names it; a URL too long to keep is left out.
        #expect(recording.recordingID == "6a1f2b9e-0000-4000-8000-000000000001" && recording.durationSeconds == 10 && recording.recordingURL == nil)
        #expect(try Self.mapped(Self.webhook("call.recording.saved", callControlID: "v3:rec", payload: ["client_state": .string("MQ==")])) == nil)
        #expect(try Self.mapped(Self.webhook("call.recording.saved", callControlID: "v3:rec", payload: [:])) == nil)
    }

    @Test("a final transcript of the caller's track is the turn's speech; partials and the receptionist's own voice are not")
    func speechMapping() throws {
        func turn(_ data: [String: JSONValue], state: String = "Mg==") throws -> ReportCallerTurn? {
            try TelnyxMapping.speechTurn(try TelnyxMapping.parse(Array(Self.webhook("call.transcription", callControlID: "v3:speech", payload: [
                "client_state": .string(state), "transcription_data": .object(data),
            ]).utf8)), tenant: Self.mappingTenant)
        }
        let final = try turn(["transcript": .string(" I need a cleaning "), "is_final": .bool(true), "confidence": .number("0.93"), "transcription_track": .string("inbound")])
        #expect(final?.turn == 2 && final?.text == "I need a cleaning" && final?.confidence == 0.93 && final?.channel == .callControl && final?.digits == nil)
        #expect(try turn(["transcript": .string("I need"), "is_final": .bool(false), "transcription_track": .string("inbound")]) == nil)
        #expect(try turn(["transcript": .string("How can we help?"), "is_final": .bool(true), "transcription_track": .string("outbound")]) == nil)
        #expect(try turn(["transcript": .string("   "), "is_final": .bool(true)]) == nil)
        #expect(try turn(["transcript": .string("hello"), "is_final": .bool(true)], state: CallControlState.closing) == nil)
    }

    // MARK: Credentials

    @Test("the admin API takes telnyx_api_key write-only: sealed at rest, reported as telnyx_api_key_set, a malformed one refused with a 422")
    func adminAPI() async throws {
        let fixture = try await PlatformFixture()
        do {
            let adminKey = "admin-\(UUID().uuidString)"
            let apiKey = "KEY0188_\(UUID().uuidString)_admin"
            let edgeRedis = try await RedisClient.connect(fixture.redisConfiguration)
            let edge = Edge(configuration: EdgeConfiguration(host: "127.0.0.1", port: 0, tenantCacheTTL: .zero, adminKey: adminKey),
                            publisher: Publisher(connection: edgeRedis, configuration: PublisherConfiguration(source: "/edge", naming: fixture.naming)),
                            lookup: fixture.directory, directory: fixture.directory, registry: nil)
            try await withEdge(edge) { base in
                func call(_ method: HTTPMethod, _ path: String, _ body: String?) async throws -> (Int, String, String?) {
                    var request = HTTPClientRequest(url: base + path)
                    request.method = method
                    request.headers.add(name: "Authorization", value: "Bearer \(adminKey)")
                    if let body {
                        request.headers.add(name: "Content-Type", value: "application/json")
                        request.body = .bytes(ByteBuffer(string: body))
                    }
                    let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
                    let text = String(buffer: try await response.body.collect(upTo: 1 << 20))
                    return (Int(response.status.code), text, response.headers.first(name: "Content-Type"))
                }
                let (created, createdBody, _) = try await call(.POST, "/admin/tenants", #"{"name":"Keyed Clinic","telnyx_api_key":"\#(apiKey)"}"#)
                #expect(created == 201)
                #expect(createdBody.contains(#""telnyx_api_key_set":true"#))
                #expect(!createdBody.contains(apiKey))
                let document = try JSONValue.object(parsing: Array(createdBody.utf8))
                let tenant = try #require(document["tenant_id"]?.string.flatMap(Identifier.init))
                guard case .key(let stored) = try await fixture.directory.telnyxAccess(of: tenant) else { throw TestFailure("no key stored") }
                #expect(stored.bearerToken == apiKey)
                #expect(!"\(stored)".contains(apiKey))
                // Sealed: the column holds no byte run of the key.
                let raw = try await fixture.db.query("SELECT telnyx_api_key FROM tenant_directory WHERE tenant_id = \(tenant.uuid)")[0].decode(PostgresBytes.self, "telnyx_api_key").bytes
                #expect(raw.count > apiKey.utf8.count && !String(decoding: raw, as: UTF8.self).contains(apiKey))

                let (refused, problem, type) = try await call(.PATCH, "/admin/tenants/\(tenant)", #"{"telnyx_api_key":"has a space"}"#)
                #expect(refused == 422 && type == "application/problem+json" && problem.contains("body.telnyx_api_key"))
                let (changed, _, _) = try await call(.PATCH, "/admin/tenants/\(tenant)", #"{"telnyx_api_key":"\#(apiKey)-rotated"}"#)
                #expect(changed == 204)
                guard case .key(let rotated) = try await fixture.directory.telnyxAccess(of: tenant) else { throw TestFailure("no key stored") }
                #expect(rotated.bearerToken == apiKey + "-rotated")
                let (listed, list, _) = try await call(.GET, "/admin/tenants", nil)
                #expect(listed == 200 && list.contains(#""telnyx_api_key_set":true"#) && !list.contains(apiKey))
                #expect(try await fixture.directory.summary(of: fixture.tenant)?.hasTelnyxAPIKey == false)
            }
        } catch {
            try? await fixture.drop()
            throw error
        }
        try await fixture.drop()
    }

    // MARK: End to end

    /// A signed Telnyx webhook body of `eventType` for the call.
    static func webhook(_ eventType: String, callControlID: String, payload extra: [String: JSONValue] = [:], id: String = UUID().uuidString) -> String {
        var payload: [String: JSONValue] = ["call_control_id": .string(callControlID), "connection_id": .string("1684641123236054244"),
                                            "from": .string("+14155550100"), "to": .string("+14155550199"), "direction": .string("incoming")]
        payload.merge(extra) { _, new in new }
        let data: [String: JSONValue] = ["record_type": .string("event"), "event_type": .string(eventType), "id": .string(id),
                                         "occurred_at": .string(Timestamp.now.rfc3339), "payload": .object(payload)]
        return String(decoding: JSONValue.object(["data": .object(data)]).jsonText, as: UTF8.self)
    }

    static func post(_ body: String, tenant: Identifier, signing: Curve25519.Signing.PrivateKey, to base: String) async throws -> Int {
        let timestamp = Int64(Date().timeIntervalSince1970)
        var request = HTTPClientRequest(url: "\(base)/webhooks/telnyx/\(tenant)")
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "telnyx-signature-ed25519", value: try TelnyxSignature.sign(body: Array(body.utf8), timestamp: timestamp, privateKey: signing))
        request.headers.add(name: "telnyx-timestamp", value: String(timestamp))
        request.body = .bytes(ByteBuffer(string: body))
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
        _ = try await response.body.collect(upTo: 1 << 20)
        return Int(response.status.code)
    }

    /// Every message of type `M` on the fixture's streams of `M`'s category and `kind`.
    static func messages<M: Message>(_ type: M.Type, _ fixture: PlatformFixture, kind: MessageKind) async throws -> [(EventEnvelope, M)] {
        var found: [(EventEnvelope, M)] = []
        for stream in fixture.naming.streams(M.category, kind: kind) {
            for entry in try await fixture.redis.execute(.xrange(stream)) {
                let envelope = try EventEnvelope(fields: (entry.fields ?? []).map { EnvelopeField(name: $0.name, value: $0.value) })
                guard envelope.type == M.type else { continue }
                found.append((envelope, try M(json: try JSONObject.parse(envelope.data))))
            }
        }
        return found
    }

    struct Platform {
        let fixture: PlatformFixture
        let tenant: Identifier
        let signing: Curve25519.Signing.PrivateKey
        let apiKey: String
        /// A new telephony service (a fresh process's: nothing in memory) speaking to the fake.
        let telephony: @Sendable () async throws -> ConsumerGroupRunner
    }

    /// A fixture with a Telnyx tenant (public key and API key), its edge, the call service and the
    /// telephony service (speaking to `fake`) running while `body` runs with the edge's base URL.
    static func withTelnyxPlatform(_ fake: FakeTelnyx, logs: LogCapture, metrics: CountingMetrics, apiKey: String? = "KEY0188_\(UUID().uuidString)_secret",
                                   runsTelephony: Bool = true, _ body: @Sendable (Platform, String) async throws -> Void) async throws {
        let fixture = try await PlatformFixture()
        do {
            let signing = Curve25519.Signing.PrivateKey()
            let tenant = try await fixture.directory.provision(
                NewTenant(name: "Harbor Vets", telnyxPublicKey: signing.publicKey.rawRepresentation.base64EncodedString(), telnyxAPIKey: apiKey),
                publisher: fixture.publisher).tenant.id
            try await fake.serve { telnyxBase in
                let dependencies = ServiceDependencies(redis: fixture.redisConfiguration, naming: fixture.naming,
                                                       tenants: TenantProfiles(source: fixture.directory, ttl: .milliseconds(200)), instance: "test",
                                                       logger: logs.logger("test.services"))
                let makeTelephony: @Sendable () async throws -> ConsumerGroupRunner = {
                    try await TelephonyService.runner(dependencies, directory: fixture.directory, configuration: fastRetries(telnyxBase),
                                                      metrics: TelephonyMetrics(factory: metrics))
                }
                let telephony: [any Service] = runsTelephony ? [try await makeTelephony()] : []
                let calls = try await CallLifecycleService.runner(dependencies)
                let edgeRedis = try await RedisClient.connect(fixture.redisConfiguration)
                let edge = Edge(configuration: EdgeConfiguration(host: "127.0.0.1", port: 0, tenantCacheTTL: .zero),
                                publisher: Publisher(connection: edgeRedis, configuration: PublisherConfiguration(source: "/edge", naming: fixture.naming)),
                                lookup: fixture.directory, directory: fixture.directory, registry: nil, logger: logs.logger("test.edge"))
                try await withEdge(edge, alongside: [calls] + telephony) { base in
                    try await body(Platform(fixture: fixture, tenant: tenant, signing: signing, apiKey: apiKey ?? "", telephony: makeTelephony), base)
                }
            }
        } catch {
            try? await fixture.drop()
            throw error
        }
        try await fixture.drop()
    }

    /// The receptionist's reply to a turn, published as the receptionist would.
    static func reply(_ platform: Platform, call: Identifier, callControlID: String, turn: Int, heard: String, text: String, action: ReceptionistAction,
                      transferTo: String? = nil) async throws {
        let commandID = ReportCallerTurn.commandID(callID: call, turn: turn)
        let reply = ReceptionistReplied(callID: call, provider: .telnyx, providerCallID: callControlID, turn: turn, channel: .callControl, heard: heard,
                                        text: text, action: action, transferTo: transferTo, decidedBy: .builtIn, repliedAt: .now)
        let envelope = EventEnvelope(reply, tenant: platform.tenant, source: "/services/receptionist", causationID: commandID,
                                     id: ReceptionistReplied.replyID(commandID: commandID))
        _ = try await platform.fixture.publisher.publish(envelope, category: .conversations, kind: .event)
    }

    /// Telnyx's signed `call.speak.ended` for the speak of the reply to `turn`, as the edge receives it.
    static func speakEnded(_ platform: Platform, callControlID: String, turn: Int, status: String = "completed", id: String = UUID().uuidString,
                           to base: String) async throws {
        let body = Self.webhook("call.speak.ended", callControlID: callControlID,
                                payload: ["status": .string(status), "client_state": .string(CallControlState.closing(after: turn))], id: id)
        #expect(try await Self.post(body, tenant: platform.tenant, signing: platform.signing, to: base) == 200)
    }

    static func expectedID(_ call: Identifier, _ name: String) -> String {
        Identifier.v5(namespace: call, name: "telnyx:\(name)").description
    }

    @Test("a Telnyx call converses: answered and greeted, a signed call.gather.ended becomes the caller's turn, replies become the next gather, a transfer and a hang-up")
    func conversation() async throws {
        let fake = FakeTelnyx()
        let logs = LogCapture()
        let metrics = CountingMetrics()
        let apiKey = "KEY0188_\(UUID().uuidString)_secret"
        try await Self.withTelnyxPlatform(fake, logs: logs, metrics: metrics, apiKey: apiKey) { platform, base in
            let fixture = platform.fixture
            let callControlID = "v3:conv-\(UUID().uuidString.prefix(8))"
            let call = CallID.derive(tenant: platform.tenant, provider: .telnyx, providerCallID: callControlID)

            // The call arrives: answered, transcribed, greeted with a gather for turn 1.
            #expect(try await Self.post(Self.webhook("call.initiated", callControlID: callControlID), tenant: platform.tenant, signing: platform.signing, to: base) == 200)
            try await fixture.eventually("answer, transcription_start, gather") { fake.requests(of: callControlID).count >= 3 }
            let opening = fake.requests(of: callControlID)
            #expect(opening.map(\.action) == ["answer", "transcription_start", "gather_using_speak"])
            #expect(opening.allSatisfy { $0.method == "POST" && $0.authorization == "Bearer \(apiKey)" && $0.contentType == "application/json" })
            #expect(opening.map(\.commandID) == [Self.expectedID(call, "answer"), Self.expectedID(call, "transcription"), Self.expectedID(call, "gather:1")])
            #expect(opening.allSatisfy { $0.clientState == CallControlState.clientState(turn: 1) })
            #expect(opening[1].body["transcription_tracks"]?.string == "inbound")
            #expect(opening[2].body["payload"]?.string == AISettings.builtIn.greeting)
            #expect(opening[2].body["voice"]?.string == "female")

            // The caller presses 2: the gather's signed webhook becomes turn 1. A transcript of the
            // same turn, and Telnyx retrying the webhook, are the same command.
            let gatherEnded = Self.webhook("call.gather.ended", callControlID: callControlID,
                                           payload: ["digits": .string("2"), "status": .string("valid"), "client_state": .string("MQ==")])
            #expect(try await Self.post(gatherEnded, tenant: platform.tenant, signing: platform.signing, to: base) == 200)
            #expect(try await Self.post(gatherEnded, tenant: platform.tenant, signing: platform.signing, to: base) == 200)
            let transcript = Self.webhook("call.transcription", callControlID: callControlID, payload: [
                "client_state": .string("MQ=="),
                "transcription_data": .object(["transcript": .string("two please"), "is_final": .bool(true), "confidence": .number("0.9"),
                                               "transcription_track": .string("inbound")]),
            ])
            #expect(try await Self.post(transcript, tenant: platform.tenant, signing: platform.signing, to: base) == 200)
            let turns = try await Self.messages(ReportCallerTurn.self, fixture, kind: .command)
            try #require(turns.count == 1)
            let (envelope, turn) = turns[0]
            #expect(envelope.id == ReportCallerTurn.commandID(callID: call, turn: 1))
            #expect(turn.callID == call && turn.turn == 1 && turn.digits == "2" && turn.text == "" && turn.channel == .callControl)
            #expect(turn.provider == .telnyx && turn.providerCallID == callControlID && turn.from == "+14155550100")

            // A gather that ended with the hang-up is no turn.
            let hungUp = Self.webhook("call.gather.ended", callControlID: callControlID, payload: ["status": .string("call_hangup"), "client_state": .string("Mg==")])
            #expect(try await Self.post(hungUp, tenant: platform.tenant, signing: platform.signing, to: base) == 200)
            #expect(try await Self.messages(ReportCallerTurn.self, fixture, kind: .command).count == 1)

            // continue → the next gather, waiting for turn 2 (no gather to stop after keys).
            try await Self.reply(platform, call: call, callControlID: callControlID, turn: 1, heard: "2", text: "Which day suits you?", action: .continue)
            try await fixture.eventually("the gather for turn 2") { fake.requests(of: callControlID).count >= 4 }
            let next = fake.requests(of: callControlID)[3]
            #expect(next.action == "gather_using_speak" && next.commandID == Self.expectedID(call, "gather:2"))
            #expect(next.clientState == CallControlState.clientState(turn: 2) && next.body["payload"]?.string == "Which day suits you?")

            // transfer after a spoken turn → gather_stop, speak, then transfer.
            try await Self.reply(platform, call: call, callControlID: callControlID, turn: 2, heard: "can I talk to a person", text: "Connecting you now.",
                                 action: .transfer, transferTo: "+14155550123")
            try await fixture.eventually("gather_stop, speak") { fake.requests(of: callControlID).count >= 6 }
            try await Self.speakEnded(platform, callControlID: callControlID, turn: 2, to: base)
            try await fixture.eventually("transfer") { fake.requests(of: callControlID).count >= 7 }
            let transfer = Array(fake.requests(of: callControlID)[4...])
            #expect(transfer.map(\.action) == ["gather_stop", "speak", "transfer"])
            #expect(transfer.map(\.commandID) == [Self.expectedID(call, "gather_stop:2"), Self.expectedID(call, "speak:2"), Self.expectedID(call, "transfer:2")])
            #expect(transfer[1].body["payload"]?.string == "Connecting you now." && transfer[1].clientState == CallControlState.closing(after: 2))
            #expect(transfer[2].clientState == CallControlState.closing)
            #expect(transfer[2].body["to"]?.string == "+14155550123")

            // A hang-up on another call: speak, then hangup.
            let other = "v3:bye-\(UUID().uuidString.prefix(8))"
            let otherCall = CallID.derive(tenant: platform.tenant, provider: .telnyx, providerCallID: other)
            try await Self.reply(platform, call: otherCall, callControlID: other, turn: 4, heard: "that's all thanks", text: "Goodbye!", action: .hangup)
            try await fixture.eventually("speak") { fake.requests(of: other).count >= 2 }
            try await Self.speakEnded(platform, callControlID: other, turn: 4, to: base)
            try await fixture.eventually("hangup") { fake.requests(of: other).count >= 3 }
            #expect(fake.requests(of: other).map(\.action) == ["gather_stop", "speak", "hangup"])
            #expect(fake.requests(of: other).last?.commandID == Self.expectedID(otherCall, "hangup:4"))

            // A reply of a Twilio call is not this service's.
            let twilioCall = CallID.derive(tenant: platform.tenant, provider: .twilio, providerCallID: "CA0123")
            let twilioReply = ReceptionistReplied(callID: twilioCall, provider: .twilio, providerCallID: "CA0123", turn: 1, channel: .gather, heard: "hi",
                                                  text: "Hello", action: .hangup, decidedBy: .builtIn, repliedAt: .now)
            _ = try await fixture.publisher.publish(EventEnvelope(twilioReply, tenant: platform.tenant, source: "/test"), category: .conversations, kind: .event)

            // The voicemail path: speak, then record the caller's track.
            let third = "v3:vm-\(UUID().uuidString.prefix(8))"
            let thirdCall = CallID.derive(tenant: platform.tenant, provider: .telnyx, providerCallID: third)
            try await Self.reply(platform, call: thirdCall, callControlID: third, turn: 1, heard: "", text: "Please leave a message.", action: .voicemail)
            try await fixture.eventually("speak") { fake.requests(of: third).count >= 1 }
            try await Self.speakEnded(platform, callControlID: third, turn: 1, to: base)
            try await fixture.eventually("record_start") { fake.requests(of: third).count >= 2 }
            #expect(fake.requests(of: third).map(\.action) == ["speak", "record_start"])
            #expect(fake.requests(of: third).last?.body["recording_track"]?.string == "inbound")
            #expect(!fake.requests.contains { $0.path.contains("CA0123") })

            // The voicemail Telnyx saved (its record_start's client_state) is reported to the call service.
            let saved = Self.webhook("call.recording.saved", callControlID: third, payload: [
                "client_state": .string(CallControlState.closing), "recording_id": .string("rec-\(third.dropFirst(3))"), "channels": .string("single"),
                "recording_started_at": .string("2026-12-07T10:00:00Z"), "recording_ended_at": .string("2026-12-07T10:00:41.6Z"),
                "recording_urls": .object(["mp3": .string("https://s3.amazonaws.com/telnyx/rec.mp3?X-Amz-Signature=abc")]),
            ])
            #expect(try await Self.post(saved, tenant: platform.tenant, signing: platform.signing, to: base) == 200)
            let recordings = try await Self.messages(ReportRecording.self, fixture, kind: .command)
            try #require(recordings.count == 1)
            let recording = recordings[0].1
            #expect(recording.callID == thirdCall && recording.provider == .telnyx && recording.status == .completed && recording.durationSeconds == 42)
            #expect(recording.recordingID == "rec-\(third.dropFirst(3))" && recording.recordingURL == "https://s3.amazonaws.com/telnyx/rec.mp3?X-Amz-Signature=abc")
        }
        // The key went to Telnyx in headers only: no log line holds it.
        let lines = logs.lines.withLock { $0 }
        #expect(!lines.isEmpty)
        #expect(!lines.contains { $0.contains(apiKey) })
        #expect(metrics.count(TelephonyMetrics.commandsLabel, [("action", "answer"), ("outcome", "accepted")]) == 1)
    }

    @Test("a reply handled again (redelivered) sends the same command ids, which Telnyx ignores; Telnyx's 5xx are retried")
    func redeliveryAndServerErrors() async throws {
        // The first two requests fail with 500 and 503: the client retries the same command.
        let fake = FakeTelnyx { index, _ in index < 2 ? .internalServerError : .ok }
        let logs = LogCapture()
        let metrics = CountingMetrics()
        try await Self.withTelnyxPlatform(fake, logs: logs, metrics: metrics) { platform, base in
            let callControlID = "v3:again-\(UUID().uuidString.prefix(8))"
            let call = CallID.derive(tenant: platform.tenant, provider: .telnyx, providerCallID: callControlID)
            try await Self.reply(platform, call: call, callControlID: callControlID, turn: 3, heard: "7", text: "Anything else?", action: .continue)
            try await platform.fixture.eventually("the gather, after two failures") { fake.requests(of: callControlID).count >= 3 }
            #expect(Set(fake.requests(of: callControlID).map(\.commandID)) == [Self.expectedID(call, "gather:4")])
            // The same reply again, as a redelivery hands it over: the same command id.
            try await Self.reply(platform, call: call, callControlID: callControlID, turn: 3, heard: "7", text: "Anything else?", action: .continue)
            try await platform.fixture.eventually("the repeated gather") { fake.requests(of: callControlID).count >= 4 }
            #expect(Set(fake.requests(of: callControlID).map(\.commandID)) == [Self.expectedID(call, "gather:4")])
        }
        #expect(metrics.count(TelephonyMetrics.commandsLabel, [("action", "gather_using_speak"), ("outcome", "retried")]) == 2)
    }

    @Test("a transfer or hang-up waits for Telnyx's call.speak.ended: none before it, exactly one after, a redelivered or repeated speak.ended sends nothing new")
    func followUpWaitsForSpeechEnd() async throws {
        let fake = FakeTelnyx()
        let logs = LogCapture()
        let metrics = CountingMetrics()
        try await Self.withTelnyxPlatform(fake, logs: logs, metrics: metrics) { platform, base in
            let fixture = platform.fixture
            for (action, followUp) in [(ReceptionistAction.transfer, "transfer"), (.hangup, "hangup")] {
                let callControlID = "v3:\(followUp)-\(UUID().uuidString.prefix(8))"
                let call = CallID.derive(tenant: platform.tenant, provider: .telnyx, providerCallID: callControlID)
                try await Self.reply(platform, call: call, callControlID: callControlID, turn: 3, heard: "", text: "One moment, please.", action: action,
                                     transferTo: action == .transfer ? "+14155550123" : nil)
                try await fixture.eventually("the speak") { fake.requests(of: callControlID).count >= 1 }
                let speak = fake.requests(of: callControlID)[0]
                #expect(speak.action == "speak" && speak.clientState == CallControlState.closing(after: 3))
                // However long the speech takes, nothing follows until Telnyx says it ended. A
                // gather prompt's end, or a speech cut off by the hang-up, is no cue either.
                let gatherPrompt = Self.webhook("call.speak.ended", callControlID: callControlID,
                                                payload: ["status": .string("completed"), "client_state": .string(CallControlState.clientState(turn: 3))])
                #expect(try await Self.post(gatherPrompt, tenant: platform.tenant, signing: platform.signing, to: base) == 200)
                try await Self.speakEnded(platform, callControlID: callControlID, turn: 3, status: "call_hangup", to: base)
                try await Task.sleep(for: .seconds(1.5))
                #expect(fake.requests(of: callControlID).map(\.action) == ["speak"])

                let webhookID = UUID().uuidString
                try await Self.speakEnded(platform, callControlID: callControlID, turn: 3, id: webhookID, to: base)
                try await fixture.eventually("the \(followUp)") { fake.requests(of: callControlID).count >= 2 }
                let sent = fake.requests(of: callControlID)[1]
                #expect(sent.action == followUp && sent.commandID == Self.expectedID(call, "\(followUp):3") && sent.clientState == CallControlState.closing)
                if action == .transfer { #expect(sent.body["to"]?.string == "+14155550123") }

                // Telnyx redelivering the same webhook: deduplicated at the edge, nothing sent.
                try await Self.speakEnded(platform, callControlID: callControlID, turn: 3, id: webhookID, to: base)
                let played = try await Self.messages(ReportPromptPlayed.self, fixture, kind: .command).filter { $0.1.callID == call }
                #expect(played.count == 1 && played.first?.1.turn == 3)
                // Another speak.ended for the same turn (a second webhook id): the same command id, which Telnyx ignores.
                try await Self.speakEnded(platform, callControlID: callControlID, turn: 3, to: base)
                try await fixture.eventually("the repeated \(followUp)") { fake.requests(of: callControlID).count >= 3 }
                try await Task.sleep(for: .milliseconds(500))
                let all = fake.requests(of: callControlID)
                #expect(all.map(\.action) == ["speak", followUp, followUp])
                #expect(Set(all.dropFirst().map(\.commandID)) == [Self.expectedID(call, "\(followUp):3")])
            }
        }
    }

    @Test("the telephony service restarted between the reply and call.speak.ended still sends the follow-up it kept")
    func followUpSurvivesRestart() async throws {
        let fake = FakeTelnyx()
        let logs = LogCapture()
        let metrics = CountingMetrics()
        try await Self.withTelnyxPlatform(fake, logs: logs, metrics: metrics, runsTelephony: false) { platform, base in
            let fixture = platform.fixture
            let callControlID = "v3:restart-\(UUID().uuidString.prefix(8))"
            let call = CallID.derive(tenant: platform.tenant, provider: .telnyx, providerCallID: callControlID)
            // The first process handles the reply (speak) and stops while the caller listens.
            let first = ServiceGroup(services: [try await platform.telephony()], logger: Logger(label: "test.telephony.first"))
            let running = Task { try await first.run() }
            try await Self.reply(platform, call: call, callControlID: callControlID, turn: 2, heard: "0", text: "Transferring you now.",
                                 action: .transfer, transferTo: "+14155550177")
            try await fixture.eventually("the speak") { fake.requests(of: callControlID).count >= 1 }
            try await fixture.eventually("the reply acknowledged") {
                var pending = 0
                for stream in fixture.naming.streams(.conversations, kind: .event) {
                    let groups = (try? await fixture.redis.execute(.xinfoGroups(stream))) ?? []
                    pending += groups.filter { $0.name == TelephonyService.group }.map(\.pending).reduce(0, +)
                }
                return pending == 0
            }
            await first.triggerGracefulShutdown()
            try await running.value
            #expect(fake.requests(of: callControlID).map(\.action) == ["speak"])

            // The speech ends while no telephony service runs; a fresh one sends the transfer.
            try await Self.speakEnded(platform, callControlID: callControlID, turn: 2, to: base)
            let second = ServiceGroup(services: [try await platform.telephony()], logger: Logger(label: "test.telephony.second"))
            let again = Task { try await second.run() }
            do {
                try await fixture.eventually("the transfer") { fake.requests(of: callControlID).count >= 2 }
            } catch {
                await second.triggerGracefulShutdown()
                _ = await again.result
                throw error
            }
            await second.triggerGracefulShutdown()
            try await again.value
            let requests = fake.requests(of: callControlID)
            #expect(requests.map(\.action) == ["speak", "transfer"])
            #expect(requests.last?.commandID == Self.expectedID(call, "transfer:2") && requests.last?.body["to"]?.string == "+14155550177")
        }
    }

    @Test("a tenant without a Telnyx API key: its calls are counted and logged, acknowledged, never sent or retried")
    func tenantWithoutKey() async throws {
        let fake = FakeTelnyx()
        let logs = LogCapture()
        let metrics = CountingMetrics()
        try await Self.withTelnyxPlatform(fake, logs: logs, metrics: metrics, apiKey: nil) { platform, base in
            #expect(try await platform.fixture.directory.summary(of: platform.tenant)?.hasTelnyxAPIKey == false)
            let callControlID = "v3:nokey-\(UUID().uuidString.prefix(8))"
            #expect(try await Self.post(Self.webhook("call.initiated", callControlID: callControlID), tenant: platform.tenant, signing: platform.signing, to: base) == 200)
            try await platform.fixture.eventually("the skip counted") {
                metrics.count(TelephonyMetrics.skippedLabel, [("reason", "no_api_key")]) >= 1
            }
            // Acknowledged: nothing of the telephony group stays pending.
            try await platform.fixture.eventually("nothing pending") {
                var pending = 0
                for stream in platform.fixture.naming.streams(.calls, kind: .event) {
                    let groups = (try? await platform.fixture.redis.execute(.xinfoGroups(stream))) ?? []
                    pending += groups.filter { $0.name == TelephonyService.group }.map(\.pending).reduce(0, +)
                }
                return pending == 0
            }
            try await Task.sleep(for: .milliseconds(300))
            #expect(metrics.count(TelephonyMetrics.skippedLabel, [("reason", "no_api_key")]) == 1)
        }
        #expect(fake.requests.isEmpty)
        #expect(logs.lines.withLock { $0 }.contains { $0.contains("no Telnyx API key") })
    }
}

extension Array {
    subscript(safe index: Int) -> Element? { indices.contains(index) ? self[index] : nil }
}
