import VoiceCoreEvents
import VoiceCoreTime

/// What a ConversationRelay session asked for when it ended (its `handoffData`).
enum RelayHandoff: Sendable, Hashable {
    case transfer(String)
    /// Record a message; `apologise`: the receptionist did not answer, so say why first.
    case voicemail(apologise: Bool)
    case hangup
}

/// Twilio conversation callbacks → commands. Pure functions: what a callback means, without HTTP.
enum ConversationMapping {
    /// The turn a `<Gather action>` callback answers (`?turn=N`) and which wait it is (`attempt`,
    /// 1 or 2: the redirect after a holding line waits again).
    static func turn(_ query: [(name: String, value: String)]) throws(Problem) -> (turn: Int, attempt: Int) {
        guard let text = query.first(where: { $0.name == "turn" })?.value else { throw Problem.malformed("turn", "is required in the query") }
        guard let turn = Int(text), turn >= 1, turn <= Storable.integerMaximum else {
            throw Problem.malformed("turn", "must be an integer from 1 to \(Storable.integerMaximum)")
        }
        var attempt = 1
        if let text = query.first(where: { $0.name == "attempt" })?.value {
            guard let value = Int(text), (1...2).contains(value) else { throw Problem.malformed("attempt", "must be 1 or 2") }
            attempt = value
        }
        return (turn, attempt)
    }

    /// A `<Gather>` result: `SpeechResult`, `Confidence`, `Digits` of the call `CallSid`.
    static func callerTurn(_ form: FormBody, tenant: Identifier, turn: Int, receivedAt: Timestamp) throws(Problem) -> ReportCallerTurn {
        do {
            try form.checkStorable()
        } catch {
            throw Problem.unstorable(error)
        }
        guard let callSid = form["CallSid"], !callSid.isEmpty else { throw Problem.invalid("CallSid", "is required") }
        let confidence: Double?
        if let text = form["Confidence"], !text.isEmpty {
            guard let value = Double(text), value.isFinite else { throw Problem.malformed("Confidence", "must be a number from 0 to 1") }
            confidence = value
        } else {
            confidence = nil
        }
        let command = ReportCallerTurn(
            callID: CallID.derive(tenant: tenant, provider: .twilio, providerCallID: callSid), provider: .twilio, providerCallID: callSid,
            turn: turn, text: form["SpeechResult"] ?? "", digits: form["Digits"].flatMap { $0.isEmpty ? nil : $0 },
            confidence: confidence, channel: .gather,
            // A caller id that is not a number (`anonymous`, `client:…`) is no reason to refuse the turn.
            from: form["From"].flatMap(e164), to: form["To"].flatMap(e164), language: form["Language"].flatMap { $0.isEmpty ? nil : $0 },
            occurredAt: receivedAt)
        do {
            try command.validate()
        } catch {
            throw Problem.invalid(twilioName(error.field), error.reason)
        }
        return command
    }

    /// A `recordingStatusCallback`: nil for a status that is no outcome (`in-progress`).
    static func recording(_ form: FormBody, tenant: Identifier, receivedAt: Timestamp) throws(Problem) -> ReportRecording? {
        do {
            try form.checkStorable()
        } catch {
            throw Problem.unstorable(error)
        }
        guard let callSid = form["CallSid"], !callSid.isEmpty else { throw Problem.invalid("CallSid", "is required") }
        guard let recordingSid = form["RecordingSid"], !recordingSid.isEmpty else { throw Problem.invalid("RecordingSid", "is required") }
        guard let statusText = form["RecordingStatus"], !statusText.isEmpty else { throw Problem.invalid("RecordingStatus", "is required") }
        if statusText == "in-progress" { return nil }
        guard let status = ReportRecording.Status(rawValue: statusText) else {
            throw Problem.invalid("RecordingStatus", "must be one of completed, failed, absent, in-progress")
        }
        let duration: Int?
        if let text = form["RecordingDuration"], !text.isEmpty {
            guard let value = Int(text), value >= -1, value <= Storable.integerMaximum else {
                throw Problem.malformed("RecordingDuration", "must be an integer from 0 to \(Storable.integerMaximum)")
            }
            // Twilio reports -1 when nothing was recorded.
            duration = max(0, value)
        } else {
            duration = nil
        }
        let report = ReportRecording(
            callID: CallID.derive(tenant: tenant, provider: .twilio, providerCallID: callSid), provider: .twilio, providerCallID: callSid,
            recordingID: recordingSid, recordingURL: form["RecordingUrl"].flatMap { $0.isEmpty ? nil : $0 }, durationSeconds: duration,
            status: status, occurredAt: form["Timestamp"].flatMap(TwilioMapping.timestamp) ?? receivedAt)
        do {
            try report.validate()
        } catch {
            throw Problem.invalid(twilioName(error.field), error.reason)
        }
        return report
    }

    /// The deduplication key of a recording callback: one command per recording and status.
    static func recordingKey(_ report: ReportRecording) -> String {
        "twilio:recording:\(report.recordingID):\(report.status.rawValue)"
    }

    /// The deduplication key of a caller's turn (the command id is the same for every delivery).
    static func turnKey(_ commandID: Identifier) -> String {
        "turn:\(commandID)"
    }

    /// What a ConversationRelay session's `HandoffData` asks for (the edge's relay writes it:
    /// `{"action":"transfer","transfer_to":"+1…"}`, `{"action":"voicemail"[,"reason":…]}`);
    /// anything else, or none, hangs up.
    static func handoff(_ text: String?) -> RelayHandoff {
        guard let text, !text.isEmpty, let object = try? JSONObject.parse(Array(text.utf8), path: "HandoffData"),
              let action = try? object.string("action") else { return .hangup }
        switch action {
        case "transfer":
            guard let number = try? object.string("transfer_to"), let valid = e164(number) else { return .hangup }
            return .transfer(valid)
        case "voicemail":
            let reason = (try? object.optionalString("reason")) ?? nil
            return .voicemail(apologise: reason != nil)
        default:
            return .hangup
        }
    }

    /// `value` when it is an E.164 number (`+` then 2 to 15 digits, the first not 0).
    static func e164(_ value: String) -> String? {
        let bytes = Array(value.utf8)
        guard bytes.count >= 3, bytes.count <= 16, bytes[0] == UInt8(ascii: "+"), bytes[1] != UInt8(ascii: "0"),
              bytes.dropFirst().allSatisfy({ $0 >= 48 && $0 <= 57 }) else { return nil }
        return value
    }

    /// Our field names in errors → Twilio's.
    private static func twilioName(_ field: String) -> String {
        switch field.hasPrefix("data.") ? String(field.dropFirst(5)) : field {
        case "provider_call_id": "CallSid"
        case "text": "SpeechResult"
        case "digits": "Digits"
        case "confidence": "Confidence"
        case "language": "Language"
        case "recording_id": "RecordingSid"
        case "recording_url": "RecordingUrl"
        case "duration_seconds": "RecordingDuration"
        case let other: other
        }
    }
}
