import VoiceCoreEvents
import VoiceCoreTime

/// Where a call's conversation with the receptionist stands: the job under way, the question
/// waiting for an answer, what has been learned (the slots), and the replies already given.
///
/// Kept per call in the ``StateStore`` (a Redis hash beside the call's conversations stream). The
/// hash only gains and overwrites fields (a write never deletes one), so a cleared value is stored
/// as the empty string and read back as absent.
public struct Dialogue: Sendable, Equatable {
    /// The job the receptionist is collecting details for.
    public enum Job: String, Sendable, Hashable, CaseIterable {
        case appointment
        case message
    }

    /// The question the last reply asked, so the next turn is read as its answer.
    public enum Question: String, Sendable, Hashable, CaseIterable {
        case preferredTime = "preferred_time"
        case name
        /// "Should we call you back on the number you are calling from?"
        case confirmPhone = "confirm_phone"
        case phone
        case message
        /// "Is there anything else I can help you with?"
        case anythingElse = "anything_else"
    }

    public var job: Job?
    public var pending: Question?
    /// Turns in a row that asked the same question without getting an answer.
    public var attempts = 0
    /// Turns in a row the receptionist did not understand (silence or nonsense).
    public var misses = 0
    /// What has been learned: `name`, `phone`, `preferred_time`, `reason`, `message`, `job`.
    public var slots: [String: String] = [:]
    /// What the caller wants, as last understood.
    public var intent: Intent?
    /// The call's lead was asked for (one per call).
    public var leadCreated = false
    /// The highest turn answered.
    public var lastTurn = 0
    /// The replies given, by turn: a turn delivered again is answered with the same reply.
    public var replies: [Int: ReceptionistReplied] = [:]

    public init() {}

    /// Reads the stored fields (unknown or malformed fields are ignored: the conversation goes on
    /// with what is known).
    init(fields: [String: String]) {
        func value(_ name: String) -> String? { fields[name].flatMap { $0.isEmpty ? nil : $0 } }
        job = value("job").flatMap(Job.init(rawValue:))
        pending = value("pending").flatMap(Question.init(rawValue:))
        attempts = value("attempts").flatMap(Int.init) ?? 0
        misses = value("misses").flatMap(Int.init) ?? 0
        intent = value("intent").flatMap(Intent.init(rawValue:))
        leadCreated = value("lead") == "1"
        lastTurn = value("last_turn").flatMap(Int.init) ?? 0
        for (name, stored) in fields where !stored.isEmpty {
            if name.hasPrefix("slot:") {
                slots[String(name.dropFirst(5))] = stored
            } else if name.hasPrefix("reply:"), let turn = Int(name.dropFirst(6)),
                      let object = try? JSONObject.parse(Array(stored.utf8)), let reply = try? ReceptionistReplied(json: object) {
                replies[turn] = reply
            }
        }
    }

    /// The fields that changed from `before` (cleared values as empty strings).
    func changes(from before: Dialogue) -> [String: String] {
        var changes: [String: String] = [:]
        if job != before.job { changes["job"] = job?.rawValue ?? "" }
        if pending != before.pending { changes["pending"] = pending?.rawValue ?? "" }
        if attempts != before.attempts { changes["attempts"] = String(attempts) }
        if misses != before.misses { changes["misses"] = String(misses) }
        if intent != before.intent { changes["intent"] = intent?.rawValue ?? "" }
        if leadCreated != before.leadCreated { changes["lead"] = leadCreated ? "1" : "" }
        if lastTurn != before.lastTurn { changes["last_turn"] = String(lastTurn) }
        for (name, value) in slots where before.slots[name] != value { changes["slot:\(name)"] = value }
        for name in before.slots.keys where slots[name] == nil { changes["slot:\(name)"] = "" }
        for (turn, reply) in replies where before.replies[turn] == nil {
            changes["reply:\(turn)"] = String(decoding: JSONObjectWriter.object { reply.writeJSON(to: &$0) }, as: UTF8.self)
        }
        return changes
    }

    /// The conversation so far, oldest first, at most `limit` turns: what the caller said and
    /// what the receptionist answered (the model's transcript excerpt).
    func transcript(limit: Int = 12) -> [(heard: String, said: String)] {
        replies.keys.sorted().suffix(limit).compactMap { turn in replies[turn].map { ($0.heard, $0.text) } }
    }
}
