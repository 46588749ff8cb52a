import Foundation
import NIOCore
import VoiceCoreBus
import VoiceCoreEvents
import VoiceCoreTime

/// One event as a Server-Sent Events frame: `event:` its type, `id:` its ``TailPosition`` (what
/// `Last-Event-ID` resumes after), `data:` the CloudEvents 1.0 JSON event in structured mode on one
/// line (the stream entry's attributes, with `data` the payload as JSON).
///
/// ```text
/// event: voicecore.call.started
/// id: 1765102833123-0@vc:{p03}:calls
/// data: {"specversion":"1.0","id":"…","source":"/services/calls","type":"voicecore.call.started",…,"data":{…}}
///
/// ```
struct EventFrame: Sendable {
    let tenant: Identifier
    let type: String
    /// The whole frame, blank line included; one buffer shared by every connection it goes to.
    let bytes: ByteBuffer

    /// The tenant and type of a stream entry, read from those two fields alone: what the feed
    /// needs to know whether anyone wants the entry before it builds the frame (the envelope's
    /// decoding and the JSON are most of a frame's cost, and with nobody connected there is no
    /// frame to build). Nil where ``init(_:)`` would be nil for want of either field.
    static func peek(_ tailEntry: TailEntry) -> (tenant: Identifier, type: String)? {
        guard let fields = tailEntry.entry.fields else { return nil }
        var tenant: Identifier?
        var type: String?
        for field in fields {
            if field.name == "tenantid" {
                tenant = Identifier(String(decoding: field.value, as: UTF8.self))
            } else if field.name == "type" {
                type = String(decoding: field.value, as: UTF8.self)
            }
            if tenant != nil, type != nil { break }
        }
        guard let tenant, let type else { return nil }
        return (tenant, type)
    }

    /// The frame of a stream entry; nil for an entry that is not an event of the wire contract
    /// (missing or malformed attributes), which no tenant can be told apart by.
    init?(_ tailEntry: TailEntry) {
        guard let fields = tailEntry.entry.fields,
              let envelope = try? EventEnvelope(fields: fields.map { EnvelopeField(name: $0.name, value: $0.value) }),
              !envelope.type.contains(where: \.isNewline)
        else { return nil }
        tenant = envelope.tenantID
        type = envelope.type
        var frame: [UInt8] = []
        frame.reserveCapacity(envelope.data.count + 512)
        frame.append(contentsOf: "event: ".utf8)
        frame.append(contentsOf: envelope.type.utf8)
        frame.append(contentsOf: "\nid: ".utf8)
        frame.append(contentsOf: tailEntry.position.description.utf8)
        frame.append(contentsOf: "\ndata: ".utf8)
        Self.appendStructured(envelope, to: &frame)
        frame.append(contentsOf: "\n\n".utf8)
        bytes = ByteBuffer(bytes: frame)
    }

    /// The CloudEvents structured-mode JSON of `envelope`, on one line.
    static func appendStructured(_ envelope: EventEnvelope, to json: inout [UInt8]) {
        func member(_ name: String, _ value: String) {
            json.append(contentsOf: ",\"".utf8)
            json.append(contentsOf: name.utf8)
            json.append(contentsOf: "\":".utf8)
            JSONObjectWriter.appendString(value, to: &json)
        }
        json.append(contentsOf: "{\"specversion\":".utf8)
        JSONObjectWriter.appendString(EventEnvelope.specVersion, to: &json)
        member("id", envelope.id.description)
        member("source", envelope.source)
        member("type", envelope.type)
        member("time", envelope.time.rfc3339)
        member("subject", envelope.subject)
        member("dataschema", envelope.dataschema)
        member("datacontenttype", envelope.datacontenttype)
        member("tenantid", envelope.tenantID.description)
        member("correlationid", envelope.correlationID.description)
        if let causation = envelope.causationID { member("causationid", causation.description) }
        if (try? JSONValue.object(parsing: envelope.data, path: "data")) != nil {
            // Valid JSON has line breaks only as whitespace between tokens (inside strings they are
            // escaped): spaces keep it valid and the frame's data on one line.
            json.append(contentsOf: ",\"data\":".utf8)
            json.append(contentsOf: envelope.data.lazy.map { $0 == 10 || $0 == 13 ? 32 : $0 })
        } else {
            // A payload that is not a JSON object (a foreign writer's) travels as CloudEvents binary data.
            member("data_base64", Data(envelope.data).base64EncodedString())
        }
        json.append(UInt8(ascii: "}"))
    }

    /// A comment line: ignored by clients, it keeps proxies from closing an idle connection and
    /// shows the edge a client that is gone.
    static let heartbeat = ByteBuffer(string: ":\n\n")
}
