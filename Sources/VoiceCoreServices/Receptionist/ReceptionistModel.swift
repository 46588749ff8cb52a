import AsyncHTTPClient
import Foundation
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import VoiceCoreEvents
import VoiceCoreTime

/// An OpenAI-compatible chat-completions model that chooses the receptionist's reply with a tool
/// call (off unless configured): `VOICECORE_AI_BASE_URL` (e.g. `https://api.openai.com/v1`),
/// `VOICECORE_AI_API_KEY`, `VOICECORE_AI_MODEL` (default `gpt-4o-mini`),
/// `VOICECORE_RECEPTIONIST_MODEL_TIMEOUT_MS` (default 2000: below the edge's 2.5 s turn deadline,
/// so the built-in policy still answers in time when the model does not).
///
/// Each request carries the tenant's persona, hours and FAQ in the system prompt, this call's
/// turns so far, the slots learned, and the tools `reply`, `request_appointment`, `take_message`,
/// `transfer`, `voicemail`, `hang_up` with `tool_choice: "required"`. The answer is checked: an
/// unknown tool, missing or malformed arguments, or a transfer the tenant's settings do not allow
/// (no forwarding number, closed) is a ``Failure``, and the caller gets the built-in policy's reply.
/// The API key is sent only in the `Authorization` header; it is in no error and no log.
public struct ReceptionistModel: Sendable {
    public var endpoint: ChatCompletionsEndpoint
    public var timeout: Duration
    public var baseURL: String { endpoint.baseURL }
    public var model: String { endpoint.model }

    public init(endpoint: ChatCompletionsEndpoint, timeout: Duration = .seconds(2)) {
        self.endpoint = endpoint
        self.timeout = timeout
    }

    public init(baseURL: String, apiKey: String, model: String = ChatCompletionsEndpoint.defaultModel, timeout: Duration = .seconds(2),
                client: HTTPClient = .shared) {
        self.init(endpoint: ChatCompletionsEndpoint(baseURL: baseURL, apiKey: apiKey, model: model, client: client), timeout: timeout)
    }

    /// The model from the environment, or nil when `VOICECORE_AI_BASE_URL` is not set.
    public static func fromEnvironment(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> ReceptionistModel? {
        guard let endpoint = ChatCompletionsEndpoint.fromEnvironment(environment) else { return nil }
        let milliseconds = environment["VOICECORE_RECEPTIONIST_MODEL_TIMEOUT_MS"].flatMap(Int64.init).flatMap { $0 > 0 ? $0 : nil } ?? 2000
        return ReceptionistModel(endpoint: endpoint, timeout: .milliseconds(milliseconds))
    }

    /// Why the model's answer was not used.
    public struct Failure: Error, CustomStringConvertible {
        /// A short label for metrics: `timeout`, `http`, `transport`, `invalid`.
        public var reason: String
        public var description: String
    }

    /// The model's choice for a turn, checked; `dialogue`'s slots gain what the model learned.
    public func decide(_ turn: CallerTurn, dialogue: inout Dialogue, settings: AISettings) async throws -> ReceptionistDecision {
        let body = requestBody(turn, dialogue: dialogue, settings: settings)
        let answer = try await withDeadline { try await self.post(body) }
        return try Self.interpret(answer, turn: turn, dialogue: &dialogue, settings: settings)
    }

    // MARK: Request

    static let tools: [(name: String, description: String, required: [String], properties: [String: String])] = [
        ("reply", "Say something and listen for the caller's next turn (answer a question, ask for a missing detail).", ["text"], [:]),
        ("request_appointment", "The caller wants an appointment and gave a preferred time: record the request, then say the text and keep listening.",
         ["text", "preferred_time"],
         ["name": "The caller's name.", "phone": "E.164 number to call back; omit to use the caller's own number.",
          "preferred_time": "The time the caller asked for, in their words.", "reason": "What the appointment is for."]),
        ("take_message", "Record a message for the business, then say the text and keep listening.", ["text", "message"],
         ["name": "The caller's name.", "phone": "E.164 number to call back; omit to use the caller's own number.", "message": "The message."]),
        ("transfer", "Connect the caller to a person at the business (only while it is open and has a forwarding number).", ["text"],
         ["reason": "Why, in a few words."]),
        ("voicemail", "Say the text, then let the caller record a voicemail.", ["text"], [:]),
        ("hang_up", "Say the text (a goodbye) and end the call.", ["text"], [:]),
    ]

    func requestBody(_ turn: CallerTurn, dialogue: Dialogue, settings: AISettings) -> JSONValue {
        let open = ConversationAnalysis.isOpen(settings.businessHours, at: turn.at)
        var system = "You are the phone receptionist of a business. Manner: \(settings.personality ?? "warm and brief"). "
            + "Speak in one to three short sentences; the caller hears your text spoken. Always answer with exactly one tool call. "
            + "The business is \(open ? "open" : "closed") now (hours, time zone \(settings.businessHours.timeZone): "
            + settings.businessHours.openings.map { "\($0.day.rawValue) \($0.opens)-\($0.closes)" }.joined(separator: ", ") + "). "
        if settings.forwardingNumber != nil && open {
            system += "You may transfer the caller to a person when they ask for one. "
        } else {
            system += "No one can take the call now: offer to take a message or a voicemail instead of a transfer. "
        }
        if !settings.faq.isEmpty {
            system += "Answer questions from these facts only:\n" + settings.faq.map { "Q: \($0.question)\nA: \($0.answer)" }.joined(separator: "\n")
        }
        var context = "Caller's number: \(turn.from ?? "unknown")."
        if !dialogue.slots.isEmpty {
            context += " Known so far: " + dialogue.slots.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ", ") + "."
        }
        var messages: [JSONValue] = [
            .object(["role": .string("system"), "content": .string(system)]),
            .object(["role": .string("system"), "content": .string(context)]),
        ]
        for past in dialogue.transcript() {
            messages.append(.object(["role": .string("user"), "content": .string(past.heard.isEmpty ? "(silence)" : past.heard)]))
            messages.append(.object(["role": .string("assistant"), "content": .string(past.said)]))
        }
        let heard = turn.text.isEmpty ? (turn.digits.map { "(pressed \($0))" } ?? "(silence)") : turn.text
        messages.append(.object(["role": .string("user"), "content": .string(heard)]))
        let tools: [JSONValue] = Self.tools.map { tool in
            var properties: [String: JSONValue] = ["text": .object(["type": .string("string"), "description": .string("What you say to the caller.")])]
            for (name, description) in tool.properties { properties[name] = .object(["type": .string("string"), "description": .string(description)]) }
            return .object([
                "type": .string("function"),
                "function": .object([
                    "name": .string(tool.name), "description": .string(tool.description),
                    "parameters": .object(["type": .string("object"), "properties": .object(properties),
                                           "required": .array(tool.required.map { .string($0) }), "additionalProperties": .bool(false)]),
                ]),
            ])
        }
        return .object([
            "model": .string(endpoint.model), "temperature": .number("0"), "messages": .array(messages), "tools": .array(tools),
            "tool_choice": .string("required"),
        ])
    }

    private func post(_ body: JSONValue) async throws -> [UInt8] {
        let answer: (status: Int, body: [UInt8])
        do {
            answer = try await endpoint.post(body, timeout: timeout)
        } catch is CancellationError {
            throw Failure(reason: "timeout", description: "the model did not answer within \(timeout)")
        } catch let error as HTTPClientError where error == .deadlineExceeded || error == .readTimeout || error == .connectTimeout {
            throw Failure(reason: "timeout", description: "the model did not answer within \(timeout)")
        } catch {
            throw Failure(reason: "transport", description: "the model could not be reached: \(type(of: error))")
        }
        guard (200..<300).contains(answer.status) else {
            throw Failure(reason: "http", description: "the model answered HTTP \(answer.status)")
        }
        return answer.body
    }

    /// Runs `body`, or throws a timeout ``Failure`` once ``timeout`` has passed (the HTTP client's
    /// own timeout does not bound reading a slowly sent body).
    private func withDeadline<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) async throws -> T {
        try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask { try await body() }
            group.addTask {
                try await Task.sleep(for: timeout)
                return nil
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let value = first else {
                throw Failure(reason: "timeout", description: "the model did not answer within \(timeout)")
            }
            return value
        }
    }

    // MARK: Answer

    /// The decision a chat-completions answer names, checked against the tenant's settings.
    static func interpret(_ answer: [UInt8], turn: CallerTurn, dialogue: inout Dialogue, settings: AISettings) throws -> ReceptionistDecision {
        func invalid(_ why: String) -> Failure { Failure(reason: "invalid", description: "the model's answer \(why)") }
        guard let object = try? JSONValue.object(parsing: answer),
              case .array(let choices)? = object["choices"], let message = choices.first?.object?["message"]?.object,
              case .array(let calls)? = message["tool_calls"], let function = calls.first?.object?["function"]?.object,
              let name = function["name"]?.string
        else { throw invalid("holds no tool call") }
        // Arguments are a JSON text inside the JSON (some servers send the object itself).
        let arguments: [String: JSONValue]
        if let text = function["arguments"]?.string, let parsed = try? JSONValue.object(parsing: Array(text.utf8)) {
            arguments = parsed
        } else if let parsed = function["arguments"]?.object {
            arguments = parsed
        } else {
            throw invalid("has arguments that are not a JSON object")
        }
        func string(_ field: String, maxLength: Int = ConversationLimits.slotValueLength) throws -> String? {
            guard let value = arguments[field] else { return nil }
            if value == .null { return nil }
            guard let text = value.string?.trimmingWhitespace else { throw invalid("gives \(field) that is not a string") }
            guard text.count <= maxLength else { throw invalid("gives \(field) longer than \(maxLength) characters") }
            return text.isEmpty ? nil : text
        }
        guard let text = try string("text", maxLength: ConversationLimits.replyLength) else { throw invalid("has no text to say") }
        func phone() throws -> String? {
            guard let given = try string("phone") else { return dialogue.slots["phone"] ?? turn.from }
            guard isE164(given) else { throw invalid("gives a phone number that is not E.164") }
            return given
        }
        func learn(_ field: String, _ value: String?) { if let value { dialogue.slots[field] = value } }
        // The model leads this turn: whatever the built-in policy was asking is no longer pending.
        dialogue.job = nil
        dialogue.pending = nil
        dialogue.slots["job"] = nil
        dialogue.misses = 0
        dialogue.attempts = 0
        switch name {
        case "reply":
            return ReceptionistDecision(text: text, action: .continue)
        case "request_appointment":
            guard let time = try string("preferred_time", maxLength: 200), !time.contains(where: \.isNewline) else { throw invalid("has no preferred_time") }
            let name = try string("name", maxLength: 200)
            let number = try phone()
            let reason = try string("reason")
            learn("name", name); learn("phone", number); learn("preferred_time", time); learn("reason", reason)
            dialogue.intent = .appointment
            return ReceptionistDecision(text: text, action: .continue,
                                        outcome: .appointment(name: name ?? dialogue.slots["name"], phone: number, preferredTime: time, reason: reason))
        case "take_message":
            guard let message = try string("message") else { throw invalid("has no message") }
            let name = try string("name", maxLength: 200)
            let number = try phone()
            learn("name", name); learn("phone", number); learn("message", message)
            return ReceptionistDecision(text: text, action: .continue, outcome: .message(name: name ?? dialogue.slots["name"], phone: number, message: message))
        case "transfer":
            guard let number = settings.forwardingNumber, ConversationAnalysis.isOpen(settings.businessHours, at: turn.at) else {
                throw invalid("transfers a call the tenant's settings do not let through (closed or no forwarding number)")
            }
            let reason = try string("reason", maxLength: 200) ?? "caller asked for a person"
            return ReceptionistDecision(text: text, action: .transfer, transferTo: number, outcome: .transfer(to: number, reason: reason))
        case "voicemail":
            return ReceptionistDecision(text: text, action: .voicemail)
        case "hang_up":
            return ReceptionistDecision(text: text, action: .hangup)
        default:
            throw invalid("names an unknown tool")
        }
    }

    static func isE164(_ value: String) -> Bool {
        let bytes = Array(value.utf8)
        return bytes.count >= 3 && bytes.count <= 16 && bytes[0] == UInt8(ascii: "+") && bytes[1] != UInt8(ascii: "0")
            && bytes.dropFirst().allSatisfy { $0 >= 48 && $0 <= 57 }
    }
}
