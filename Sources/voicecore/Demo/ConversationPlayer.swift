import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import VoiceCoreEvents
import VoiceCorePostgres
import VoiceCoreSimulation
import VoiceCoreTime

/// Plays a short conversation with the receptionist into a running edge as Twilio would over
/// classic TwiML `<Gather>`, and prints it line by line: what the receptionist says, what the
/// caller says, and what the call does next.
///
/// Twilio's part is played from the edge's own answers: the incoming-call webhook's `<Gather
/// action>` names the first turn's callback, each reply's `<Gather action>` the next one, and a
/// holding line's `<Redirect>` is followed as Twilio follows it. Every request is signed with the
/// tenant's auth token over the URL Twilio would call (the edge's public URL).
struct ConversationPlayer {
    let tenant: TwilioTenant
    /// Where requests go (no trailing slash).
    let edgeURL: String
    /// The URL the edge believes it is at: its TwiML names it, signatures cover it.
    let publicBase: String
    let connections: ConnectionOptions

    static let from = "+14155550142"
    static let to = "+14155559876"
    /// The caller's first words.
    static let opening = "Hi, I'd like to book an appointment for a cleaning."
    static let goodbye = "No, thanks. Bye!"
    /// At most this many turns (the receptionist normally ends the call before).
    static let maximumTurns = 8

    /// What the caller answers to the receptionist's last words: the caller answers what is asked
    /// (whatever order the receptionist asks in), and says goodbye when nothing is, or when asked
    /// the same thing twice already.
    static func callerLine(answering reply: String, said: [String]) -> String {
        let asked = reply.lowercased()
        if asked.contains("anything else") { return goodbye }
        let answers: [(keys: [String], line: String)] = [
            (["calling from"], "Yes, please."),
            (["name"], "It's Dana Whitfield."),
            (["number", "reach you"], "You can reach me at 415 555 0142."),
            (["time", "day", "when"], "Tuesday morning, if you can."),
        ]
        for answer in answers where answer.keys.contains(where: asked.contains) {
            return said.filter { $0 == answer.line }.count >= 2 ? goodbye : answer.line
        }
        return goodbye
    }

    /// Plays the call and prints it; returns the call's id.
    @discardableResult
    func run() async throws -> Identifier {
        let callSID = TwilioCallSimulation.newCallSID()
        let callID = CallID.derive(tenant: tenant.id, provider: .twilio, providerCallID: callSID)
        let common: [(name: String, value: String)] = [
            ("AccountSid", tenant.accountSID), ("CallSid", callSID), ("From", Self.from), ("To", Self.to), ("Direction", "inbound"),
            ("ApiVersion", "2010-04-01"), ("Caller", Self.from), ("Called", Self.to),
        ]
        say("A conversation with the receptionist over Twilio <Gather> (CallSid \(callSID), \(Self.from) → \(Self.to)):")
        let voiceURL = publicBase + "/webhooks/twilio/\(tenant.id)/voice"
        var twiml = try await post(voiceURL, common + [("CallStatus", "ringing")], what: "the incoming call")
        if twiml.contains("<ConversationRelay") {
            say("  (tenant \(tenant.id) converses over ConversationRelay, a WebSocket the demo does not play: set its conversation to gather to see this part)")
            return callID
        }
        guard let greeting = TwiMLReader.sayText(in: twiml) else {
            throw CommandFailure("the edge answered the incoming call without <Say>: \(twiml.prefix(400))")
        }
        say("  receptionist says  \(greeting)")
        var turn = 0
        var ending = "the caller had nothing more to say"
        var said: [String] = []
        var line = Self.opening
        while turn < Self.maximumTurns {
            guard let action = TwiMLReader.gatherAction(in: twiml) else {
                ending = "the receptionist's last TwiML listens for no more turns"
                break
            }
            turn += 1
            said.append(line)
            say("  caller says        \(line)")
            let speech = common + [("CallStatus", "in-progress"), ("SpeechResult", line), ("Confidence", "0.93"), ("Language", "en-US")]
            let clock = ContinuousClock()
            let started = clock.now
            twiml = try await post(action, speech, what: "turn \(turn)")
            // A holding line: Twilio says it and follows the redirect, which waits again for the same turn.
            while let redirect = TwiMLReader.redirect(in: twiml) {
                say("  receptionist says  \(TwiMLReader.sayText(in: twiml) ?? "…")")
                say("                     action: hold (no reply within the edge's deadline; Twilio waits again for turn \(turn))")
                twiml = try await post(redirect, speech, what: "turn \(turn), again")
            }
            let elapsed = clock.now - started
            let reply = TwiMLReader.sayText(in: twiml) ?? "(nothing)"
            say("  receptionist says  \(reply)")
            let next = TwiMLReader.nextStep(in: twiml)
            say("                     action: \(next.description)  (\(Self.milliseconds(elapsed)) from the callback to the TwiML)")
            if !next.continues {
                ending = next.description
                break
            }
            if line == Self.goodbye {
                ending = "the caller said goodbye; the receptionist kept listening"
                break
            }
            line = Self.callerLine(answering: reply, said: said)
        }
        // Twilio's final status callback: the call is over.
        _ = try await post(publicBase + "/webhooks/twilio/\(tenant.id)/status",
                           common + [("CallStatus", "completed"), ("SequenceNumber", "1"), ("CallDuration", String(10 * max(1, turn))),
                                     ("CallbackSource", "call-progress-events")], what: "the completed status")
        say("  (call over: \(ending))")
        try await showTurns(callID: callID, turns: turn)
        return callID
    }

    /// POSTs a signed callback to `url` (a URL at the public base, as Twilio calls it), sent to the
    /// edge; returns the TwiML. A non-2xx answer is an error that says what to check.
    private func post(_ url: String, _ parameters: [(name: String, value: String)], what: String) async throws -> String {
        guard url.hasPrefix(publicBase) else {
            throw CommandFailure("the edge's TwiML sends Twilio to \(url), not under \(publicBase): give --public-url as the edge's VOICECORE_PUBLIC_URL")
        }
        var request = HTTPClientRequest(url: edgeURL + url.dropFirst(publicBase.count))
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
        request.headers.add(name: "X-Twilio-Signature", value: TwilioRequestSigner(authToken: tenant.authToken).signature(url: url, parameters: parameters))
        request.body = .bytes(ByteBuffer(string: TwilioRequestSigner.formBody(parameters)))
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(15))
        let body = String(buffer: try await response.body.collect(upTo: 1 << 20))
        guard (200..<300).contains(Int(response.status.code)) else {
            throw CommandFailure("the edge answered \(response.status.code) to \(what); is `voicecore up` running with the same VOICECORE_PUBLIC_URL (\(publicBase))?\n\(body.prefix(400))")
        }
        return body
    }

    /// The turns as projected (`call_turns`), when the read model has them within 10 s.
    private func showTurns(callID: Identifier, turns: Int) async throws {
        guard turns > 0 else { return }
        let db = try await PostgresConnection.connect(try connections.postgresConfiguration())
        let call = callID.uuid
        let deadline = ContinuousClock.now + .seconds(10)
        do {
            while ContinuousClock.now < deadline {
                let count = try await db.query("SELECT count(*) AS n FROM call_turns WHERE call_id = \(call)")
                if try count[0].decode(Int.self, "n") >= turns { break }
                try await Task.sleep(for: .milliseconds(250))
            }
            say("\ncall_turns")
            DemoPlayer.printTable(try await db.query("SELECT turn, heard, reply, action, decided_by FROM call_turns WHERE call_id = \(call) ORDER BY turn"))
            say("\ncall_outcomes")
            DemoPlayer.printTable(try await db.query("SELECT kind, turn, details FROM call_outcomes WHERE call_id = \(call) ORDER BY occurred_at"))
        } catch {
            // A platform without the conversations read model yet: the conversation above is the demo.
            say("\n(the turns are not in the read model: \(error))")
        }
        await db.close()
    }

    static func milliseconds(_ duration: Duration) -> String {
        let (seconds, attoseconds) = duration.components
        return String(format: "%.0f ms", Double(seconds) * 1000 + Double(attoseconds) / 1e15)
    }
}

/// Reads the few things the demo needs from the edge's TwiML (it writes one verb per element,
/// attributes in double quotes, text XML-escaped).
enum TwiMLReader {
    /// What the call does after the reply.
    enum NextStep: CustomStringConvertible {
        case listens(turn: String)
        case transfer(to: String)
        case voicemail
        case hangUp
        case unknown

        var continues: Bool { if case .listens = self { true } else { false } }

        var description: String {
            switch self {
            case .listens(let turn): "continue (listens for turn \(turn))"
            case .transfer(let number): "transfer (dials \(number))"
            case .voicemail: "voicemail (records a message)"
            case .hangUp: "hang up"
            case .unknown: "none the demo knows"
            }
        }
    }

    /// The first `<Say>`'s text.
    static func sayText(in twiml: String) -> String? {
        element("Say", in: twiml)
    }

    /// The `<Gather action>` URL: where Twilio posts the caller's next turn.
    static func gatherAction(in twiml: String) -> String? {
        guard let start = twiml.range(of: "<Gather ") else { return nil }
        let tag = twiml[start.upperBound...].prefix { $0 != ">" }
        guard let action = tag.range(of: "action=\"") else { return nil }
        return unescaped(String(tag[action.upperBound...].prefix { $0 != "\"" }))
    }

    /// The `<Redirect>` URL (a holding line's).
    static func redirect(in twiml: String) -> String? {
        element("Redirect", in: twiml)
    }

    static func nextStep(in twiml: String) -> NextStep {
        if let action = gatherAction(in: twiml) {
            let turn = URLComponents(string: action)?.queryItems?.first { $0.name == "turn" }?.value ?? "?"
            return .listens(turn: turn)
        }
        if let number = element("Dial", in: twiml) { return .transfer(to: number) }
        if twiml.contains("<Record ") { return .voicemail }
        if twiml.contains("<Hangup") { return .hangUp }
        return .unknown
    }

    private static func element(_ name: String, in twiml: String) -> String? {
        guard let open = twiml.range(of: "<\(name)"), let close = twiml.range(of: "</\(name)>", range: open.upperBound..<twiml.endIndex),
              let end = twiml.range(of: ">", range: open.upperBound..<close.lowerBound) else { return nil }
        return unescaped(String(twiml[end.upperBound..<close.lowerBound]))
    }

    private static func unescaped(_ text: String) -> String {
        text.replacingOccurrences(of: "&lt;", with: "<").replacingOccurrences(of: "&gt;", with: ">").replacingOccurrences(of: "&quot;", with: "\"")
            .replacingOccurrences(of: "&apos;", with: "'").replacingOccurrences(of: "&#39;", with: "'").replacingOccurrences(of: "&amp;", with: "&")
    }
}
