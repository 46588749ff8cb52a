import AsyncHTTPClient
import NIOCore
import NIOHTTP1
import VoiceCoreEvents

/// An OpenAI-compatible chat-completions endpoint: where it is, the key and the model. Shared by
/// the intent detector and the receptionist's model, configured once from
/// `VOICECORE_AI_BASE_URL` (e.g. `https://api.openai.com/v1`), `VOICECORE_AI_API_KEY` and
/// `VOICECORE_AI_MODEL` (default `gpt-4o-mini`). The key travels only in the `Authorization`
/// header and is never printed (the type has no description that shows it).
public struct ChatCompletionsEndpoint: Sendable {
    public static let defaultModel = "gpt-4o-mini"

    /// Without a trailing slash.
    public var baseURL: String
    private let apiKey: String
    public var model: String
    let client: HTTPClient

    public init(baseURL: String, apiKey: String, model: String = ChatCompletionsEndpoint.defaultModel, client: HTTPClient = .shared) {
        self.baseURL = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
        self.apiKey = apiKey
        self.model = model
        self.client = client
    }

    /// The endpoint from the environment, or nil when `VOICECORE_AI_BASE_URL` is not set.
    public static func fromEnvironment(_ environment: [String: String]) -> ChatCompletionsEndpoint? {
        guard let base = environment["VOICECORE_AI_BASE_URL"], !base.isEmpty else { return nil }
        return ChatCompletionsEndpoint(baseURL: base, apiKey: environment["VOICECORE_AI_API_KEY"] ?? "",
                                       model: environment["VOICECORE_AI_MODEL"].flatMap { $0.isEmpty ? nil : $0 } ?? defaultModel)
    }

    /// POSTs `body` to `{base}/chat/completions`: the answer's status and body (at most 1 MiB).
    /// Transport errors and the client's timeouts are thrown as the HTTP client throws them.
    func post(_ body: JSONValue, timeout: Duration) async throws -> (status: Int, body: [UInt8]) {
        var request = HTTPClientRequest(url: baseURL + "/chat/completions")
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        if !apiKey.isEmpty { request.headers.add(name: "Authorization", value: "Bearer \(apiKey)") }
        request.body = .bytes(ByteBuffer(bytes: body.jsonText))
        let response = try await client.execute(request, timeout: .milliseconds(Int64(timeout / .milliseconds(1))))
        let bytes = try await response.body.collect(upTo: 1 << 20)
        return (Int(response.status.code), Array(buffer: bytes))
    }
}
