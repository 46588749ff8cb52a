import Foundation
import Hummingbird
import NIOCore
import Synchronization
import Testing
import VoiceCoreEvents
@testable import VoiceCoreServices
import VoiceCoreTime

/// The receptionist's chat-completions client against a local HTTP server playing the model.
@Suite("Receptionist model")
struct ReceptionistModelTests {
    static let apiKey = "sk-test-\(UUID().uuidString)"

    @Test("the request carries the key, the tools, the settings and the conversation; a tool call becomes the decision")
    func toolCall() async throws {
        let server = ModelServer()
        try await server.serve { base in
            let model = ReceptionistModel(baseURL: base + "/v1", apiKey: Self.apiKey, model: "test-model", timeout: .seconds(5))
            var dialogue = Dialogue()
            dialogue.slots["name"] = "Jane Doe"
            dialogue.replies[1] = ReceptionistReplied(callID: Identifier.v7(), provider: .twilio, providerCallID: "CA1", turn: 1, channel: .gather,
                                                      heard: "Hi, this is Jane Doe", text: "Hello Jane, how can I help?", action: .continue,
                                                      decidedBy: .model, repliedAt: ReceptionistPolicyTests.mondayMorning)
            let turn = CallerTurn(turn: 2, text: "Tell Dr. Patel my results came in", from: ReceptionistPolicyTests.caller, at: ReceptionistPolicyTests.mondayMorning)
            let decision = try await model.decide(turn, dialogue: &dialogue, settings: ReceptionistPolicyTests.settings)
            #expect(decision == ReceptionistDecision(text: "I'll pass that on to Dr. Patel.", action: .continue,
                                                     outcome: .message(name: "Jane Doe", phone: ReceptionistPolicyTests.caller, message: "Results came in")))
            #expect(dialogue.slots["message"] == "Results came in" && dialogue.slots["phone"] == ReceptionistPolicyTests.caller)

            let seen = try #require(server.requests.withLock { $0.first })
            #expect(seen.authorization == "Bearer \(Self.apiKey)")
            let body = try JSONValue.object(parsing: Array(seen.body.utf8))
            #expect(body["model"]?.string == "test-model" && body["tool_choice"]?.string == "required")
            guard case .array(let tools)? = body["tools"], case .array(let messages)? = body["messages"] else { Issue.record("no tools or messages"); return }
            let names = Set(tools.compactMap { $0.object?["function"]?.object?["name"]?.string })
            #expect(names == ["reply", "request_appointment", "take_message", "transfer", "voicemail", "hang_up"])
            let appointment = tools.compactMap { $0.object?["function"]?.object }.first { $0["name"]?.string == "request_appointment" }
            #expect(appointment?["parameters"]?.object?["required"] == .array([.string("text"), .string("preferred_time")]))
            let contents = messages.compactMap { $0.object?["content"]?.string }
            #expect(contents.last == "Tell Dr. Patel my results came in", "the caller's turn is the last message")
            #expect(contents.contains("Hi, this is Jane Doe") && contents.contains("Hello Jane, how can I help?"), "the transcript excerpt travels")
            #expect(contents[0].contains("We're open Monday to Friday, nine to five.") && contents[0].contains("open now"), "the FAQ and the hours")
            #expect(contents[1].contains("name=Jane Doe") && contents[1].contains(ReceptionistPolicyTests.caller), "the slots and the caller's number")
        }
    }

    @Test("answers that name no valid action are refused: garbage, no tool call, an unknown tool, a transfer the settings forbid, a bad number")
    func invalidAnswers() async throws {
        let server = ModelServer()
        try await server.serve { base in
            let model = ReceptionistModel(baseURL: base + "/v1", apiKey: Self.apiKey, timeout: .seconds(5))
            for (script, at) in [("garbage", ReceptionistPolicyTests.mondayMorning), ("no-tool", ReceptionistPolicyTests.mondayMorning),
                                 ("unknown-tool", ReceptionistPolicyTests.mondayMorning), ("transfer", ReceptionistPolicyTests.sundayMorning),
                                 ("bad-phone", ReceptionistPolicyTests.mondayMorning), ("status-500", ReceptionistPolicyTests.mondayMorning)] {
                var dialogue = Dialogue()
                let turn = CallerTurn(turn: 1, text: script, from: ReceptionistPolicyTests.caller, at: at)
                do {
                    let decision = try await model.decide(turn, dialogue: &dialogue, settings: ReceptionistPolicyTests.settings)
                    Issue.record("\(script) was accepted: \(decision)")
                } catch let failure as ReceptionistModel.Failure {
                    #expect(failure.reason == (script == "status-500" ? "http" : "invalid"), "\(script): \(failure)")
                    #expect(!failure.description.contains(Self.apiKey))
                }
            }
            // The same transfer in business hours goes to the tenant's forwarding number (never one the model names).
            var dialogue = Dialogue()
            let open = try await model.decide(CallerTurn(turn: 1, text: "transfer", at: ReceptionistPolicyTests.mondayMorning), dialogue: &dialogue,
                                              settings: ReceptionistPolicyTests.settings)
            #expect(open.action == .transfer && open.transferTo == "+14155550100")
        }
    }

    @Test("a model slower than its time limit fails with a timeout")
    func slow() async throws {
        let server = ModelServer()
        try await server.serve { base in
            let model = ReceptionistModel(baseURL: base + "/v1", apiKey: Self.apiKey, timeout: .milliseconds(300))
            var dialogue = Dialogue()
            await #expect(throws: ReceptionistModel.Failure.self) {
                try await model.decide(CallerTurn(turn: 1, text: "slow", at: .now), dialogue: &dialogue, settings: .builtIn)
            }
            do {
                _ = try await model.decide(CallerTurn(turn: 1, text: "slow", at: .now), dialogue: &dialogue, settings: .builtIn)
            } catch let failure as ReceptionistModel.Failure {
                #expect(failure.reason == "timeout")
            }
        }
    }

    @Test("the environment configures the model: base URL, key, model, time limit")
    func environment() {
        #expect(ReceptionistModel.fromEnvironment([:]) == nil)
        let model = ReceptionistModel.fromEnvironment(["VOICECORE_AI_BASE_URL": "http://127.0.0.1:9/v1/", "VOICECORE_AI_MODEL": "m",
                                                       "VOICECORE_RECEPTIONIST_MODEL_TIMEOUT_MS": "750"])
        #expect(model?.baseURL == "http://127.0.0.1:9/v1" && model?.model == "m" && model?.timeout == .milliseconds(750))
        #expect(ReceptionistModel.fromEnvironment(["VOICECORE_AI_BASE_URL": "http://x", "VOICECORE_RECEPTIONIST_MODEL_TIMEOUT_MS": "nope"])?.timeout == .seconds(2))
    }
}

/// A chat-completions endpoint whose answer the caller's last words choose: `garbage`, `no-tool`,
/// `unknown-tool`, `transfer`, `bad-phone`, `status-500`, `slow` (answers after 3 s); anything
/// else is answered with a `take_message` tool call.
final class ModelServer: Sendable {
    struct Seen: Sendable { var authorization: String?; var body: String }
    let requests = Mutex<[Seen]>([])

    static func toolCall(_ name: String, _ arguments: String) -> String {
        let escaped = arguments.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
        return #"{"id":"c1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[{"id":"t1","type":"function","function":{"name":""#
            + name + #"","arguments":""# + escaped + #""}}]},"finish_reason":"tool_calls"}]}"#
    }

    func serve(_ body: @Sendable (String) async throws -> Void) async throws {
        let router = Router()
        router.post("/v1/chat/completions") { request, _ -> Response in
            let bytes = try await request.body.collect(upTo: 1 << 20)
            let text = String(buffer: bytes)
            self.requests.withLock { $0.append(Seen(authorization: request.headers[.authorization], body: text)) }
            var last = ""
            if let object = try? JSONValue.object(parsing: Array(text.utf8)), case .array(let messages)? = object["messages"] {
                last = messages.last?.object?["content"]?.string ?? ""
            }
            let answer: String
            switch last {
            case "garbage": answer = "I think you should book an appointment"
            case "no-tool": answer = #"{"choices":[{"index":0,"message":{"role":"assistant","content":"Sure, I can help."}}]}"#
            case "unknown-tool": answer = Self.toolCall("launch_rockets", #"{"text":"Launching."}"#)
            case "transfer": answer = Self.toolCall("transfer", #"{"text":"Putting you through.","reason":"asked"}"#)
            case "bad-phone": answer = Self.toolCall("take_message", #"{"text":"Noted.","message":"Call me","phone":"555-0199"}"#)
            case "status-500": return Response(status: .internalServerError)
            case "slow":
                try await Task.sleep(for: .seconds(3))
                answer = Self.toolCall("reply", #"{"text":"Finally."}"#)
            default: answer = Self.toolCall("take_message", #"{"text":"I'll pass that on to Dr. Patel.","message":"Results came in"}"#)
            }
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: answer)))
        }
        try await withServer(router, body)
    }
}
