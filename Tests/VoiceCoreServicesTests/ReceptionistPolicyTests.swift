import Foundation
import Testing
import VoiceCoreEvents
@testable import VoiceCoreServices
import VoiceCoreTime

/// The built-in receptionist, one path per test, as a caller would go through it turn by turn.
@Suite("Receptionist policy")
struct ReceptionistPolicyTests {
    /// Monday 2026-11-23 10:00 in New York (open); Sunday 2026-11-22 10:00 (closed).
    static let mondayMorning = Timestamp(rfc3339: "2026-11-23T15:00:00Z")!
    static let sundayMorning = Timestamp(rfc3339: "2026-11-22T15:00:00Z")!
    static let caller = "+14155550199"

    static let settings = AISettings(
        greeting: "Thanks for calling Bright Smiles Dental.", personality: "warm and brief",
        intents: AISettings.builtIn.intents,
        businessHours: .init(timeZone: "America/New_York", openings: [.mon, .tue, .wed, .thu, .fri].map { .init(day: $0, opens: "09:00", closes: "17:00") }),
        faq: [
            .init(question: "What are your opening hours?", answer: "We're open Monday to Friday, nine to five.", keywords: ["opening hours", "open", "hours"]),
            .init(question: "Where can I park?", answer: "There's free parking behind the building."),
        ],
        forwardingNumber: "+14155550100")

    /// Plays the caller's lines in order; returns the decisions.
    static func converse(_ lines: [String], at time: Timestamp = mondayMorning, from: String? = caller, settings: AISettings = settings,
                         dialogue: inout Dialogue) -> [ReceptionistDecision] {
        lines.enumerated().map { index, line in
            ReceptionistPolicy.decide(CallerTurn(turn: dialogue.lastTurn + index + 1, text: line, from: from, at: time), dialogue: &dialogue, settings: settings)
        }
    }

    @Test("a question from the FAQ is answered from the tenant's answer, by keyword or by the question's own words")
    func faq() {
        var dialogue = Dialogue()
        let answers = Self.converse(["Hi, what are your opening hours?", "no", ], dialogue: &dialogue)
        #expect(answers[0].text.hasPrefix("We're open Monday to Friday, nine to five."))
        #expect(answers[0].action == .continue && answers[0].outcome == nil)
        #expect(answers[1].action == .hangup, "no to 'anything else?' ends the call politely")
        var parking = Dialogue()
        let park = Self.converse(["where do I park my car"], dialogue: &parking)
        #expect(park[0].text.hasPrefix("There's free parking behind the building."))
    }

    @Test("an appointment request collects time, name and number over several turns; the caller's number is the default")
    func appointment() {
        var dialogue = Dialogue()
        let replies = Self.converse(["I'd like to book a cleaning", "next Tuesday at 3 pm please", "it's jane doe", "yes that's fine"], dialogue: &dialogue)
        #expect(replies[0].text.contains("What day and time"))
        #expect(replies[1].text.contains("name"))
        #expect(replies[2].text.contains("number you're calling from") && replies[2].text.contains("0 1 9 9"))
        #expect(replies[0...2].allSatisfy { $0.outcome == nil && $0.action == .continue })
        #expect(replies[3].outcome == .appointment(name: "Jane Doe", phone: Self.caller, preferredTime: "next Tuesday at 3 pm",
                                                   reason: "I'd like to book a cleaning"))
        #expect(replies[3].action == .continue && replies[3].text.contains("anything else"))
        #expect(dialogue.slots["name"] == "Jane Doe" && dialogue.slots["phone"] == Self.caller && dialogue.intent == .appointment)
        #expect(dialogue.job == nil && dialogue.pending == .anythingElse)
        // A second appointment in the same call asks for its own time; the caller is known.
        let second = Self.converse(["and I'd like to book another appointment for my son", "Saturday afternoon"], dialogue: &dialogue)
        #expect(second[0].text.contains("What day and time"))
        #expect(second[1].outcome == .appointment(name: "Jane Doe", phone: Self.caller, preferredTime: "Saturday afternoon",
                                                  reason: "and I'd like to book another appointment for my son"))
    }

    @Test("an appointment asked with its time in one breath, and another number given instead of the caller's")
    func appointmentOtherNumber() {
        var dialogue = Dialogue()
        let replies = Self.converse(["Can I schedule an appointment for Friday morning?", "My name is Sam Lee.", "no",
                                     "four one five five five five zero one two three"], dialogue: &dialogue)
        #expect(replies[0].text.contains("name"), "the time was already given: \(replies[0].text)")
        #expect(replies[2].text.contains("best number"))
        #expect(replies[3].outcome == .appointment(name: "Sam Lee", phone: "+14155550123", preferredTime: "Friday morning",
                                                   reason: "Can I schedule an appointment for Friday morning?"))
    }

    @Test("a message is taken: what to pass on, then name and number")
    func message() {
        var dialogue = Dialogue()
        let replies = Self.converse(["Can you take a message for Dr. Patel?", "Please tell her my test results came in", "Maria Lopez", "yes"],
                                    dialogue: &dialogue)
        #expect(replies[0].text.contains("What message"))
        #expect(replies[1].text.contains("name"))
        #expect(replies[3].outcome == .message(name: "Maria Lopez", phone: Self.caller, message: "Please tell her my test results came in"))
    }

    @Test("a caller who asks for a person during business hours is transferred to the forwarding number")
    func transferInHours() {
        var dialogue = Dialogue()
        let replies = Self.converse(["Can I speak to someone please?"], dialogue: &dialogue)
        #expect(replies[0].action == .transfer && replies[0].transferTo == "+14155550100")
        #expect(replies[0].outcome == .transfer(to: "+14155550100", reason: "caller asked for a person"))
    }

    @Test("after hours, or with no forwarding number, a caller who asks for a person gets voicemail")
    func voicemail() {
        var closed = Dialogue()
        let night = Self.converse(["I want to talk to a person"], at: Self.sundayMorning, dialogue: &closed)
        #expect(night[0].action == .voicemail && night[0].transferTo == nil && night[0].outcome == nil)
        #expect(night[0].text.contains("closed"))
        var settings = Self.settings
        settings.forwardingNumber = nil
        var nobody = Dialogue()
        let open = Self.converse(["Can I speak to someone please?"], settings: settings, dialogue: &nobody)
        #expect(open[0].action == .voicemail && open[0].text.contains("No one is available"))
    }

    @Test("goodbye ends the call politely, whatever was under way")
    func goodbye() {
        var dialogue = Dialogue()
        let replies = Self.converse(["I'd like an appointment", "actually that's all, bye"], dialogue: &dialogue)
        #expect(replies[1].action == .hangup && replies[1].text.contains("Goodbye"))
        #expect(dialogue.job == nil && dialogue.pending == nil)
    }

    @Test("silence is met with the question again; three turns not understood in a row offer voicemail")
    func emptyTurn() {
        var dialogue = Dialogue()
        let replies = Self.converse(["I need to book an appointment", "", "   "], dialogue: &dialogue)
        #expect(replies[1].action == .continue && replies[1].text == "Sorry, I didn't catch that. What day and time would suit you?")
        #expect(dialogue.pending == .preferredTime && dialogue.job == .appointment, "the question stays open")
        var quiet = Dialogue()
        let silence = Self.converse(["", "", ""], dialogue: &quiet)
        #expect(silence[0].text == "Sorry, I didn't catch that. How can I help you?")
        #expect(silence[1].action == .continue && silence[2].action == .voicemail)
    }

    @Test("nonsense gets a polite clarification naming what the receptionist can do")
    func nonsense() {
        var dialogue = Dialogue()
        let replies = Self.converse(["purple elephants dance quietly"], dialogue: &dialogue)
        #expect(replies[0].action == .continue && replies[0].outcome == nil)
        #expect(replies[0].text.hasPrefix("Sorry, I'm not sure I understood.") && replies[0].text.contains("put you through"))
        var asked = Dialogue()
        let time = Self.converse(["book an appointment", "purple elephants", "whenever the doctor is free"], dialogue: &asked)
        #expect(time[1].text.contains("didn't get the time"), "an answer that is no time is asked again: \(time[1].text)")
        #expect(asked.slots["preferred_time"] == "whenever the doctor is free", "asked twice, the caller's words are the time")
    }

    @Test("a support question becomes a message with the caller's words; a complaint in hours goes to a person")
    func otherIntents() {
        var dialogue = Dialogue()
        let replies = Self.converse(["My invoice has a wrong charge on it", "Tom Baker", "yes"], dialogue: &dialogue)
        #expect(replies[0].text.contains("name"))
        #expect(replies[2].outcome == .message(name: "Tom Baker", phone: Self.caller, message: "My invoice has a wrong charge on it"))
        #expect(dialogue.intent == .billing)
        var angry = Dialogue()
        #expect(Self.converse(["This is unacceptable, I want to make a complaint"], dialogue: &angry)[0].action == .transfer)
    }

    @Test("time phrases: days, parts of the day, clock times; no time in words that only look like one")
    func timePhrases() {
        func time(_ text: String) -> String? { ReceptionistPolicy.timePhrase(in: Utterance(text)) }
        #expect(time("for Tuesday morning please") == "Tuesday morning")
        #expect(time("next Friday at 3 pm.") == "next Friday at 3 pm")
        #expect(time("tomorrow") == "tomorrow")
        #expect(time("around 10am on the 12th of December") == "10am on the 12th of December")
        #expect(time("May I book one appointment for 2 people") == nil)
        #expect(time("I have a question") == nil)
        #expect(time("can I book for 2") == nil, "a number alone is no time")
    }

    @Test("the dialogue survives its stored form: slots, question, replies")
    func storedForm() {
        var dialogue = Dialogue()
        _ = Self.converse(["book an appointment for Monday", "Jane"], dialogue: &dialogue)
        dialogue.replies[2] = ReceptionistReplied(callID: Identifier.v7(), provider: .twilio, providerCallID: "CA1", turn: 2, channel: .gather,
                                                  heard: "Jane", text: "Thank you.", action: .continue, slots: ["name": "Jane"], decidedBy: .builtIn,
                                                  repliedAt: Self.mondayMorning)
        dialogue.lastTurn = 2
        let restored = Dialogue(fields: dialogue.changes(from: Dialogue()))
        #expect(restored == dialogue)
        var cleared = restored
        cleared.slots["name"] = nil
        cleared.pending = nil
        var fields = dialogue.changes(from: Dialogue())
        fields.merge(cleared.changes(from: restored)) { _, new in new }
        #expect(Dialogue(fields: fields) == cleared, "a cleared value is stored empty and read back as absent")
    }
}
