import Foundation
import VoiceCoreEvents
import VoiceCoreTime

/// One turn of the caller, as the receptionist reads it.
public struct CallerTurn: Sendable, Hashable {
    public var turn: Int
    /// What the caller said (may be empty).
    public var text: String
    /// Keys pressed.
    public var digits: String?
    /// The caller's number (E.164), the default number to call back.
    public var from: String?
    /// When the caller spoke: business hours are judged at this time.
    public var at: Timestamp

    public init(turn: Int, text: String, digits: String? = nil, from: String? = nil, at: Timestamp) {
        self.turn = turn
        self.text = text
        self.digits = digits
        self.from = from
        self.at = at
    }

    /// The command as a turn.
    init(_ command: ReportCallerTurn) {
        self.init(turn: command.turn, text: command.text, digits: command.digits, from: command.from, at: command.occurredAt)
    }
}

/// Something the business should know happened in the conversation (published as a call event).
public enum ConversationOutcome: Sendable, Hashable {
    case appointment(name: String?, phone: String?, preferredTime: String, reason: String?)
    case message(name: String?, phone: String?, message: String)
    case transfer(to: String, reason: String)
}

/// The receptionist's answer to one turn: what to say, what the call does next, and what happened.
public struct ReceptionistDecision: Sendable, Hashable {
    public var text: String
    public var action: ReceptionistAction
    public var transferTo: String?
    public var outcome: ConversationOutcome?

    public init(text: String, action: ReceptionistAction, transferTo: String? = nil, outcome: ConversationOutcome? = nil) {
        self.text = text
        self.action = action
        self.transferTo = transferTo
        self.outcome = outcome
    }
}

/// The built-in receptionist: a pure dialogue policy over the tenant's settings, always available,
/// no network. It answers FAQ questions, collects the details of an appointment request or a
/// message over several turns (the caller's own number is the default number to call back),
/// transfers to the forwarding number during business hours, offers voicemail otherwise, says
/// goodbye, re-asks after silence and asks politely again after something it did not understand.
///
/// ```swift
/// var dialogue = Dialogue()
/// let decision = ReceptionistPolicy.decide(CallerTurn(turn: 1, text: "I'd like to book an appointment", at: .now),
///                                          dialogue: &dialogue, settings: .builtIn)
/// // decision.text: "I'd be happy to help you book an appointment. What day and time would suit you?"
/// ```
public enum ReceptionistPolicy {
    /// Turns in a row not understood before the caller is offered voicemail instead.
    static let missesBeforeVoicemail = 3

    public static func decide(_ turn: CallerTurn, dialogue: inout Dialogue, settings: AISettings) -> ReceptionistDecision {
        let spoken = Utterance(turn.text.isEmpty ? (turn.digits ?? "") : turn.text)
        if spoken.isEmpty { return notHeard(turn, &dialogue) }
        if spoken.hasAny(goodbyes) || (dialogue.pending == .anythingElse && spoken.isNo && spoken.words.count <= 4) { return goodbye(&dialogue) }
        if dialogue.pending == .anythingElse && spoken.isYes && spoken.words.count <= 3 {
            dialogue.pending = nil
            dialogue.misses = 0
            return ReceptionistDecision(text: "Of course. What else can I help you with?", action: .continue)
        }
        if spoken.hasAny(personRequests) || turn.digits == "0" { return personRequested(turn, &dialogue, settings: settings) }
        if let job = dialogue.job, let question = dialogue.pending, question != .anythingElse {
            if fill(question, from: spoken, turn: turn, dialogue: &dialogue) {
                dialogue.misses = 0
                dialogue.attempts = 0
                return next(for: job, turn: turn, dialogue: &dialogue)
            }
            if let answer = faqAnswer(spoken, settings: settings) {
                return ReceptionistDecision(text: answer + " " + ask(question, dialogue: dialogue, turn: turn), action: .continue)
            }
            dialogue.attempts += 1
            return misunderstood(&dialogue, retry: clarify(question, dialogue: dialogue, turn: turn))
        }
        return opening(spoken, turn: turn, dialogue: &dialogue, settings: settings)
    }

    // MARK: What the caller wants

    /// A turn with no job under way: what does the caller want?
    private static func opening(_ spoken: Utterance, turn: CallerTurn, dialogue: inout Dialogue, settings: AISettings) -> ReceptionistDecision {
        let intent = BuiltInIntentDetector().detectNow(spoken.original, settings: settings)?.intent
        if let intent { dialogue.intent = intent }
        learnContact(from: spoken, dialogue: &dialogue)
        if spoken.hasAny(messageRequests) {
            return start(.message, spoken: spoken, turn: turn, dialogue: &dialogue)
        }
        if intent == .appointment || spoken.hasAny(appointmentWords) {
            dialogue.intent = .appointment
            return start(.appointment, spoken: spoken, turn: turn, dialogue: &dialogue)
        }
        if let answer = faqAnswer(spoken, settings: settings) {
            dialogue.misses = 0
            dialogue.pending = .anythingElse
            return ReceptionistDecision(text: answer + " Is there anything else I can help you with?", action: .continue)
        }
        if let intent, intent != .other {
            // Sales, support, billing, a complaint: someone has to call back. What the caller
            // said is the message; their name and number follow.
            if intent == .complaint, let transfer = transfer(turn, settings: settings, reason: "caller has a complaint", dialogue: &dialogue) { return transfer }
            return start(.message, spoken: spoken, turn: turn, dialogue: &dialogue, message: spoken.line(maxLength: ConversationLimits.slotValueLength),
                         lead: "I'll make sure the right person gets back to you about that.")
        }
        return misunderstood(&dialogue, retry: offer(settings))
    }

    private static func start(_ job: Job, spoken: Utterance, turn: CallerTurn, dialogue: inout Dialogue, message: String? = nil,
                              lead: String? = nil) -> ReceptionistDecision {
        // A second request in the same call is collected anew; who is calling stays known.
        for slot in ["preferred_time", "reason", "message"] { dialogue.slots[slot] = nil }
        if let message { dialogue.slots["message"] = message }
        dialogue.job = job
        dialogue.slots["job"] = job.rawValue
        dialogue.misses = 0
        dialogue.attempts = 0
        switch job {
        case .appointment:
            dialogue.slots["reason"] = spoken.line(maxLength: ConversationLimits.slotValueLength)
            if let time = timePhrase(in: spoken) { dialogue.slots["preferred_time"] = time }
        case .message:
            // "Can you take a message: the order is late" carries the message after the request.
            // "…a message for Dr. Patel" names who it is for, not what it says.
            if dialogue.slots["message"] == nil, let rest = spoken.after(messageRequests), rest.words.count >= 2, rest.words.first != "for" {
                dialogue.slots["message"] = rest.line(maxLength: ConversationLimits.slotValueLength)
            }
        }
        let decision = next(for: job, turn: turn, dialogue: &dialogue)
        let opening = lead ?? (job == .appointment ? "I'd be happy to help you book an appointment." : "Of course, I can take a message.")
        return ReceptionistDecision(text: opening + " " + decision.text, action: decision.action, outcome: decision.outcome)
    }

    typealias Job = Dialogue.Job
    typealias Question = Dialogue.Question

    /// The next question of a job, or, with every detail known, the job done.
    private static func next(for job: Job, turn: CallerTurn, dialogue: inout Dialogue) -> ReceptionistDecision {
        let order: [Question] = job == .appointment ? [.preferredTime, .name, .phone] : [.message, .name, .phone]
        for question in order where dialogue.slots[question.rawValue] == nil {
            // The caller's own number first; after a "no" to it, ask for another.
            let asked = question == .phone && turn.from != nil && dialogue.pending != .confirmPhone ? Question.confirmPhone : question
            dialogue.pending = asked
            return ReceptionistDecision(text: ask(asked, dialogue: dialogue, turn: turn), action: .continue)
        }
        let name = dialogue.slots["name"]
        let phone = dialogue.slots["phone"]
        let thanks = name.map { "Thank you, \($0)." } ?? "Thank you."
        dialogue.job = nil
        dialogue.pending = .anythingElse
        dialogue.slots["job"] = nil
        switch job {
        case .appointment:
            let time = dialogue.slots["preferred_time"] ?? ""
            return ReceptionistDecision(
                text: "\(thanks) I've passed on your request for an appointment \(time), and we'll call you back to confirm. Is there anything else I can help you with?",
                action: .continue,
                outcome: .appointment(name: name, phone: phone, preferredTime: time, reason: dialogue.slots["reason"]))
        case .message:
            let message = dialogue.slots["message"] ?? ""
            return ReceptionistDecision(
                text: "\(thanks) I'll make sure your message is passed on, and someone will call you back. Is there anything else I can help you with?",
                action: .continue, outcome: .message(name: name, phone: phone, message: message))
        }
    }

    // MARK: Slots

    /// Reads the turn as the answer to `question`; false when it is not one.
    private static func fill(_ question: Question, from spoken: Utterance, turn: CallerTurn, dialogue: inout Dialogue) -> Bool {
        switch question {
        case .preferredTime:
            if let time = timePhrase(in: spoken) { dialogue.slots["preferred_time"] = time; return true }
            // Asked twice: the caller's own words are the time ("whenever the doctor is in").
            if dialogue.attempts >= 1, !spoken.isNo, !spoken.isYes {
                dialogue.slots["preferred_time"] = spoken.line(maxLength: 200)
                return true
            }
            return false
        case .name:
            guard let name = name(in: spoken) else { return false }
            dialogue.slots["name"] = name
            // "I'm Jane, call me on 415 555 0199" answers the next question too.
            if let phone = phone(in: spoken) { dialogue.slots["phone"] = phone }
            return true
        case .confirmPhone:
            if let phone = phone(in: spoken) { dialogue.slots["phone"] = phone; return true }
            if spoken.isYes, let from = turn.from { dialogue.slots["phone"] = from; return true }
            // "No": the next question asks for the number.
            return spoken.isNo
        case .phone:
            guard let phone = phone(in: spoken) else { return false }
            dialogue.slots["phone"] = phone
            return true
        case .message:
            guard spoken.words.count >= 2 || (dialogue.attempts >= 1 && !spoken.isEmpty) else { return false }
            dialogue.slots["message"] = spoken.line(maxLength: ConversationLimits.slotValueLength)
            return true
        case .anythingElse:
            return false
        }
    }

    /// Contact details the caller volunteered ("This is Jane Doe, I'd like…").
    private static func learnContact(from spoken: Utterance, dialogue: inout Dialogue) {
        let found = ConversationAnalysis.contactDetails(in: spoken.original)
        if let name = found.name, dialogue.slots["name"] == nil { dialogue.slots["name"] = name }
        if let phone = found.phone ?? phone(in: spoken), dialogue.slots["phone"] == nil { dialogue.slots["phone"] = phone }
        if let email = found.email, dialogue.slots["email"] == nil { dialogue.slots["email"] = email }
    }

    static func name(in spoken: Utterance) -> String? {
        if let name = ConversationAnalysis.name(in: spoken.original) { return name }
        // Speech recognition does not always capitalise: "it's jane doe", "jane".
        var words = spoken.words
        for intro in [["my", "name", "is"], ["my", "name's"], ["name's"], ["this", "is"], ["it's"], ["it", "is"], ["i'm"], ["i", "am"], ["call", "me"]]
        where words.starts(with: intro) {
            words.removeFirst(intro.count)
            break
        }
        if words.last == "here" { words.removeLast() }
        let notNames: Set<String> = ["yes", "no", "yeah", "nope", "okay", "ok", "sure", "um", "uh", "hello", "hi", "what", "sorry", "pardon", "the", "a", "i", "and"]
        guard (1...4).contains(words.count), !words.contains(where: notNames.contains),
              words.allSatisfy({ word in word.count > 1 && word.unicodeScalars.allSatisfy { $0.properties.isAlphabetic || $0 == "-" || $0 == "'" } })
        else { return nil }
        return words.map { $0.prefix(1).uppercased() + $0.dropFirst() }.joined(separator: " ")
    }

    /// A phone number written, grouped, or spoken digit by digit ("four one five, five five five…").
    static func phone(in spoken: Utterance) -> String? {
        if let phone = ConversationAnalysis.phone(in: spoken.original) { return phone }
        let digitWords = ["zero": "0", "oh": "0", "o": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
                          "seven": "7", "eight": "8", "nine": "9"]
        var digits = ""
        for word in spoken.words {
            if let digit = digitWords[word] { digits += digit }
            else if word.allSatisfy(\.isNumber) { digits += word }
            else if word == "plus" && digits.isEmpty { continue }
            else if !digits.isEmpty && digits.count < 10 { digits = "" }
        }
        guard digits.count >= 10 else { return nil }
        return ConversationAnalysis.phone(in: (spoken.words.first == "plus" ? "+" : "") + digits)
    }

    /// The words that name a time ("Tuesday morning", "next Friday at 3 pm", "tomorrow"): a run of
    /// time words and connectors holding at least one word that only names a time (a day, a part
    /// of the day, a month, am/pm), up to its last time word.
    static func timePhrase(in spoken: Utterance) -> String? {
        var phrase: [String] = []
        var end = 0
        var anchored = false
        scan: for original in spoken.original.split(whereSeparator: \.isWhitespace).map(String.init) {
            let parts = Utterance(original).words
            if parts.isEmpty { continue }
            switch timeKind(parts) {
            case .strong:
                phrase.append(original)
                end = phrase.count
                anchored = true
            case .weak:
                phrase.append(original)
                end = phrase.count
            case .connector where !phrase.isEmpty:
                phrase.append(original)
            default:
                if anchored { break scan }
                phrase = []
                end = 0
            }
        }
        guard anchored, end > 0 else { return nil }
        var words = Array(phrase[0..<end])
        words[end - 1] = String(words[end - 1].reversed().drop(while: { $0.isPunctuation }).reversed())
        let text = words.joined(separator: " ")
        return text.isEmpty ? nil : String(text.prefix(200))
    }

    enum TimeKind { case strong, weak, connector, none }

    /// How a written word (its normalised parts: "3:30pm" is "3", "30pm") takes part in a time.
    static func timeKind(_ parts: [String]) -> TimeKind {
        if parts == ["a", "m"] || parts == ["p", "m"] { return .strong }
        var strong = false
        for part in parts {
            if strongTimeWords.contains(part) || isClockTime(part) { strong = true }
            else if !(weakTimeWords.contains(part) || isTimeNumber(part)) {
                return parts.allSatisfy(timeConnectors.contains) ? .connector : .none
            }
        }
        return strong ? .strong : .weak
    }

    /// "3pm", "10am".
    private static func isClockTime(_ word: String) -> Bool {
        for suffix in ["am", "pm"] where word.hasSuffix(suffix) {
            if let hour = Int(word.dropLast(2)), (0...1259).contains(hour) { return true }
        }
        return false
    }

    private static func isTimeNumber(_ word: String) -> Bool {
        if let number = Int(word) { return number >= 0 && number <= 2400 }
        for suffix in ["st", "nd", "rd", "th"] where word.hasSuffix(suffix) { if let day = Int(word.dropLast(2)), (1...31).contains(day) { return true } }
        return false
    }

    static let strongTimeWords: Set<String> = [
        "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday", "mondays", "tuesdays", "wednesdays", "thursdays", "fridays",
        "today", "tomorrow", "tonight", "morning", "afternoon", "evening", "noon", "midday", "weekend", "asap", "lunchtime", "earliest",
        "january", "february", "april", "june", "july", "august", "september", "october", "november", "december",
        "am", "pm", "o'clock",
    ]
    /// Words that continue a time but do not make one alone ("may" and "march" are verbs too).
    static let weakTimeWords: Set<String> = [
        "next", "week", "month", "half", "quarter", "early", "late", "may", "march", "lunch",
        "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve", "thirty", "fifteen", "forty", "forty-five",
    ]
    static let timeConnectors: Set<String> = ["at", "in", "the", "on", "of", "around", "about", "or", "after", "before", "between", "and", "this",
                                              "a", "m", "p", "past", "to", "from", "any", "time", "maybe", "ish", "by", "until"]

    // MARK: Questions

    private static func ask(_ question: Question, dialogue: Dialogue, turn: CallerTurn) -> String {
        switch question {
        case .preferredTime: return "What day and time would suit you?"
        case .name: return "May I have your name, please?"
        case .confirmPhone: return "Should we call you back on the number you're calling from\(turn.from.map { ", ending in \($0.suffix(4).map(String.init).joined(separator: " "))" } ?? "")?"
        case .phone: return "What's the best number to reach you on?"
        case .message: return "What message would you like me to pass on?"
        case .anythingElse: return "Is there anything else I can help you with?"
        }
    }

    private static func clarify(_ question: Question, dialogue: Dialogue, turn: CallerTurn) -> String {
        switch question {
        case .preferredTime: return "Sorry, I didn't get the time. Which day and time would suit you, for example Tuesday morning?"
        case .name: return "Sorry, I didn't catch your name. Could you say it again, please?"
        case .confirmPhone: return "Sorry, should we call you back on the number you're calling from? Please say yes or no, or tell me another number."
        case .phone: return "Sorry, I didn't get the number. Could you say it digit by digit, or type it on your keypad?"
        case .message: return "Sorry, what would you like me to tell them?"
        case .anythingElse: return "Sorry, is there anything else I can help you with?"
        }
    }

    private static func offer(_ settings: AISettings) -> String {
        let person = settings.forwardingNumber == nil ? "" : ", put you through to someone"
        return "Sorry, I'm not sure I understood. I can book an appointment, take a message\(person), or answer a question. What would you like to do?"
    }

    // MARK: Hand-offs

    private static func personRequested(_ turn: CallerTurn, _ dialogue: inout Dialogue, settings: AISettings) -> ReceptionistDecision {
        if let transfer = transfer(turn, settings: settings, reason: "caller asked for a person", dialogue: &dialogue) { return transfer }
        dialogue.job = nil
        dialogue.pending = nil
        dialogue.slots["job"] = nil
        let why = settings.forwardingNumber == nil ? "No one is available to take your call right now." : "We're closed right now, so no one can take your call."
        return ReceptionistDecision(text: "\(why) Please leave a message after the tone, and we'll get back to you.", action: .voicemail)
    }

    /// A transfer to the forwarding number, when there is one and the business is open.
    private static func transfer(_ turn: CallerTurn, settings: AISettings, reason: String, dialogue: inout Dialogue) -> ReceptionistDecision? {
        guard let number = settings.forwardingNumber, ConversationAnalysis.isOpen(settings.businessHours, at: turn.at) else { return nil }
        dialogue.job = nil
        dialogue.pending = nil
        dialogue.slots["job"] = nil
        return ReceptionistDecision(text: "Let me put you through now. Please hold.", action: .transfer, transferTo: number,
                                    outcome: .transfer(to: number, reason: reason))
    }

    private static func goodbye(_ dialogue: inout Dialogue) -> ReceptionistDecision {
        dialogue.pending = nil
        dialogue.job = nil
        dialogue.slots["job"] = nil
        return ReceptionistDecision(text: "Thank you for calling. Goodbye!", action: .hangup)
    }

    private static func notHeard(_ turn: CallerTurn, _ dialogue: inout Dialogue) -> ReceptionistDecision {
        let question = dialogue.pending
        let retry = question.map { "Sorry, I didn't catch that. " + ask($0, dialogue: dialogue, turn: turn) }
            ?? "Sorry, I didn't catch that. How can I help you?"
        return misunderstood(&dialogue, retry: retry)
    }

    /// The turn was not understood: ask again, or, after several in a row, offer voicemail rather
    /// than keep a caller on a bad line in a loop.
    private static func misunderstood(_ dialogue: inout Dialogue, retry: String) -> ReceptionistDecision {
        dialogue.misses += 1
        guard dialogue.misses >= missesBeforeVoicemail else { return ReceptionistDecision(text: retry, action: .continue) }
        dialogue.pending = nil
        dialogue.job = nil
        dialogue.slots["job"] = nil
        return ReceptionistDecision(text: "I'm sorry, I'm having trouble understanding. Please leave a message after the tone, and we'll call you back.",
                                    action: .voicemail)
    }

    // MARK: FAQ

    /// The answer of the FAQ entry the turn points at: the entry whose keywords (or, without
    /// keywords, the question's own content words) the turn matches best.
    static func faqAnswer(_ spoken: Utterance, settings: AISettings) -> String? {
        let text = BuiltInIntentDetector.padded(spoken.original)
        var best: (score: Int, answer: String)?
        for entry in settings.faq {
            var score = 0
            if entry.keywords.isEmpty {
                let content = Utterance(entry.question).words.filter { !stopWords.contains($0) && $0.count > 2 }
                let matched = content.filter { BuiltInIntentDetector.containsPhrase(text, $0) }.count
                // Most of the question's content words, at least two unless the question has one.
                if !content.isEmpty, matched * 2 > content.count, matched >= min(2, content.count) { score = matched }
            } else {
                for keyword in entry.keywords where BuiltInIntentDetector.containsPhrase(text, keyword) { score += 1 + keyword.count / 8 }
            }
            if score > 0, best.map({ score > $0.score }) ?? true { best = (score, entry.answer) }
        }
        return best?.answer
    }

    static let stopWords: Set<String> = ["what", "when", "where", "which", "who", "how", "are", "you", "your", "the", "and", "for", "can", "does",
                                         "did", "is", "do", "have", "has", "with", "about", "there", "any", "our", "that", "this", "from", "will"]

    // MARK: Phrases

    static let goodbyes = ["bye", "goodbye", "good bye", "that's all", "that is all", "that's it", "that's everything", "nothing else", "hang up"]
    static let personRequests = ["speak to someone", "speak with someone", "talk to someone", "talk to a person", "speak to a person", "real person",
                                 "a human", "operator", "representative", "transfer me", "put me through", "connect me", "speak to a manager",
                                 "speak to the", "speak with the", "talk to the", "speak to a", "talk to a", "someone in the office"]
    static let messageRequests = ["leave a message", "take a message", "pass on a message", "pass a message", "give a message", "message for"]
    static let appointmentWords = ["appointment", "book", "booking", "schedule", "reschedule"]
}

/// A caller's words, normalised for matching (lower case, letters, digits and apostrophes).
struct Utterance: Sendable {
    let original: String
    let padded: [UInt8]
    let words: [String]

    init(_ text: String) {
        original = text.trimmingWhitespace
        padded = BuiltInIntentDetector.padded(text)
        words = BuiltInIntentDetector.normalize(text).split(separator: " ").map(String.init)
    }

    var isEmpty: Bool { words.isEmpty }

    func hasAny(_ phrases: [String]) -> Bool { phrases.contains { BuiltInIntentDetector.containsPhrase(padded, $0) } }

    var isYes: Bool {
        let yes: Set<String> = ["yes", "yeah", "yep", "yup", "sure", "correct", "right", "ok", "okay", "fine", "please", "absolutely", "definitely"]
        return words.first.map(yes.contains) ?? false || hasAny(["that's right", "that's fine", "that works", "go ahead", "that one"])
    }

    var isNo: Bool {
        let no: Set<String> = ["no", "nope", "nah", "not"]
        return words.first.map(no.contains) ?? false || hasAny(["no thanks", "no thank you", "i'm good", "i'm fine", "all good"])
    }

    /// The words after the first of `phrases` ("take a message: the order is late" → "the order is late").
    func after(_ phrases: [String]) -> Utterance? {
        for phrase in phrases {
            if let range = original.range(of: phrase, options: .caseInsensitive) {
                let rest = original[range.upperBound...].drop { $0.isWhitespace || $0.isPunctuation }
                return rest.isEmpty ? nil : Utterance(String(rest))
            }
        }
        return nil
    }

    /// The text on one line (line breaks as spaces), at most `maxLength` characters.
    func line(maxLength: Int) -> String {
        String(original.map { $0.isNewline || $0 == "\t" ? " " : $0 }.prefix(maxLength))
    }
}

extension String {
    var trimmingWhitespace: String {
        String(drop(while: \.isWhitespace).reversed().drop(while: \.isWhitespace).reversed())
    }
}
