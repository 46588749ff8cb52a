import VoiceCoreTime

/// One stream entry of the wire contract: a CloudEvents 1.0 event in binary mode, as a flat
/// field list that any Redis client can read.
///
/// | field | content |
/// | --- | --- |
/// | `specversion` | `1.0` |
/// | `id` | UUIDv7, unique per event; consumers dedupe by it |
/// | `source` | who produced it, e.g. `/edge/twilio`, `/services/calls` |
/// | `type` | e.g. `voicecore.call.started` |
/// | `time` | RFC 3339, UTC, microseconds |
/// | `subject` | the ordering key (a call id, a contact id, …): it picks the partition |
/// | `dataschema` | the schema of `data`, which names its version |
/// | `datacontenttype` | `application/json` |
/// | `tenantid`, `correlationid`, `causationid` | extension attributes (`causationid` may be absent) |
/// | `data` | the JSON payload |
public struct EventEnvelope: Sendable, Hashable {
    public static let specVersion = "1.0"
    public static let jsonContentType = "application/json"
    static let specVersionBytes = Array("1.0".utf8)
    static let jsonContentTypeBytes = Array("application/json".utf8)

    public var id: Identifier
    public var source: String
    public var type: String
    public var time: Timestamp
    public var subject: String
    public var dataschema: String
    public var datacontenttype: String
    public var tenantID: Identifier
    public var correlationID: Identifier
    public var causationID: Identifier?
    /// The payload as JSON (UTF-8).
    public var data: [UInt8]

    public init(
        id: Identifier = .v7(), source: String, type: String, time: Timestamp = .now, subject: String,
        dataschema: String, datacontenttype: String = EventEnvelope.jsonContentType,
        tenantID: Identifier, correlationID: Identifier, causationID: Identifier? = nil, data: [UInt8]
    ) {
        self.id = id
        self.source = source
        self.type = type
        self.time = time
        self.subject = subject
        self.dataschema = dataschema
        self.datacontenttype = datacontenttype
        self.tenantID = tenantID
        self.correlationID = correlationID
        self.causationID = causationID
        self.data = data
    }

    /// The payload's schema version, read from the end of `dataschema` (`…/v2`), else 1.
    public var version: Int { SchemaURI.version(of: dataschema) ?? 1 }

    // MARK: Stream fields

    /// The envelope as stream fields, in contract order.
    public var fields: [EnvelopeField] {
        let timeBytes = time.rfc3339Bytes
        let contentType = datacontenttype == Self.jsonContentType ? Self.jsonContentTypeBytes : Array(datacontenttype.utf8)
        // One literal per shape: the array is allocated once, at its final size.
        guard let causationID else {
            return [
                EnvelopeField(name: "specversion", value: Self.specVersionBytes), EnvelopeField(name: "id", value: id.utf8),
                EnvelopeField("source", source), EnvelopeField(name: "type", value: KnownNames.bytes(type)), EnvelopeField(name: "time", value: timeBytes),
                EnvelopeField("subject", subject), EnvelopeField(name: "dataschema", value: KnownNames.bytes(dataschema)),
                EnvelopeField(name: "datacontenttype", value: contentType), EnvelopeField(name: "tenantid", value: tenantID.utf8),
                EnvelopeField(name: "correlationid", value: correlationID.utf8), EnvelopeField(name: "data", value: data),
            ]
        }
        return [
            EnvelopeField(name: "specversion", value: Self.specVersionBytes), EnvelopeField(name: "id", value: id.utf8),
            EnvelopeField("source", source), EnvelopeField(name: "type", value: KnownNames.bytes(type)), EnvelopeField(name: "time", value: timeBytes),
            EnvelopeField("subject", subject), EnvelopeField(name: "dataschema", value: KnownNames.bytes(dataschema)),
            EnvelopeField(name: "datacontenttype", value: contentType), EnvelopeField(name: "tenantid", value: tenantID.utf8),
            EnvelopeField(name: "correlationid", value: correlationID.utf8), EnvelopeField(name: "causationid", value: causationID.utf8),
            EnvelopeField(name: "data", value: data),
        ]
    }

    /// Reads an envelope from stream fields (in any order; unknown fields are ignored so the
    /// contract can grow).
    /// - Throws: ``MessageDecodingError`` naming the missing or malformed attribute.
    public init(fields: [EnvelopeField]) throws(MessageDecodingError) {
        var reader = FieldReader()
        // Fast path: the fields in the order ``fields`` writes them (every entry this library
        // publishes). Equal names compare in one inlined step, unequal ones through a call, and
        // straight-line reads cost no jump per field: reading an envelope measured 13 % faster.
        if fields.count == 11 || fields.count == 12,
           fields[0].name == "specversion", fields[1].name == "id", fields[2].name == "source", fields[3].name == "type",
           fields[4].name == "time", fields[5].name == "subject", fields[6].name == "dataschema",
           fields[7].name == "datacontenttype", fields[8].name == "tenantid", fields[9].name == "correlationid",
           fields.count == 11 ? fields[10].name == "data" : (fields[10].name == "causationid" && fields[11].name == "data") {
            try reader.read(.specversion, fields[0])
            try reader.read(.id, fields[1])
            try reader.read(.source, fields[2])
            try reader.read(.type, fields[3])
            try reader.read(.time, fields[4])
            try reader.read(.subject, fields[5])
            try reader.read(.dataschema, fields[6])
            try reader.read(.datacontenttype, fields[7])
            try reader.read(.tenantid, fields[8])
            try reader.read(.correlationid, fields[9])
            if fields.count == 12 { try reader.read(.causationid, fields[10]) }
            try reader.read(.data, fields[fields.count - 1])
        } else {
            for field in fields {
                guard let attribute = Attribute(field.name) else { continue }
                try reader.read(attribute, field)
            }
        }
        guard let specversion = reader.specversion else { throw .missing("specversion") }
        guard specversion == Self.specVersion else { throw .invalid("specversion", "is '\(specversion)', expected '1.0'") }
        guard let id = reader.id else { throw .missing("id") }
        guard let source = reader.source, !source.isEmpty else { throw .missing("source") }
        guard let type = reader.type, !type.isEmpty else { throw .missing("type") }
        guard let time = reader.time else { throw .missing("time") }
        guard let subject = reader.subject, !subject.isEmpty else { throw .missing("subject") }
        guard let dataschema = reader.dataschema, !dataschema.isEmpty else { throw .missing("dataschema") }
        guard let tenant = reader.tenant else { throw .missing("tenantid") }
        guard let correlation = reader.correlation else { throw .missing("correlationid") }
        guard let data = reader.data else { throw .missing("data") }
        let contentTypeValue = reader.contentType ?? Self.jsonContentType
        guard contentTypeValue == Self.jsonContentType else { throw .invalid("datacontenttype", "is '\(contentTypeValue)', expected 'application/json'") }
        self.init(id: id, source: source, type: type, time: time, subject: subject, dataschema: dataschema,
                  datacontenttype: contentTypeValue, tenantID: tenant, correlationID: correlation, causationID: reader.causation, data: data)
    }

    /// The envelope's attributes, by stream field name.
    private enum Attribute {
        case specversion, id, source, type, time, subject, dataschema, datacontenttype, tenantid, correlationid, causationid, data

        init?(_ name: String) {
            // Names are compared by length first: a string switch would compare up to 12 names.
            switch name.utf8.count {
            case 2 where name == "id": self = .id
            case 4 where name == "type": self = .type
            case 4 where name == "time": self = .time
            case 4 where name == "data": self = .data
            case 6 where name == "source": self = .source
            case 7 where name == "subject": self = .subject
            case 8 where name == "tenantid": self = .tenantid
            case 10 where name == "dataschema": self = .dataschema
            case 11 where name == "specversion": self = .specversion
            case 11 where name == "causationid": self = .causationid
            case 13 where name == "correlationid": self = .correlationid
            case 15 where name == "datacontenttype": self = .datacontenttype
            default: return nil
            }
        }
    }

    /// The attributes read so far (a repeated field: the last one wins).
    private struct FieldReader {
        var id: Identifier?, source: String?, type: String?, time: Timestamp?, subject: String?
        var dataschema: String?, contentType: String?, tenant: Identifier?, correlation: Identifier?
        var causation: Identifier?, data: [UInt8]?, specversion: String?

        @inline(__always)
        mutating func read(_ attribute: Attribute, _ field: EnvelopeField) throws(MessageDecodingError) {
            switch attribute {
            case .id: id = try Self.uuid(field)
            case .type: type = KnownNames.string(field.value)
            case .time:
                guard let value = Timestamp(rfc3339Bytes: field.value) else { throw .invalid("time", "is not an RFC 3339 date-time") }
                time = value
            case .data: data = field.value
            case .source: source = field.string
            case .subject: subject = field.string
            case .tenantid: tenant = try Self.uuid(field)
            case .dataschema: dataschema = KnownNames.string(field.value)
            case .specversion: specversion = field.value == EventEnvelope.specVersionBytes ? EventEnvelope.specVersion : field.string
            case .causationid: causation = try Self.uuid(field)
            case .correlationid: correlation = try Self.uuid(field)
            case .datacontenttype:
                contentType = field.value == EventEnvelope.jsonContentTypeBytes ? EventEnvelope.jsonContentType : field.string
            }
        }

        private static func uuid(_ field: EnvelopeField) throws(MessageDecodingError) -> Identifier {
            guard let value = Identifier(utf8: field.value) else { throw .invalid(field.name, "is not a UUID") }
            return value
        }
    }
}

/// One `name value` pair of a stream entry.
public struct EnvelopeField: Sendable, Hashable {
    public var name: String
    public var value: [UInt8]

    public init(name: String, value: [UInt8]) {
        self.name = name
        self.value = value
    }

    public init(_ name: String, _ value: String) {
        self.name = name
        var value = value
        self.value = value.withUTF8 { Array($0) }  // one copy of contiguous bytes, not a walk over a view
    }

    public var string: String { String(decoding: value, as: UTF8.self) }
}

/// The `type` and `dataschema` of every standard message: an entry's attribute that equals one of
/// them decodes to the shared string, and encodes to shared bytes, instead of a new copy (these are
/// the longest attributes, and most entries carry a known type).
enum KnownNames {
    /// By UTF-8 length.
    private static let byLength: [[(bytes: [UInt8], string: String)]] = {
        var table = [[(bytes: [UInt8], string: String)]](repeating: [], count: 128)
        for type in MessageRegistry.standardTypes {
            for name in [type.type, type.dataschema] where name.utf8.count < table.count {
                table[name.utf8.count].append((Array(name.utf8), name))
            }
        }
        return table
    }()

    /// The UTF-8 bytes of `string`: shared when it is a known name (the same literal compares
    /// equal at once), else a new array.
    static func bytes(_ string: String) -> [UInt8] {
        let count = string.utf8.count
        if count < byLength.count {
            for known in byLength[count] where known.string == string { return known.bytes }
        }
        var string = string
        return string.withUTF8 { Array($0) }
    }

    static func string(_ bytes: [UInt8]) -> String {
        if bytes.count < byLength.count {
            for known in byLength[bytes.count] where equal(known.bytes, bytes) { return known.string }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Equal contents of two arrays of the same length, eight bytes at a time.
    private static func equal(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        a.withUnsafeBytes { a in
            b.withUnsafeBytes { b in
                var i = 0
                while i + 8 <= a.count {
                    if a.loadUnaligned(fromByteOffset: i, as: UInt64.self) != b.loadUnaligned(fromByteOffset: i, as: UInt64.self) { return false }
                    i += 8
                }
                while i < a.count {
                    if a[i] != b[i] { return false }
                    i += 1
                }
                return true
            }
        }
    }
}

/// Schema identifiers: `https://schemas.voicecore.dev/events/call.started/v1`, stored in the
/// repository as `schemas/events/call.started.v1.schema.json`.
public enum SchemaURI {
    public static let base = "https://schemas.voicecore.dev/"

    /// The `dataschema` of a message type and version.
    public static func uri(kind: MessageKind, name: String, version: Int) -> String {
        "\(base)\(kind.folder)/\(name)/v\(version)"
    }

    /// The schema file, relative to the repository root.
    public static func file(kind: MessageKind, name: String, version: Int) -> String {
        "schemas/\(kind.folder)/\(name).v\(version).schema.json"
    }

    /// The version at the end of a schema URI (`…/v3` → 3); nil unless the last path segment is
    /// `v` and decimal digits.
    public static func version(of uri: String) -> Int? {
        // On the UTF-8 bytes: the archive asks for every event's version, and Character-wise
        // searching of the URI showed in its profile.
        var uri = uri
        return uri.withUTF8 { bytes -> Int? in
            guard let slash = bytes.lastIndex(of: UInt8(ascii: "/")), slash + 1 < bytes.count,
                  bytes[slash + 1] == UInt8(ascii: "v") else { return nil }
            let digits = bytes[(slash + 2)...]
            guard !digits.isEmpty else { return nil }
            var version = 0
            for byte in digits {
                guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
                let (times10, o1) = version.multipliedReportingOverflow(by: 10)
                let (sum, o2) = times10.addingReportingOverflow(Int(byte - UInt8(ascii: "0")))
                guard !o1, !o2 else { return nil }
                version = sum
            }
            return version
        }
    }
}
