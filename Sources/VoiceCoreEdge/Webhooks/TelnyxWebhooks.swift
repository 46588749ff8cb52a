import Foundation
import HTTPTypes
import Hummingbird
import VoiceCoreBus
import VoiceCoreEvents
import VoiceCoreTenants
import VoiceCoreTime

/// Telnyx Call Control webhooks → provider-neutral commands. Configure the Call Control
/// application's webhook URL as `{public URL}/webhooks/telnyx/{tenant}` (API v2).
///
/// Conversations: the telephony service (group `telephony`) steers a Telnyx call with the REST
/// API and tags each command with the turn it waits for (``CallControlState``). A
/// `call.gather.ended` (keys pressed, or none before the timeout) and a final inbound
/// `call.transcription` (the caller spoke) each become that turn's ``ReportCallerTurn``, published
/// under the turn's command id: whichever arrives first is the turn, the other is the same
/// command and is deduplicated. The voicemail it records arrives as `call.recording.saved`:
/// ``ReportRecording``, which the call service turns into `VoicemailRecorded`. The end of the
/// `speak` before a transfer, voicemail or hang-up (`call.speak.ended`, its `client_state`
/// ``CallControlState/closing(after:)``) is ``ReportPromptPlayed``: the telephony service's cue
/// to send the follow-up.
extension Edge {
    func addTelnyxRoutes(to router: Router<BasicRequestContext>) {
        router.post("/webhooks/telnyx/{tenant}") { request, context in
            let tenant = try tenantID(context)
            let (bytes, _) = try await body(of: request, accepting: [.applicationJson])
            let credentials = try await credentials(of: tenant)
            do throws(TelnyxSignature.Failure) {
                guard let key = credentials.telnyxPublicKey else { throw TelnyxSignature.Failure.noKey }
                try TelnyxSignature.verify(signature: request.headers[.telnyxSignature], timestamp: request.headers[.telnyxTimestamp], body: bytes,
                                           publicKey: key, tolerance: configuration.telnyxTolerance)
            } catch {
                metrics.signatureFailure("telnyx", error.rawValue)
                throw Problem.forbidden
            }
            let webhook = try TelnyxMapping.parse(bytes)
            switch try TelnyxMapping.command(webhook, tenant: tenant) {
            case .progress(let report):
                _ = try await publish(report, tenant: tenant, source: "/edge/telnyx", deduplicationKey: "telnyx:\(webhook.id)", metricSource: "telnyx")
            case .segment(let segment):
                _ = try await publish(segment, tenant: tenant, source: "/edge/telnyx", deduplicationKey: "telnyx:\(webhook.id)", metricSource: "telnyx")
                if let turn = try TelnyxMapping.speechTurn(webhook, tenant: tenant) { try await publishTurn(turn, tenant: tenant) }
            case .turn(let turn):
                try await publishTurn(turn, tenant: tenant)
            case .recording(let recording):
                _ = try await publish(recording, tenant: tenant, source: "/edge/telnyx", deduplicationKey: "telnyx:\(webhook.id)", metricSource: "telnyx")
            case .promptPlayed(let played):
                _ = try await publish(played, tenant: tenant, source: "/edge/telnyx", deduplicationKey: "telnyx:\(webhook.id)", metricSource: "telnyx")
            case nil:
                metrics.ignored("telnyx")
            }
            return Self.empty()
        }
    }

    /// Publishes a caller's turn under its command id (``ReportCallerTurn/commandID(callID:turn:)``),
    /// once per call and turn however often and by whichever webhook it is reported.
    private func publishTurn(_ turn: ReportCallerTurn, tenant: Identifier) async throws {
        let id = ReportCallerTurn.commandID(callID: turn.callID, turn: turn.turn)
        _ = try await publish(turn, tenant: tenant, source: "/edge/telnyx", id: id, deduplicationKey: "turn:\(id)", metricSource: "telnyx")
    }
}

/// Telnyx webhook bodies → commands. Pure functions.
public enum TelnyxMapping {
    /// The parts of a webhook the mapping reads, plus every field flattened (`data.payload.from`).
    public struct Webhook: Sendable {
        public var id: String
        public var eventType: String
        public var occurredAt: Timestamp
        public var payload: [String: String]
        public var fields: [String: String]
    }

    public enum Command: Sendable {
        case progress(ReportCallProgress)
        case segment(ReportTranscriptSegment)
        /// A caller's turn of a conversation the telephony service steers (`call.gather.ended`).
        case turn(ReportCallerTurn)
        /// The voicemail the telephony service recorded (`call.recording.saved`).
        case recording(ReportRecording)
        /// The reply before a transfer, voicemail or hang-up has been said (`call.speak.ended`).
        case promptPlayed(ReportPromptPlayed)
    }

    public static func parse(_ bytes: [UInt8]) throws(Problem) -> Webhook {
        let document: [String: JSONValue]
        do {
            document = try JSONValue.object(parsing: bytes)
        } catch {
            throw Problem.malformed("body", "is not a JSON object")
        }
        guard let data = document["data"]?.object else { throw Problem.invalid("data", "is required") }
        guard let id = data["id"]?.string, !id.isEmpty else { throw Problem.invalid("data.id", "is required") }
        try storable { () throws(MessageDecodingError) in try Storable.check(id, "data.id", as: .identifier) }
        guard let eventType = data["event_type"]?.string, !eventType.isEmpty else { throw Problem.invalid("data.event_type", "is required") }
        guard let occurredText = data["occurred_at"]?.string else { throw Problem.invalid("data.occurred_at", "is required") }
        guard let occurredAt = Timestamp(rfc3339: occurredText) else { throw Problem.malformed("data.occurred_at", "is not an RFC 3339 time") }
        var fields: [String: String] = [:]
        flatten(document, prefix: "", into: &fields)
        // Every field is kept in the command's provider_fields: none may hold what the platform
        // cannot store (``Storable``).
        try storable { () throws(MessageDecodingError) in try Storable.check(fields: fields) }
        var payload: [String: String] = [:]
        flatten(data["payload"]?.object ?? [:], prefix: "", into: &payload)
        return Webhook(id: id, eventType: eventType, occurredAt: occurredAt, payload: payload, fields: fields)
    }

    /// The command a webhook asks for; nil for event types that carry no call progress or speech
    /// (call.bridged, call.speak.started, …), for a `call.gather.ended` that is no caller's turn
    /// (ended by a hangup or a newer command, or not tagged by the telephony service), and for a
    /// `call.speak.ended` that is no closing reply's (a gather's prompt, another application's
    /// speak, or speech cut off by the hang-up), which are accepted and not published.
    public static func command(_ webhook: Webhook, tenant: Identifier) throws(Problem) -> Command? {
        let payload = webhook.payload
        func required(_ name: String) throws(Problem) -> String {
            guard let value = payload[name], !value.isEmpty else { throw Problem.invalid("data.payload.\(name)", "is required") }
            return value
        }
        func identifier(_ name: String) throws(Problem) -> String {
            let value = try required(name)
            try storable { () throws(MessageDecodingError) in try Storable.check(value, "data.payload.\(name)", as: .identifier) }
            return value
        }
        func optionalIdentifier(_ name: String) throws(Problem) -> String? {
            guard let value = payload[name], !value.isEmpty else { return nil }
            return try identifier(name)
        }
        let sequence = webhook.occurredAt.microsecondsSinceEpoch
        switch webhook.eventType {
        case "call.initiated", "call.answered", "call.hangup":
            let callControlID = try identifier("call_control_id")
            let connectionID = try optionalIdentifier("connection_id")
            let status: ReportCallProgress.Status
            switch webhook.eventType {
            case "call.initiated": status = .initiated
            case "call.answered": status = .inProgress
            default: status = hangupStatus(payload["hangup_cause"])
            }
            var duration: Int?
            if let start = payload["start_time"].flatMap({ Timestamp(rfc3339: $0) }), let end = payload["end_time"].flatMap({ Timestamp(rfc3339: $0) }),
               end.microsecondsSinceEpoch >= start.microsecondsSinceEpoch {
                let seconds = Int((end.microsecondsSinceEpoch - start.microsecondsSinceEpoch) / 1_000_000)
                guard seconds <= Storable.integerMaximum else {
                    throw Problem.malformed("data.payload.end_time", "is more than \(Storable.integerMaximum) seconds after start_time")
                }
                duration = seconds
            }
            let report = ReportCallProgress(
                callID: CallID.derive(tenant: tenant, provider: .telnyx, providerCallID: callControlID), provider: .telnyx,
                providerCallID: callControlID, providerAccountID: connectionID, status: status, sequence: sequence,
                occurredAt: webhook.occurredAt, direction: payload["direction"] == "outgoing" ? .outbound : .inbound,
                from: try required("from"), to: try required("to"), durationSeconds: duration, providerFields: webhook.fields)
            do {
                try report.validate()
            } catch {
                throw Problem.invalid(payloadField(error.field), error.reason)
            }
            return .progress(report)
        case "call.transcription":
            let callControlID = try identifier("call_control_id")
            guard let transcript = payload["transcription_data.transcript"] else { throw Problem.invalid("data.payload.transcription_data.transcript", "is required") }
            let segment = ReportTranscriptSegment(
                callID: CallID.derive(tenant: tenant, provider: .telnyx, providerCallID: callControlID), provider: .telnyx,
                providerCallID: callControlID, transcriptionID: webhook.id, sequence: transcriptSequence(webhook.occurredAt),
                track: payload["transcription_data.transcription_track"] == "outbound" ? .outbound : .inbound, text: transcript,
                isFinal: payload["transcription_data.is_final"] != "false",
                confidence: payload["transcription_data.confidence"].flatMap(Double.init), occurredAt: webhook.occurredAt)
            do {
                try segment.validate()
            } catch {
                throw Problem.invalid(payloadField(error.field), error.reason)
            }
            return .segment(segment)
        case "call.gather.ended":
            let callControlID = try identifier("call_control_id")
            // valid: keys that fit the gather; invalid: keys that did not; timeout: none pressed
            // (the caller may have spoken: call.transcription reports that, under the same turn).
            // call_hangup and cancelled end no turn.
            guard ["valid", "invalid", "timeout"].contains(payload["status"] ?? ""),
                  let turn = CallControlState.turn(clientState: payload["client_state"]) else { return nil }
            let digits = payload["digits"].flatMap { digits in
                !digits.isEmpty && digits.count <= 64 && digits.allSatisfy({ "0123456789*#".contains($0) }) ? digits : nil
            }
            return .turn(try callerTurn(callControlID: callControlID, turn: turn, text: "", digits: digits, confidence: nil,
                                        from: payload["from"], to: payload["to"], webhook: webhook, tenant: tenant))
        case "call.speak.ended":
            // Only the speak of a reply with a follow-up names its turn. Ended by the hang-up
            // (`call_hangup`): nothing follows on a call that is gone.
            guard payload["status"] != "call_hangup", let turn = CallControlState.closingTurn(clientState: payload["client_state"]) else { return nil }
            let callControlID = try identifier("call_control_id")
            let played = ReportPromptPlayed(callID: CallID.derive(tenant: tenant, provider: .telnyx, providerCallID: callControlID), provider: .telnyx,
                                            providerCallID: callControlID, turn: turn, occurredAt: webhook.occurredAt)
            do {
                try played.validate()
            } catch {
                throw Problem.invalid(payloadField(error.field), error.reason)
            }
            return .promptPlayed(played)
        case "call.recording.saved":
            // Only the recording the telephony service started for a voicemail (its `record_start`
            // carries the closing client_state): any other recording of the call is no voicemail.
            guard payload["client_state"] == CallControlState.closing else { return nil }
            let callControlID = try identifier("call_control_id")
            var duration: Int?
            if let start = payload["recording_started_at"].flatMap({ Timestamp(rfc3339: $0) }),
               let end = payload["recording_ended_at"].flatMap({ Timestamp(rfc3339: $0) }), end.microsecondsSinceEpoch >= start.microsecondsSinceEpoch {
                duration = min(Storable.integerMaximum, Int((end.microsecondsSinceEpoch - start.microsecondsSinceEpoch + 500_000) / 1_000_000))
            }
            // Telnyx's download links are long signed URLs: one that does not fit is left out (the
            // recording id still finds it through the API), not a refused webhook.
            let url = [payload["recording_urls.mp3"], payload["recording_urls.wav"]].compactMap { $0 }.first {
                !$0.isEmpty && $0.utf8.count <= 2048 && $0.utf8.allSatisfy { $0 > 32 && $0 < 127 }
            }
            let recording = ReportRecording(
                callID: CallID.derive(tenant: tenant, provider: .telnyx, providerCallID: callControlID), provider: .telnyx, providerCallID: callControlID,
                recordingID: try optionalIdentifier("recording_id") ?? webhook.id, recordingURL: url, durationSeconds: duration, status: .completed,
                occurredAt: webhook.occurredAt)
            do {
                try recording.validate()
            } catch {
                throw Problem.invalid(payloadField(error.field), error.reason)
            }
            return .recording(recording)
        default:
            return nil
        }
    }

    /// The caller's turn a `call.transcription` webhook ends: a final, non-empty transcript of the
    /// caller's track (`inbound`) while the call waits for a turn (``CallControlState``); nil for
    /// anything else (partials, the receptionist's own voice, a call nobody converses on).
    public static func speechTurn(_ webhook: Webhook, tenant: Identifier) throws(Problem) -> ReportCallerTurn? {
        let payload = webhook.payload
        guard webhook.eventType == "call.transcription", payload["transcription_data.is_final"] != "false",
              payload["transcription_data.transcription_track"] ?? "inbound" == "inbound",
              let turn = CallControlState.turn(clientState: payload["client_state"]),
              let callControlID = payload["call_control_id"], !callControlID.isEmpty,
              let text = payload["transcription_data.transcript"]?.trimmingCharacters(in: .whitespacesAndNewlines), !text.isEmpty
        else { return nil }
        return try callerTurn(callControlID: callControlID, turn: turn, text: text, digits: nil,
                              confidence: payload["transcription_data.confidence"].flatMap(Double.init).map { min(1, max(0, $0)) },
                              from: nil, to: nil, webhook: webhook, tenant: tenant)
    }

    private static func callerTurn(callControlID: String, turn: Int, text: String, digits: String?, confidence: Double?, from: String?, to: String?,
                                   webhook: Webhook, tenant: Identifier) throws(Problem) -> ReportCallerTurn {
        // Telnyx names SIP callers by URI: only E.164 numbers travel as the turn's from/to.
        func e164(_ value: String?) -> String? {
            guard let value, value.utf8.count >= 3, value.utf8.count <= 16, value.hasPrefix("+"), !value.hasPrefix("+0"),
                  value.utf8.dropFirst().allSatisfy({ $0 >= 48 && $0 <= 57 }) else { return nil }
            return value
        }
        let command = ReportCallerTurn(
            callID: CallID.derive(tenant: tenant, provider: .telnyx, providerCallID: callControlID), provider: .telnyx,
            providerCallID: callControlID, turn: turn, text: text, digits: digits, confidence: confidence, channel: .callControl,
            from: e164(from), to: e164(to), occurredAt: webhook.occurredAt)
        do {
            try command.validate()
        } catch {
            throw Problem.invalid(payloadField(error.field), error.reason)
        }
        return command
    }

    /// A transcript segment's sequence: Telnyx numbers none, so segments are ordered by
    /// `occurred_at` in milliseconds, taken modulo 2³¹ to fit the Postgres `integer` the
    /// transcripts are keyed by (``Storable/integerMaximum``). It wraps every 24.8 days: only a
    /// call in progress at that instant sees its later segments sort first.
    static func transcriptSequence(_ occurredAt: Timestamp) -> Int {
        let milliseconds = occurredAt.microsecondsSinceEpoch / 1000
        let modulus = Int64(Storable.integerMaximum) + 1
        return Int(((milliseconds % modulus) + modulus) % modulus)
    }

    /// A command field in an error (`data.from`) → the webhook's (`data.payload.from`).
    static func payloadField(_ field: String) -> String {
        "data.payload." + (field.hasPrefix("data.") ? String(field.dropFirst(5)) : field)
    }

    /// A ``Storable`` refusal as the 400 that names the field.
    private static func storable(_ check: () throws(MessageDecodingError) -> Void) throws(Problem) {
        do {
            try check()
        } catch {
            throw Problem.unstorable(error)
        }
    }

    /// Telnyx `hangup_cause` → the final status.
    static func hangupStatus(_ cause: String?) -> ReportCallProgress.Status {
        switch cause ?? "normal_clearing" {
        case "normal_clearing", "normal_unspecified": .completed
        case "user_busy": .busy
        case "timeout", "no_answer", "no_user_response": .noAnswer
        case "originator_cancel": .canceled
        default: .failed
        }
    }

    /// Every member of `object` as text (``JSONValue/text``), nested objects' members named by
    /// their path (`data.payload.from`).
    static func flatten(_ object: [String: JSONValue], prefix: String, into fields: inout [String: String]) {
        for (key, value) in object {
            let name = prefix.isEmpty ? key : prefix + "." + key
            if let nested = value.object {
                flatten(nested, prefix: name, into: &fields)
            } else {
                fields[name] = value.text
            }
        }
    }
}
