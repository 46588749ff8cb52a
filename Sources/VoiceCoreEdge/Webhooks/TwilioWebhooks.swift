import Foundation
import HTTPTypes
import Hummingbird
import VoiceCoreBus
import VoiceCoreEvents
import VoiceCoreTenants
import VoiceCoreTime

/// Twilio Programmable Voice callbacks → provider-neutral commands.
///
/// Configure the Twilio number with: "A call comes in" → `POST {public URL}/webhooks/twilio/{tenant}/voice`,
/// "Call status changes" → `POST {public URL}/webhooks/twilio/{tenant}/status` (with the events
/// initiated, ringing, answered, completed). The voice answer converses by the tenant's settings
/// (`<Gather>` with real-time transcription, whose callbacks arrive at
/// `/webhooks/twilio/{tenant}/transcription`, or ConversationRelay: see `GatherRoutes.swift`).
extension Edge {
    static let twilioMediaTypes: [MediaType] = [.applicationUrlEncoded, .applicationJson]

    func addTwilioRoutes(to router: Router<BasicRequestContext>) {
        router.post("/webhooks/twilio/{tenant}/voice") { request, context in
            let (tenant, form, credentials) = try await verifiedTwilioRequest(request, context)
            let report = try TwilioMapping.incomingCall(form, tenant: tenant, receivedAt: .now)
            _ = try await publish(report, tenant: tenant, source: "/edge/twilio", deduplicationKey: TwilioMapping.deduplicationKey(request, form, route: "voice"),
                                  metricSource: "twilio")
            // The tenant's settings choose how the call converses (Conversations/GatherRoutes.swift).
            return voiceAnswer(credentials, urls: ConversationURLs(base: publicBase(of: request), tenant: tenant))
        }
        router.post("/webhooks/twilio/{tenant}/status") { request, context in
            let (tenant, form) = try await verifiedTwilio(request, context)
            let report = try TwilioMapping.statusCallback(form, tenant: tenant, receivedAt: .now)
            _ = try await publish(report, tenant: tenant, source: "/edge/twilio", deduplicationKey: TwilioMapping.deduplicationKey(request, form, route: "status"),
                                  metricSource: "twilio")
            return Self.empty()
        }
        router.post("/webhooks/twilio/{tenant}/transcription") { request, context in
            let (tenant, form) = try await verifiedTwilio(request, context)
            guard let segment = try TwilioMapping.transcription(form, tenant: tenant, receivedAt: .now) else {
                metrics.ignored("twilio")
                return Self.empty()
            }
            _ = try await publish(segment, tenant: tenant, source: "/edge/twilio",
                                  deduplicationKey: TwilioMapping.deduplicationKey(request, form, route: "transcription"), metricSource: "twilio")
            return Self.empty()
        }
    }

    /// Reads, parses and verifies a Twilio callback: 415, 413, 404, 400 or 403 before anything
    /// else happens.
    func verifiedTwilio(_ request: Request, _ context: BasicRequestContext) async throws -> (Identifier, FormBody) {
        let (tenant, form, _) = try await verifiedTwilioRequest(request, context)
        return (tenant, form)
    }

    /// ``verifiedTwilio(_:_:)`` with the tenant's credentials (and so its settings).
    func verifiedTwilioRequest(_ request: Request, _ context: BasicRequestContext) async throws -> (Identifier, FormBody, TenantCredentials) {
        let tenant = try tenantID(context)
        let (bytes, mediaType) = try await body(of: request, accepting: Self.twilioMediaTypes)
        let credentials = try await credentials(of: tenant)
        guard let signature = request.headers[.twilioSignature] else {
            metrics.signatureFailure("twilio", TwilioSignature.Failure.missing.rawValue)
            throw Problem.forbidden
        }
        let url = publicURL(of: request)
        let form: FormBody
        let signed: [(name: String, value: String)]
        if mediaType.names(.applicationJson) {
            // JSON bodies are signed through the URL's bodySHA256.
            guard TwilioSignature.verifyBodyHash(url: url, body: bytes) else {
                metrics.signatureFailure("twilio", TwilioSignature.Failure.bodyHash.rawValue)
                throw Problem.forbidden
            }
            form = try TwilioMapping.flatJSON(bytes)
            signed = []
        } else {
            do {
                form = try FormBody(parsing: bytes)
            } catch {
                throw Problem.malformed(error.field, error.reason)
            }
            signed = form.parameters
        }
        do throws(TwilioSignature.Failure) {
            let algorithm = try TwilioSignature.algorithm(settingsHeader: request.headers[.twilioSignatureSettings])
            let key = algorithm == nil ? credentials.twilioAuthToken : credentials.twilioSharedKey
            guard let key else { throw TwilioSignature.Failure.noKey }
            guard TwilioSignature.verify(signature: signature, url: url, parameters: signed, key: key, algorithm: algorithm ?? .hmacSHA1) else {
                throw TwilioSignature.Failure.mismatch
            }
        } catch {
            metrics.signatureFailure("twilio", error.rawValue)
            throw Problem.forbidden
        }
        if let account = credentials.twilioAccountSID, let sent = form["AccountSid"], sent != account {
            metrics.signatureFailure("twilio", "account")
            throw Problem.forbidden
        }
        return (tenant, form, credentials)
    }
}

extension HTTPField.Name {
    static let twilioSignature = Self("X-Twilio-Signature")!
    static let twilioSignatureSettings = Self("X-Twilio-Webhooks-Signature-Settings")!
    static let twilioIdempotencyToken = Self("I-Twilio-Idempotency-Token")!
    static let telnyxSignature = Self("telnyx-signature-ed25519")!
    static let telnyxTimestamp = Self("telnyx-timestamp")!
    static let idempotencyKey = Self("Idempotency-Key")!
}

/// Twilio parameters → commands. Pure functions: what a callback means, without HTTP.
public enum TwilioMapping {
    /// The key that makes a retried delivery a duplicate: Twilio's idempotency token when sent,
    /// else `CallSid`+`SequenceNumber` (status), `CallSid` (incoming call), or
    /// `TranscriptionSid`+`SequenceId`+`Track` (transcription).
    static func deduplicationKey(_ request: Request, _ form: FormBody, route: String) -> String {
        if let token = request.headers[.twilioIdempotencyToken], !token.isEmpty { return "twilio:token:\(token)" }
        return deduplicationKey(form, route: route)
    }

    public static func deduplicationKey(_ form: FormBody, route: String) -> String {
        switch route {
        case "status": "twilio:status:\(form["CallSid"] ?? ""):\(form["SequenceNumber"] ?? "")"
        case "transcription": "twilio:transcription:\(form["TranscriptionSid"] ?? ""):\(form["SequenceId"] ?? ""):\(form["Track"] ?? "")"
        default: "twilio:\(route):\(form["CallSid"] ?? "")"
        }
    }

    /// The incoming-call webhook: the call is ringing.
    public static func incomingCall(_ form: FormBody, tenant: Identifier, receivedAt: Timestamp) throws(Problem) -> ReportCallProgress {
        try progress(form, tenant: tenant, receivedAt: receivedAt, defaultStatus: .ringing, defaultSequence: 0)
    }

    /// A voice status callback.
    public static func statusCallback(_ form: FormBody, tenant: Identifier, receivedAt: Timestamp) throws(Problem) -> ReportCallProgress {
        try progress(form, tenant: tenant, receivedAt: receivedAt, defaultStatus: nil, defaultSequence: nil)
    }

    private static func progress(_ form: FormBody, tenant: Identifier, receivedAt: Timestamp, defaultStatus: ReportCallProgress.Status?,
                                 defaultSequence: Int64?) throws(Problem) -> ReportCallProgress {
        try storable(form)
        let callSid = try identifier(form, "CallSid")
        let accountSid = try optionalIdentifier(form, "AccountSid")
        let status: ReportCallProgress.Status
        if let text = form["CallStatus"] {
            guard let mapped = callStatus(text) else {
                throw Problem.invalid("CallStatus", "must be one of queued, initiated, ringing, in-progress, completed, busy, failed, no-answer, canceled")
            }
            status = mapped
        } else if let defaultStatus {
            status = defaultStatus
        } else {
            throw Problem.invalid("CallStatus", "is required")
        }
        let sequence: Int64
        if let text = form["SequenceNumber"] {
            guard let value = Int64(text), value >= 0 else { throw Problem.malformed("SequenceNumber", "must be a non-negative integer") }
            sequence = value
        } else if let defaultSequence {
            sequence = defaultSequence
        } else {
            throw Problem.invalid("SequenceNumber", "is required")
        }
        let duration = try form["CallDuration"].map { text throws(Problem) in try storableCount(text, "CallDuration") }
        let report = ReportCallProgress(
            callID: CallID.derive(tenant: tenant, provider: .twilio, providerCallID: callSid), provider: .twilio, providerCallID: callSid,
            providerAccountID: accountSid, status: status, sequence: sequence,
            occurredAt: form["Timestamp"].flatMap(timestamp) ?? receivedAt,
            direction: (form["Direction"] ?? "inbound").hasPrefix("outbound") ? .outbound : .inbound,
            from: try required(form, "From"), to: try required(form, "To"), durationSeconds: duration, providerFields: form.dictionary)
        do {
            try report.validate()
        } catch {
            throw Problem.invalid(twilioName(error.field), error.reason)
        }
        return report
    }

    /// A real-time transcription callback: a segment for `transcription-content`, nil for the
    /// lifecycle events (started, stopped, error), which carry no speech.
    public static func transcription(_ form: FormBody, tenant: Identifier, receivedAt: Timestamp) throws(Problem) -> ReportTranscriptSegment? {
        try storable(form)
        let event = try required(form, "TranscriptionEvent")
        guard event == "transcription-content" else { return nil }
        let callSid = try identifier(form, "CallSid")
        let transcriptionSid = try identifier(form, "TranscriptionSid")
        let data = try required(form, "TranscriptionData")
        let transcript: String
        let confidence: Double?
        do {
            let object = try JSONObject.parse(Array(data.utf8), path: "TranscriptionData")
            transcript = try object.string("transcript")
            confidence = try object.optionalDouble("confidence")
            // Escaped in the JSON text, a NUL passes the form's check: the transcript is stored as text.
            try Storable.check(transcript, "TranscriptionData", as: .freeText)
        } catch {
            throw Problem.malformed(error.field, error.reason)
        }
        let sequence = try storableCount(try required(form, "SequenceId"), "SequenceId")
        let track: TranscriptTrack
        switch form["Track"] ?? "inbound_track" {
        case "inbound_track", "inbound": track = .inbound
        case "outbound_track", "outbound": track = .outbound
        default: throw Problem.invalid("Track", "must be inbound_track or outbound_track")
        }
        let segment = ReportTranscriptSegment(
            callID: CallID.derive(tenant: tenant, provider: .twilio, providerCallID: callSid), provider: .twilio, providerCallID: callSid,
            transcriptionID: transcriptionSid, sequence: sequence, track: track, text: transcript,
            isFinal: (form["Final"] ?? "true").lowercased() == "true", confidence: confidence,
            occurredAt: form["Timestamp"].flatMap(timestamp) ?? receivedAt)
        do {
            try segment.validate()
        } catch {
            throw Problem.invalid(twilioName(error.field), error.reason)
        }
        return segment
    }

    static func callStatus(_ text: String) -> ReportCallProgress.Status? {
        switch text {
        case "queued", "initiated": .initiated
        case "ringing": .ringing
        case "in-progress", "answered": .inProgress
        case "completed": .completed
        case "busy": .busy
        case "failed": .failed
        case "no-answer": .noAnswer
        case "canceled": .canceled
        default: nil
        }
    }

    private static func required(_ form: FormBody, _ name: String) throws(Problem) -> String {
        guard let value = form[name], !value.isEmpty else { throw Problem.invalid(name, "is required") }
        return value
    }

    // What the platform can store (``Storable``) is checked before anything is mapped: a value
    // past it would be published and then refused by a projection. Refusals are 400, like any
    // other parameter a callback cannot carry.

    /// Every parameter, as free text.
    private static func storable(_ form: FormBody) throws(Problem) {
        do {
            try form.checkStorable()
        } catch {
            throw Problem.unstorable(error)
        }
    }

    /// A required provider id (`CallSid`, `TranscriptionSid`).
    private static func identifier(_ form: FormBody, _ name: String) throws(Problem) -> String {
        let value = try required(form, name)
        do {
            try Storable.check(value, name, as: .identifier)
        } catch {
            throw Problem.unstorable(error)
        }
        return value
    }

    private static func optionalIdentifier(_ form: FormBody, _ name: String) throws(Problem) -> String? {
        guard let value = form[name], !value.isEmpty else { return nil }
        return try identifier(form, name)
    }

    /// A count stored in a Postgres `integer` column (`CallDuration`, `SequenceId`).
    private static func storableCount(_ text: String, _ name: String) throws(Problem) -> Int {
        guard let value = Int(text), value >= 0, value <= Storable.integerMaximum else {
            throw Problem.malformed(name, "must be an integer from 0 to \(Storable.integerMaximum)")
        }
        return value
    }

    /// Our field names in errors → Twilio's.
    private static func twilioName(_ field: String) -> String {
        let field = field.hasPrefix("data.") ? String(field.dropFirst(5)) : field
        if field.hasPrefix("provider_fields.") { return String(field.dropFirst("provider_fields.".count)) }
        return switch field {
        case "from": "From"
        case "to": "To"
        case "provider_call_id": "CallSid"
        case "provider_account_id": "AccountSid"
        case "transcription_id": "TranscriptionSid"
        case "duration_seconds": "CallDuration"
        case "sequence": "SequenceNumber"
        case "text": "TranscriptionData"
        default: field
        }
    }

    /// A flat JSON object (Twilio's JSON callbacks) as parameters; nested values as JSON text.
    static func flatJSON(_ bytes: [UInt8]) throws(Problem) -> FormBody {
        let object: [String: JSONValue]
        do {
            object = try JSONValue.object(parsing: bytes)
        } catch {
            throw Problem.malformed("body", "is not a JSON object")
        }
        return FormBody(parameters: object.keys.sorted().map { key in (key, object[key]?.text ?? "") })
    }

    /// Twilio's timestamps: RFC 2822 (`Mon, 16 Aug 2010 03:45:01 +0000`) in status callbacks,
    /// RFC 3339 in transcription callbacks.
    public static func timestamp(_ text: String) -> Timestamp? {
        if let first = text.utf8.first, first >= UInt8(ascii: "0"), first <= UInt8(ascii: "9"), let value = Timestamp(rfc3339: text) { return value }
        var text = text
        return text.withUTF8(rfc2822)
    }

    private static let months: [[UInt8]] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"].map { Array($0.utf8) }

    /// `[Day, ] D[D] Mon YYYY HH:MM:SS ±ZZZZ`, read in one pass (this runs for every status callback).
    private static func rfc2822(_ text: UnsafeBufferPointer<UInt8>) -> Timestamp? {
        var i = 0
        if let comma = text.firstIndex(of: UInt8(ascii: ",")) {
            i = comma + 1
            while i < text.count, text[i] == UInt8(ascii: " ") { i += 1 }
        }
        func number(maxDigits: Int, exactly: Bool = true) -> Int? {
            var value = 0, digits = 0
            while digits < maxDigits, i < text.count, text[i] >= UInt8(ascii: "0"), text[i] <= UInt8(ascii: "9") {
                value = value * 10 + Int(text[i] - UInt8(ascii: "0"))
                digits += 1
                i += 1
            }
            return digits == maxDigits || (!exactly && digits > 0) ? value : nil
        }
        func expect(_ byte: UInt8) -> Bool {
            guard i < text.count, text[i] == byte else { return false }
            i += 1
            return true
        }
        guard let day = number(maxDigits: 2, exactly: false), expect(UInt8(ascii: " ")), i + 3 <= text.count else { return nil }
        guard let month = months.firstIndex(where: { $0.elementsEqual(text[i..<i + 3]) }) else { return nil }
        i += 3
        guard expect(UInt8(ascii: " ")), let year = number(maxDigits: 4), expect(UInt8(ascii: " ")),
              let hour = number(maxDigits: 2), expect(UInt8(ascii: ":")), let minute = number(maxDigits: 2), expect(UInt8(ascii: ":")),
              let second = number(maxDigits: 2), expect(UInt8(ascii: " ")), i < text.count else { return nil }
        let sign = text[i] == UInt8(ascii: "-") ? -1 : 1
        guard text[i] == UInt8(ascii: "+") || text[i] == UInt8(ascii: "-") else { return nil }
        i += 1
        guard let offsetHours = number(maxDigits: 2), let offsetMinutes = number(maxDigits: 2), i == text.count else { return nil }
        return Timestamp(year: year, month: month + 1, day: day, hour: hour, minute: minute, second: second,
                         offsetSeconds: sign * (offsetHours * 3600 + offsetMinutes * 60))
    }

    static func xmlEscaped(_ text: String) -> String {
        var result = ""
        for character in text {
            switch character {
            case "&": result += "&amp;"
            case "<": result += "&lt;"
            case ">": result += "&gt;"
            case "\"": result += "&quot;"
            case "'": result += "&apos;"
            default: result.append(character)
            }
        }
        return result
    }
}
