import AsyncHTTPClient
import Foundation
import Logging
import Metrics
import NIOCore
import NIOHTTP1
import VoiceCoreBus
import VoiceCoreEvents
import VoiceCoreTenants

/// Where and how the telephony service reaches Telnyx Call Control.
///
/// From the environment: `VOICECORE_TELNYX_API_URL` (default `https://api.telnyx.com/v2`).
public struct TelnyxConfiguration: Sendable {
    /// The API's base URL, without a trailing slash; commands go to `{apiURL}/calls/{call_control_id}/actions/{action}`.
    public var apiURL: String
    /// One request's time limit.
    public var timeout: Duration
    /// Attempts of one command before the message is handed back to its consumer group (which
    /// retries it with its own backoff, then dead-letters it).
    public var attempts: Int
    /// Delay after a failed attempt; doubles per failure (±20 % jitter).
    public var backoff: RetryBackoff
    /// Telnyx's text-to-speech voice and language (`speak`, `gather_using_speak`).
    public var voice: String
    public var language: String
    /// How long a gather waits for keys after its prompt; then it ends as `timeout` and the turn is
    /// reported with what the caller said (or nothing).
    public var gatherTimeout: Duration

    public static let environmentVariable = "VOICECORE_TELNYX_API_URL"
    public static let defaultAPIURL = "https://api.telnyx.com/v2"

    public init(apiURL: String = TelnyxConfiguration.defaultAPIURL, timeout: Duration = .seconds(5), attempts: Int = 3,
                backoff: RetryBackoff = RetryBackoff(initial: .milliseconds(200), maximum: .seconds(2)), voice: String = "female",
                language: String = "en-US", gatherTimeout: Duration = .seconds(8)) {
        self.apiURL = apiURL.hasSuffix("/") ? String(apiURL.dropLast()) : apiURL
        self.timeout = timeout
        self.attempts = max(1, attempts)
        self.backoff = backoff
        self.voice = voice
        self.language = language
        self.gatherTimeout = gatherTimeout
    }

    /// The configuration `VOICECORE_TELNYX_API_URL` names (the defaults for the rest).
    public static func fromEnvironment(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> TelnyxConfiguration {
        guard let url = environment[environmentVariable], !url.isEmpty else { return TelnyxConfiguration() }
        return TelnyxConfiguration(apiURL: url)
    }
}

/// One Telnyx Call Control command: an action on a call, with its body.
///
/// Every command carries `command_id` (Telnyx ignores a second command with the same id on the
/// same call, so a redelivered message's repeat is harmless) and `client_state`
/// (``CallControlState``: the turn the call waits for, echoed by Telnyx in later webhooks).
public struct CallControlCommand: Sendable {
    /// The path segment after `/actions/` (`answer`, `gather_using_speak`, …).
    public var action: String
    public var callControlID: String
    public var commandID: Identifier
    public var clientState: String
    /// Action-specific fields (`payload`, `to`, …).
    public var fields: [String: JSONValue]

    public init(action: String, callControlID: String, commandID: Identifier, clientState: String, fields: [String: JSONValue] = [:]) {
        self.action = action
        self.callControlID = callControlID
        self.commandID = commandID
        self.clientState = clientState
        self.fields = fields
    }

    /// The JSON body: the fields plus `command_id` and `client_state`.
    public var body: [UInt8] {
        var members = fields
        members["command_id"] = .string(commandID.description)
        members["client_state"] = .string(clientState)
        return JSONValue.object(members).jsonText
    }
}

/// Telnyx Call Control's REST API over AsyncHTTPClient: one command at a time, `Bearer` the
/// tenant's API key, retried with backoff on 5xx, 429, timeouts and refused connections.
///
/// A 4xx other than 429 is final (a call that has ended, a malformed command): logged with the
/// status and Telnyx's error code, counted, not retried. The API key is never logged: it reaches
/// only the `Authorization` header.
public struct TelnyxCallControl: Sendable {
    /// How a command ended.
    public enum Outcome: Sendable, Equatable {
        case accepted
        /// Telnyx refused it (4xx): retrying would not help.
        case refused(status: Int, code: String?)
    }

    /// Telnyx did not take the command after every attempt (5xx, 429, timeouts): retry later.
    public struct Unavailable: Error, CustomStringConvertible {
        public var action: String
        public var reason: String
        public var description: String { "Telnyx Call Control did not take \(action): \(reason)" }
    }

    let configuration: TelnyxConfiguration
    let client: HTTPClient
    let metrics: TelephonyMetrics
    let logger: Logger

    public init(configuration: TelnyxConfiguration, client: HTTPClient = .shared, metrics: TelephonyMetrics = TelephonyMetrics(), logger: Logger) {
        self.configuration = configuration
        self.client = client
        self.metrics = metrics
        self.logger = logger
    }

    /// Sends `command`; retries it (same `command_id`) while Telnyx answers 5xx or 429 or does not
    /// answer, up to ``TelnyxConfiguration/attempts``, then throws ``Unavailable``.
    public func send(_ command: CallControlCommand, key: TelnyxAPIKey) async throws -> Outcome {
        var failure = ""
        for attempt in 1...configuration.attempts {
            if attempt > 1 { try await Task.sleep(for: configuration.backoff.delay(afterFailures: attempt - 1)) }
            do {
                let (status, body) = try await post(command, key: key)
                switch status {
                case 200..<300:
                    metrics.commands(command.action, "accepted").increment()
                    return .accepted
                case 429, 500...:
                    failure = "Telnyx answered \(status)"
                    metrics.commands(command.action, "retried").increment()
                default:
                    let code = Self.errorCode(body)
                    metrics.commands(command.action, "refused").increment()
                    logger.warning("Telnyx refused a call control command", metadata: [
                        "action": "\(command.action)", "command": "\(command.commandID)", "status": "\(status)", "telnyx_error": "\(code ?? "-")"])
                    return .refused(status: status, code: code)
                }
            } catch is CancellationError {
                throw CancellationError()
            } catch {
                failure = WebhookDeliverer.describe(error)
                metrics.commands(command.action, "retried").increment()
            }
            logger.info("Telnyx call control command failed; retrying", metadata: [
                "action": "\(command.action)", "command": "\(command.commandID)", "attempt": "\(attempt)", "error": "\(failure)"])
        }
        metrics.commands(command.action, "unavailable").increment()
        throw Unavailable(action: command.action, reason: failure)
    }

    private func post(_ command: CallControlCommand, key: TelnyxAPIKey) async throws -> (Int, [UInt8]) {
        // The call control id is opaque (`v3:…`): escaped as one path segment.
        let id = command.callControlID.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(CharacterSet(charactersIn: "/"))) ?? command.callControlID
        var request = HTTPClientRequest(url: "\(configuration.apiURL)/calls/\(id)/actions/\(command.action)")
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "Accept", value: "application/json")
        request.headers.add(name: "User-Agent", value: "VoiceCore-Telephony/1")
        request.headers.add(name: "Authorization", value: "Bearer \(key.bearerToken)")
        request.body = .bytes(ByteBuffer(bytes: command.body))
        let response = try await client.execute(request, timeout: .milliseconds(Int64(configuration.timeout / .milliseconds(1))))
        let body = (try? await response.body.collect(upTo: 64 * 1024)).map { Array(buffer: $0) } ?? []
        return (Int(response.status.code), body)
    }

    /// Telnyx's error code (`{"errors":[{"code":"90018",…}]}`), for the log.
    static func errorCode(_ body: [UInt8]) -> String? {
        guard let document = try? JSONValue.object(parsing: body), case .array(let errors)? = document["errors"],
              let code = errors.first?.object?["code"] else { return nil }
        let text = code.text
        return text.isEmpty || text.utf8.count > 32 ? nil : text
    }
}

/// The telephony service's metrics.
public struct TelephonyMetrics: Sendable {
    /// `voicecore_telnyx_commands_total{action, outcome}`: accepted, refused (4xx), retried, unavailable.
    public static let commandsLabel = "voicecore_telnyx_commands_total"
    /// `voicecore_telephony_skipped_total{reason}`: Telnyx calls the service could not steer
    /// (`no_api_key`, `unknown_tenant`).
    public static let skippedLabel = "voicecore_telephony_skipped_total"

    let factory: any MetricsFactory

    public init(factory: any MetricsFactory = MetricsSystem.factory) {
        self.factory = factory
    }

    func commands(_ action: String, _ outcome: String) -> Counter {
        Counter(label: Self.commandsLabel, dimensions: [("action", action), ("outcome", outcome)], factory: factory)
    }

    func skipped(_ reason: String) -> Counter {
        Counter(label: Self.skippedLabel, dimensions: [("reason", reason)], factory: factory)
    }
}
