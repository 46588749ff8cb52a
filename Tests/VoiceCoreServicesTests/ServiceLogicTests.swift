import Foundation
import Hummingbird
import Logging
import NIOHTTP1
import ServiceLifecycle
import Synchronization
import Testing
import VoiceCoreEvents
import VoiceCoreServices
import VoiceCoreTime

@Suite("Call state machine")
struct CallStateMachineTests {
    let call = Identifier.v7()
    let t0 = Timestamp(rfc3339: "2026-11-24T10:00:00Z")!

    func report(_ status: ReportCallProgress.Status, _ sequence: Int64, at seconds: Int64, duration: Int? = nil) -> ReportCallProgress {
        ReportCallProgress(callID: call, provider: .twilio, providerCallID: "CA1", status: status, sequence: sequence,
                           occurredAt: t0.adding(microseconds: seconds * 1_000_000), direction: .inbound, from: "+14155550100", to: "+14155550199",
                           durationSeconds: duration)
    }

    @Test("ringing, in progress, completed: started, answered, ended once")
    func inOrder() {
        var progress = CallProgress()
        #expect(CallStateMachine.apply(report(.ringing, 0, at: 0), to: &progress).count == 1)
        let answered = CallStateMachine.apply(report(.inProgress, 0, at: 2), to: &progress)
        guard case .answered(let event)? = answered.first else { Issue.record("no CallAnswered"); return }
        #expect(event.answeredAt == t0.adding(microseconds: 2_000_000))
        let ended = CallStateMachine.apply(report(.completed, 1, at: 32, duration: 30), to: &progress)
        guard case .ended(let end)? = ended.first, ended.count == 1 else { Issue.record("no single CallEnded: \(ended)"); return }
        #expect(end.status == .completed && end.durationSeconds == 30 && end.answered)
        #expect(CallStateMachine.apply(report(.completed, 1, at: 32, duration: 30), to: &progress).isEmpty, "a duplicate changes nothing")
        #expect(CallStateMachine.apply(report(.inProgress, 0, at: 2), to: &progress).isEmpty, "nothing after the end")
    }

    @Test("a completed call first heard of when it ended is started and answered at the times it implies")
    func completedFirst() {
        var progress = CallProgress()
        let outputs = CallStateMachine.apply(report(.completed, 3, at: 40, duration: 30), to: &progress)
        #expect(outputs.count == 3)
        if case .started(let started) = outputs[0] { #expect(started.startedAt == t0.adding(microseconds: 10_000_000)) } else { Issue.record("no start") }
        if case .answered(let answered) = outputs[1] { #expect(answered.answeredAt == t0.adding(microseconds: 10_000_000)) } else { Issue.record("no answer") }
    }

    @Test("stale reports change nothing; an unanswered call ends with duration 0")
    func staleAndUnanswered() {
        var progress = CallProgress()
        _ = CallStateMachine.apply(report(.ringing, 1, at: 1), to: &progress)
        #expect(CallStateMachine.apply(report(.initiated, 0, at: 0), to: &progress).isEmpty, "a lower sequence is stale")
        #expect(CallStateMachine.apply(report(.ringing, 2, at: 2), to: &progress).isEmpty, "no progress: nothing new")
        let ended = CallStateMachine.apply(report(.noAnswer, 3, at: 30), to: &progress)
        guard case .ended(let end)? = ended.first else { Issue.record("no end"); return }
        #expect(end.status == .noAnswer && end.durationSeconds == 0 && !end.answered)
    }
}

@Suite("Conversation analysis")
struct ConversationAnalysisTests {
    @Test("contact details: names, phone numbers written or grouped, e-mail written or spoken")
    func contactDetails() {
        let a = ConversationAnalysis.contactDetails(in: "Hi, this is Maria Lopez. Call me at (415) 555-0199 please.")
        #expect(a == ContactDetails(name: "Maria Lopez", phone: "+14155550199", email: nil))
        let b = ConversationAnalysis.contactDetails(in: "my name is Tom and my email is Tom.Baker@Example.com")
        #expect(b == ContactDetails(name: "Tom", phone: nil, email: "tom.baker@example.com"))
        let c = ConversationAnalysis.contactDetails(in: "it's jane dot doe at example dot org, or +44 20 7946 0958")
        #expect(c.email == "jane.doe@example.org" && c.phone == "+442079460958")
        #expect(ConversationAnalysis.contactDetails(in: "I need 3 chairs for 12 people on May 5").isEmpty)
    }

    @Test("intents from the tenant's phrases, strongest wins")
    func intents() {
        let detector = BuiltInIntentDetector()
        #expect(detector.detectNow("I'd like to book an appointment", settings: .builtIn)?.intent == .appointment)
        #expect(detector.detectNow("How much is the pricing for two?", settings: .builtIn)?.intent == .sales)
        #expect(detector.detectNow("Nice weather today", settings: .builtIn) == nil)
        let custom = AISettings(greeting: "Hi", intents: [.init(intent: .support, phrases: ["leaky faucet"])], businessHours: .init(timeZone: "UTC", openings: []))
        #expect(detector.detectNow("There is a leaky faucet in the kitchen", settings: custom)?.intent == .support)
        #expect(detector.detectNow("I want to book an appointment", settings: custom) == nil, "only the tenant's intents")
    }

    @Test("sentiment from the lexicon, business hours in the tenant's time zone")
    func sentimentAndHours() {
        #expect(ConversationAnalysis.sentiment(of: ["Thanks, that's great"]).0 == .positive)
        #expect(ConversationAnalysis.sentiment(of: ["This is terrible, I'm really frustrated"]).0 == .negative)
        #expect(ConversationAnalysis.sentiment(of: ["I'd like a table"]).0 == .neutral)
        let hours = AISettings.BusinessHours(timeZone: "America/New_York", openings: [.init(day: .tue, opens: "09:00", closes: "17:00")])
        #expect(ConversationAnalysis.isOpen(hours, at: Timestamp(rfc3339: "2026-11-24T15:00:00Z")!), "10:00 in New York on a Tuesday")
        #expect(!ConversationAnalysis.isOpen(hours, at: Timestamp(rfc3339: "2026-11-24T23:00:00Z")!), "18:00 in New York")
    }

    @Test("plan rounding of billed minutes")
    func rounding() {
        #expect(PlanRounding.billedMinutes(seconds: 61, plan: .starter) == 2)
        #expect(PlanRounding.billedMinutes(seconds: 61, plan: .growth) == 1.5)
        #expect(PlanRounding.billedMinutes(seconds: 61, plan: .enterprise) == 1.1)
        #expect(PlanRounding.billedMinutes(seconds: 0, plan: .starter) == 0)
    }
}

@Suite("AI provider")
struct AIProviderTests {
    @Test("an OpenAI-compatible provider's answer is used; when it fails or times out the built-in detector answers")
    func providerAndFallback() async throws {
        let receiver = Receiver { path in
            if path.hasPrefix("/slow") { try? await Task.sleep(for: .seconds(3)) }
            return path.hasPrefix("/down") ? .badGateway : .ok
        }
        // The receiver answers with an empty body; a provider that answers well is checked
        // against a route that returns a chat completion.
        try await CompletionServer.serve { base in
            let provider = OpenAICompatibleIntentDetector(baseURL: base + "/v1", apiKey: "sk-test", timeout: .seconds(2))
            let match = try await provider.detect("My invoice is wrong", settings: .builtIn)
            #expect(match?.intent == .billing && match?.confidence == 0.82)
            let request = try #require(CompletionServer.lastRequest.withLock { $0 })
            #expect(request.authorization == "Bearer sk-test")
            #expect(request.body.contains("My invoice is wrong"))
        }
        try await receiver.serve { base in
            for path in ["/down/v1", "/slow/v1"] {
                let detector = FallbackIntentDetector(primary: OpenAICompatibleIntentDetector(baseURL: base + path, apiKey: "", timeout: .milliseconds(500)))
                let started = ContinuousClock.now
                let match = try await detector.detect("I'd like to book an appointment", settings: .builtIn)
                #expect(match?.intent == .appointment, "the built-in detector answered for \(path)")
                #expect(ContinuousClock.now - started < .seconds(2), "the provider's time limit holds for \(path)")
            }
        }
    }
}

/// A chat-completions endpoint answering `{"intent": "billing", "confidence": 0.82}`.
enum CompletionServer {
    struct Seen: Sendable { var authorization: String?; var body: String }
    static let lastRequest = Mutex<Seen?>(nil)

    static func serve(_ body: @Sendable (String) async throws -> Void) async throws {
        let router = Router()
        router.post("/v1/chat/completions") { request, _ -> Response in
            let bytes = try await request.body.collect(upTo: 1 << 20)
            lastRequest.withLock { $0 = Seen(authorization: request.headers[.authorization], body: String(buffer: bytes)) }
            let answer = #"{"id":"c1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"{\"intent\": \"billing\", \"confidence\": 0.82}"},"finish_reason":"stop"}]}"#
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: answer)))
        }
        try await withServer(router, body)
    }
}
