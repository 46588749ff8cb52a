import Foundation
import VoiceCoreTime

/// A call's timeline on its console page, from its `CallDetail` (the read API's): started,
/// answered, each receptionist turn (what the caller said and the reply), what came of the call
/// (appointment, message, transfer, voicemail), the intent detected, ended — in the order they
/// happened, times in the tenant's zone.
enum ConsoleCallTimeline {
    /// One `li` of `#call-timeline`: `kind` (`started`, `answered`, `turn`, `appointment`,
    /// `message`, `transfer`, `voicemail`, `intent`, `ended`), `when`, `what` and maybe `detail`.
    static func entries(of call: ConsoleRecord, zone: TimeZone) -> [[String: Any]] {
        var entries: [(time: Timestamp?, order: Int, entry: [String: Any])] = []
        func add(_ kind: String, at time: String?, order: Int, what: String, detail: String? = nil) {
            var entry: [String: Any] = ["kind": kind, "what": what,
                                        "when": time.map { ConsoleFormat.time(rfc3339: $0, timeZone: zone) } ?? "–"]
            if let detail, !detail.isEmpty { entry["detail"] = detail }
            entries.append((time.flatMap { Timestamp(rfc3339: $0) }, order, entry))
        }
        if let started = call.string("started_at") {
            let day = ConsoleFormat.dateTime(rfc3339: started, timeZone: zone)
            add("started", at: started, order: 0, what: "Started", detail: "\(call.string("direction") ?? "") call from \(call.string("from") ?? "") to \(call.string("to") ?? ""), \(day)")
        }
        if let answered = call.string("answered_at") { add("answered", at: answered, order: 1, what: "Answered") }
        for turn in call.records("turns") {
            var parts: [String] = []
            if let heard = turn.string("heard"), !heard.isEmpty { parts.append("Caller: “\(heard)”") }
            if let reply = turn.string("reply"), !reply.isEmpty { parts.append("Receptionist: “\(reply)”") }
            if let action = turn.string("action"), action != "continue" { parts.append("(\(action)\(turn.string("transfer_to").map { " to \($0)" } ?? ""))") }
            add("turn", at: turn.string("replied_at"), order: 2, what: "Turn \(turn.int("turn") ?? 0)", detail: parts.joined(separator: " "))
        }
        for outcome in call.records("outcomes") {
            let kind = outcome.string("kind") ?? "outcome"
            let details = outcome.record("details")
            let (what, detail): (String, String)
            switch kind {
            case "appointment":
                what = "Appointment requested"
                detail = [details?.string("name"), details?.string("phone"), details?.string("preferred_time"), details?.string("reason")]
                    .compactMap { $0 }.joined(separator: ", ")
            case "message":
                what = "Message taken"
                detail = [details?.string("name"), details?.string("phone"), details?.string("message").map { "“\($0)”" }]
                    .compactMap { $0 }.joined(separator: ", ")
            case "transfer":
                what = "Transferred"
                detail = ["to " + (details?.string("to") ?? ""), details?.string("reason")].compactMap { $0 }.joined(separator: ", ")
            case "voicemail":
                what = "Voicemail"
                detail = details?.int("duration_seconds").map { ConsoleFormat.duration(seconds: $0) } ?? ""
            default:
                what = kind
                detail = ""
            }
            add(kind, at: outcome.string("occurred_at"), order: 3, what: what, detail: detail)
        }
        if let analytics = call.record("analytics"), let intent = analytics.string("intent") {
            let confidence = analytics.double("intent_confidence").map { " (confidence \(ConsoleFormat.percent($0)))" } ?? ""
            // The read model keeps no time for the intent: it goes before the end.
            add("intent", at: nil, order: 4, what: "Intent: \(intent)\(confidence)")
        }
        if let ended = call.string("ended_at") {
            let status = Edge.statusLabel(call.string("end_status") ?? call.string("status") ?? "")
            add("ended", at: ended, order: 5, what: "Ended", detail: [status, call.int("duration_seconds").map { ConsoleFormat.duration(seconds: $0) }]
                .compactMap { $0 }.joined(separator: ", "))
        }
        // By time (ties by kind, then as added); what has no time goes just before the end.
        let timed = entries.enumerated().filter { $0.element.time != nil }.sorted { a, b in
            let (x, y) = (a.element.time ?? Timestamp(microsecondsSinceEpoch: 0), b.element.time ?? Timestamp(microsecondsSinceEpoch: 0))
            return x != y ? x < y : (a.element.order, a.offset) < (b.element.order, b.offset)
        }.map(\.element.entry)
        let untimed = entries.filter { $0.time == nil }.map(\.entry)
        guard let end = timed.lastIndex(where: { $0["kind"] as? String == "ended" }) else { return timed + untimed }
        return Array(timed[..<end]) + untimed + Array(timed[end...])
    }
}
