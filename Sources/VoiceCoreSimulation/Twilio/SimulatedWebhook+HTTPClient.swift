import AsyncHTTPClient
import NIOCore
import NIOHTTP1

extension SimulatedWebhook {
    /// The POST Twilio would make, to the edge at `base` (for a few requests, as the demo plays
    /// them; ``WebhookLoadClient`` sends load).
    public func request(to base: String) -> HTTPClientRequest {
        var request = HTTPClientRequest(url: (base.hasSuffix("/") ? String(base.dropLast()) : base) + path)
        request.method = .POST
        for header in headers { request.headers.add(name: header.name, value: header.value) }
        request.body = .bytes(ByteBuffer(string: body))
        return request
    }
}
