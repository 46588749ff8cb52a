/// A typed command or event payload: the `data` of an envelope.
///
/// Payloads travel in their hand-written JSON form (``JSONObjectCodable``), which follows the
/// schema in `schemas/`; the `Codable` conformance (same field names) is there for callers that
/// store payloads with Foundation's coders.
///
/// Each conforming type names its wire `type`, its schema `version`, its stream category and kind,
/// and the subject (ordering key) of a given value. `validate()` checks what JSON decoding alone
/// does not (formats, ranges), mirroring the JSON Schema in `schemas/`.
public protocol Message: Codable, JSONObjectCodable, Sendable, Hashable {
    /// The CloudEvents `type`, e.g. `voicecore.call.started`.
    static var type: String { get }
    /// The schema version this Swift type represents.
    static var version: Int { get }
    static var category: StreamCategory { get }
    static var kind: MessageKind { get }
    /// The schema name (file stem without version), e.g. `call.started`.
    static var schemaName: String { get }
    /// The `dataschema` URI, `https://schemas.voicecore.dev/events/call.started/v1` (a literal on
    /// each type: it is part of the contract, and computing it per event costs time).
    static var dataschema: String { get }
    /// The ordering key: messages with the same subject keep their order.
    var subject: String { get }
    /// Checks formats and ranges, naming the field that is wrong.
    func validate() throws(MessageDecodingError)
}

extension Message {
    public static var kind: MessageKind { .event }
    public static var schemaName: String {
        let prefix = kind == .command ? "voicecore.command." : "voicecore."
        return type.hasPrefix(prefix) ? String(type.dropFirst(prefix.count)) : type
    }
    public func validate() throws(MessageDecodingError) {}
}

/// Why a stream entry or payload could not be decoded: the field (a dotted path into `data`, or an
/// envelope attribute) and the reason.
public struct MessageDecodingError: Error, Sendable, Hashable, CustomStringConvertible {
    /// `data.from`, `data.intents[1].name`, or an envelope attribute such as `time`.
    public var field: String
    public var reason: String

    public init(field: String, reason: String) {
        self.field = field
        self.reason = reason
    }

    static func missing(_ field: String) -> MessageDecodingError {
        MessageDecodingError(field: field, reason: "is required")
    }

    static func invalid(_ field: String, _ reason: String) -> MessageDecodingError {
        MessageDecodingError(field: field, reason: reason)
    }

    public var description: String { "\(field) \(reason)" }
}
