import VoiceCoreEvents

/// Where a Twilio conversation's callbacks reach this edge: one tenant's routes under the public
/// base URL (the URLs Twilio signs, so they must be exactly the ones the routes verify).
struct ConversationURLs: Sendable {
    /// Scheme, host and port providers reach the edge at (``Edge/publicBase(of:)``).
    let base: String
    let tenant: Identifier

    private var root: String { base + "/webhooks/twilio/\(tenant)" }

    /// The `<Gather action>` of a turn; `attempt` 2 waits again for the same turn's reply.
    func gather(turn: Int, attempt: Int = 1) -> String {
        attempt > 1 ? root + "/gather?turn=\(turn)&attempt=\(attempt)" : root + "/gather?turn=\(turn)"
    }

    var transcription: String { root + "/transcription" }
    /// `<Record action>`: called when the recording ends.
    var recorded: String { root + "/recorded" }
    /// `recordingStatusCallback`: the recording is stored (or there was nothing to record).
    var recording: String { root + "/recording" }
    /// `<Connect action>`: the ConversationRelay session ended.
    var relayEnded: String { root + "/relay/ended" }

    /// The ConversationRelay WebSocket: `wss://` for an `https://` base, `ws://` for `http://`.
    var relaySocket: String {
        let path = "/webhooks/twilio/\(tenant)/relay"
        if base.hasPrefix("https://") { return "wss://" + base.dropFirst("https://".count) + path }
        if base.hasPrefix("http://") { return "ws://" + base.dropFirst("http://".count) + path }
        return base + path
    }
}

/// The TwiML documents of a conversation. Pure: every value is XML-escaped here, so a reply's
/// text or a greeting can never change the document's shape.
enum TwiML {
    static let contentType = "text/xml; charset=utf-8"
    /// What the caller hears while the reply is late (the turn is then waited for again).
    static let holdingLine = "One moment, please."
    /// What the caller hears when the receptionist stayed silent twice: a message is taken instead.
    static let unavailableLine = "I'm sorry, I can't answer your question right now. Please leave a message after the tone, and we will get back to you."
    /// After a recording.
    static let goodbyeLine = "Thank you. Goodbye."

    private static let header = #"<?xml version="1.0" encoding="UTF-8"?>"# + "\n"

    private static func document(_ verbs: String) -> String {
        header + "<Response>" + verbs + "</Response>"
    }

    private static func say(_ text: String) -> String {
        "<Say>\(TwilioMapping.xmlEscaped(text))</Say>"
    }

    /// Listens for the caller's turn `turn`, speaking `prompt` meanwhile. An empty result (the
    /// caller said nothing) still calls back, so silence is a turn the receptionist answers.
    private static func gather(_ urls: ConversationURLs, turn: Int, prompt: String) -> String {
        #"<Gather input="speech dtmf" action="\#(TwilioMapping.xmlEscaped(urls.gather(turn: turn)))" method="POST" speechTimeout="auto" actionOnEmptyResult="true">"#
            + say(prompt) + "</Gather>"
    }

    /// Records a message of up to two minutes; Twilio reports the stored recording to
    /// ``ConversationURLs/recording``.
    private static func record(_ urls: ConversationURLs) -> String {
        #"<Record action="\#(TwilioMapping.xmlEscaped(urls.recorded))" method="POST" recordingStatusCallback="\#(TwilioMapping.xmlEscaped(urls.recording))" recordingStatusCallbackMethod="POST" recordingStatusCallbackEvent="completed absent" maxLength="120" playBeep="true"/>"#
    }

    /// The answer to an incoming call that converses by `<Gather>`: transcription of both tracks
    /// back to the edge (as before conversations), then the greeting while listening for turn 1.
    static func gatherAnswer(greeting: String, urls: ConversationURLs) -> String {
        document(#"<Start><Transcription statusCallbackUrl="\#(TwilioMapping.xmlEscaped(urls.transcription))" track="both_tracks" partialResults="true"/></Start>"#
                 + gather(urls, turn: 1, prompt: greeting))
    }

    /// The answer to an incoming call that converses over ConversationRelay: the provider speaks
    /// the greeting and streams the caller's words to the edge's WebSocket; when the session ends
    /// it asks ``ConversationURLs/relayEnded`` what next.
    static func relayAnswer(greeting: String, urls: ConversationURLs) -> String {
        document(#"<Connect action="\#(TwilioMapping.xmlEscaped(urls.relayEnded))"><ConversationRelay url="\#(TwilioMapping.xmlEscaped(urls.relaySocket))" welcomeGreeting="\#(TwilioMapping.xmlEscaped(greeting))"/></Connect>"#)
    }

    /// The answer to turn `turn` once the receptionist replied.
    static func reply(_ reply: ReceptionistReplied, turn: Int, urls: ConversationURLs) -> String {
        switch reply.action {
        case .continue:
            return document(gather(urls, turn: turn + 1, prompt: reply.text))
        case .transfer:
            guard let number = reply.transferTo else { return document(gather(urls, turn: turn + 1, prompt: reply.text)) }
            return document(say(reply.text) + "<Dial>\(TwilioMapping.xmlEscaped(number))</Dial>")
        case .voicemail:
            return document(say(reply.text) + record(urls))
        case .hangup:
            return document(say(reply.text) + "<Hangup/>")
        }
    }

    /// The reply is late: a holding line, then the same turn is waited for again.
    static func holding(turn: Int, urls: ConversationURLs) -> String {
        document(say(holdingLine) + #"<Redirect method="POST">\#(TwilioMapping.xmlEscaped(urls.gather(turn: turn, attempt: 2)))</Redirect>"#)
    }

    /// No reply twice (or no receptionist at all): take a message, which needs no AI.
    static func takeMessage(urls: ConversationURLs) -> String {
        document(say(unavailableLine) + record(urls))
    }

    /// After the caller's message was recorded.
    static func goodbye() -> String {
        document(say(goodbyeLine) + "<Hangup/>")
    }

    /// What follows a ConversationRelay session: connect, record, or hang up.
    static func afterRelay(_ handoff: RelayHandoff, urls: ConversationURLs) -> String {
        switch handoff {
        case .transfer(let number):
            return document("<Dial>\(TwilioMapping.xmlEscaped(number))</Dial>")
        case .voicemail(let apologise):
            return document((apologise ? say(unavailableLine) : "") + record(urls))
        case .hangup:
            return document("<Hangup/>")
        }
    }
}
