import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdWebSocket
import Logging
import NIOCore
import NIOHTTP1
import VoiceCoreEvents
import VoiceCoreTenants

/// The request context of the edge's WebSocket router: a WebSocket upgrade is answered from it,
/// and a refused upgrade is answered on its channel (``RefusedUpgradeResponse``).
public struct ConversationRelayRequestContext: RequestContext, WebSocketRequestContext {
    public var coreContext: CoreRequestContextStorage
    public let webSocket: WebSocketHandlerReference<Self>
    /// The connection the upgrade was asked on.
    let channel: any Channel

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        webSocket = .init()
        channel = source.channel
    }
}

/// Twilio ConversationRelay: `GET /webhooks/twilio/{tenant}/relay`, upgraded to a WebSocket.
///
/// The voice answer of a tenant in `relay` mode points Twilio here (`<Connect><ConversationRelay
/// url="wss://…/webhooks/twilio/{tenant}/relay">`). Twilio signs the upgrade request like a webhook:
/// `X-Twilio-Signature` is the HMAC of the WebSocket URL it opened (`wss://` scheme, path and query;
/// a GET has no parameters), keyed by the auth token — or by the shared key of a Webhook Setting
/// named in `X-Twilio-Webhooks-Signature-Settings`. Before upgrading, the edge answers an unknown
/// tenant 404, a missing or forged signature 403 and an unreachable tenant directory 503, as
/// problem+json, and publishes nothing.
extension Edge {
    /// The WebSocket router: what may be upgraded, and the session run on each WebSocket
    /// (``ConversationRelayConnection``). Sessions of this edge share `sessions`.
    func conversationRelayRouter(sessions: ConversationRelaySessions) -> Router<ConversationRelayRequestContext> {
        let router = Router(context: ConversationRelayRequestContext.self)
        let edge = self
        let relayMetrics = ConversationRelayMetrics(factory: metrics.factory)
        router.ws("/webhooks/twilio/{tenant}/relay", shouldUpgrade: { request, context in
            do {
                _ = try await edge.verifiedRelayUpgrade(request, context)
                return .upgrade([:])
            } catch let problem as Problem {
                relayMetrics.upgradeRefused(problem.status.code)
                try await RefusedUpgradeResponse.install(problem, on: context.channel)
                return .dontUpgrade
            } catch {
                edge.logger.warning("relay upgrade failed", metadata: ["error": "\(error)"])
                relayMetrics.upgradeRefused(503)
                try await RefusedUpgradeResponse.install(.unavailable("a dependency"), on: context.channel)
                return .dontUpgrade
            }
        }, onUpgrade: { inbound, outbound, context in
            guard let tenant = context.requestContext.parameters.get("tenant").flatMap(Identifier.init) else { return }
            let connection = ConversationRelayConnection(edge: edge, tenant: tenant, sessions: sessions, metrics: relayMetrics)
            await connection.run(inbound: inbound, outbound: outbound)
        })
        return router
    }

    /// Checks the upgrade request: the tenant (404), its directory (503) and the signature (403).
    func verifiedRelayUpgrade(_ request: Request, _ context: ConversationRelayRequestContext) async throws -> Identifier {
        guard let text = context.parameters.get("tenant"), let tenant = Identifier(text) else { throw Problem.unknownTenant }
        let credentials = try await credentials(of: tenant)
        guard let signature = request.headers[.twilioSignature] else {
            metrics.signatureFailure("twilio", TwilioSignature.Failure.missing.rawValue)
            throw Problem.forbidden
        }
        do throws(TwilioSignature.Failure) {
            let algorithm = try TwilioSignature.algorithm(settingsHeader: request.headers[.twilioSignatureSettings])
            let key = algorithm == nil ? credentials.twilioAuthToken : credentials.twilioSharedKey
            guard let key else { throw TwilioSignature.Failure.noKey }
            guard TwilioSignature.verify(signature: signature, url: relayURL(of: request), parameters: [], key: key, algorithm: algorithm ?? .hmacSHA1) else {
                throw TwilioSignature.Failure.mismatch
            }
        } catch {
            metrics.signatureFailure("twilio", error.rawValue)
            throw Problem.forbidden
        }
        return tenant
    }

    /// The WebSocket URL the provider opened: the public base with its scheme as a WebSocket's
    /// (`https` → `wss`, `http` → `ws`) plus the request target as received.
    func relayURL(of request: Request) -> String {
        Self.webSocketURL(base: publicBase(of: request)) + (request.head.path ?? "/")
    }

    /// `base` (an `http(s)://` URL) with the matching WebSocket scheme.
    static func webSocketURL(base: String) -> String {
        if base.lowercased().hasPrefix("https://") { return "wss://" + base.dropFirst("https://".count) }
        if base.lowercased().hasPrefix("http://") { return "ws://" + base.dropFirst("http://".count) }
        return base
    }
}

/// Answers a refused WebSocket upgrade with the edge's problem (403, 404, 503 …) instead of
/// hummingbird-websocket's bare 400.
///
/// The library answers every refused upgrade itself, `400` with no body, on the connection's
/// HTTP/1 pipeline. This handler, put on that pipeline by the route before it refuses, sits below
/// the library's HTTP codec and rewrites that answer: status, problem+json body, `Connection:
/// close`. Nothing else passes through it (the connection closes after the answer).
final class RefusedUpgradeResponse: ChannelOutboundHandler, RemovableChannelHandler, Sendable {
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private let status: HTTPResponseStatus
    private let headers: [(String, String)]
    private let body: [UInt8]

    init(_ problem: Problem) {
        status = HTTPResponseStatus(statusCode: problem.status.code)
        body = JSONObjectWriter.object { json in
            json.field("type", "about:blank")
            json.field("title", problem.title)
            json.field("status", problem.status.code)
            json.field("detail", problem.detail)
            json.field("field", problem.field)
        }
        headers = problem.headers.map { ($0.name.rawName, $0.value) }
    }

    /// Puts the handler for `problem` on `channel` (last: below the HTTP codec added after it).
    static func install(_ problem: Problem, on channel: any Channel) async throws {
        try await channel.pipeline.addHandler(RefusedUpgradeResponse(problem)).get()
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(var head):
            head.status = status
            var fields = HTTPHeaders(headers)
            fields.replaceOrAdd(name: "content-type", value: "application/problem+json")
            fields.replaceOrAdd(name: "content-length", value: String(body.count))
            fields.replaceOrAdd(name: "connection", value: "close")
            head.headers = fields
            context.write(wrapOutboundOut(.head(head)), promise: promise)
        case .body:
            // The library's refusal has no body; anything else would not match our length.
            promise?.succeed()
        case .end(let trailers):
            context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(bytes: body)))), promise: nil)
            context.write(wrapOutboundOut(.end(trailers)), promise: promise)
        }
    }
}

extension Edge {
    /// The relay's URL asked for without a WebSocket upgrade (a browser, a probe, a misconfigured
    /// provider): 426 with `Upgrade: websocket` says what to do instead of a bare 404 (an unknown
    /// tenant is still 404).
    func addConversationRelayPlainRoute(to router: Router<BasicRequestContext>) {
        router.get("/webhooks/twilio/{tenant}/relay") { _, context -> Response in
            // What is wrong with the URL itself comes first: a tenant that is not one is 404.
            _ = try await credentials(of: try tenantID(context))
            throw Problem(HTTPResponse.Status(code: 426, reasonPhrase: "Upgrade Required"), "Upgrade required",
                          detail: "this is Twilio ConversationRelay's WebSocket: open it with a signed WebSocket upgrade (Connection: Upgrade, Upgrade: websocket)",
                          headers: [.upgrade: "websocket"])
        }
    }
}
