import VoiceCoreBus
import VoiceCoreEvents
import VoiceCorePostgres

/// A read model kept in Postgres from event streams.
///
/// A projection names the stream categories it reads and the event types it applies; the
/// ``ProjectorRunner`` reads batches from those streams and calls ``apply(_:in:)`` inside the
/// transaction that also writes the projection's checkpoint, so a batch is applied exactly once in
/// effect. `apply` must write set-wise (multi-row upserts over `unnest`, or COPY), never a statement
/// per event, and must use unqualified table names: the replay tool runs the same code against
/// shadow tables by putting their schema first on the `search_path`.
///
/// `apply` should be order-tolerant where the domain allows it (a late or duplicated event must not
/// regress a row): a batch holds every partition the instance owns, in stream order per partition.
public protocol Projection: Sendable {
    /// Stable name: the consumer group is `projector:<name>` and checkpoints are keyed by it.
    var name: String { get }
    /// One line for `voicecore projections` and `--help`.
    var summary: String { get }
    /// The categories whose streams this projection reads (their event streams, or their command
    /// streams: ``kind``).
    var categories: [StreamCategory] { get }
    /// Which streams of its categories the projection reads: events (the read models), or the
    /// commands asked for (the audit trail). A projection of commands is not derived from the
    /// archive, which holds events: replay refuses it (``isReplayable``).
    var kind: MessageKind { get }
    /// The event types applied; `nil` means every entry, known or not (the archive). Entries of
    /// other types are passed over (their checkpoint still advances).
    var eventTypes: Set<String>? { get }
    /// The tables this projection writes (for replay and `--verify`).
    var tables: [String] { get }
    /// Applies a batch, in the caller's transaction, on the caller's connection.
    func apply(_ events: [ProjectedEvent], in db: isolated PostgresConnection) throws
}

extension Projection {
    /// Event streams: every read model.
    public var kind: MessageKind { .event }

    /// Whether `voicecore replay` can rebuild it from the archive (`event_log`): a projection of
    /// events other than the archive itself. A projection of commands records what was asked for
    /// (the audit trail) and is never truncated or rebuilt.
    public var isReplayable: Bool { kind == .event && name != "archive" }

    /// Applies a batch; when the database refuses it (a constraint, a bad value), rolls it back
    /// and applies it event by event, so one bad event does not hold up the rest. Returns the
    /// events refused, with the error. Errors that end the transaction (the connection is gone, a
    /// deadlock or serialization failure: worth retrying the whole batch) are thrown.
    ///
    /// The live projector records the refused events in `projection_failures`; a replay counts them.
    public func applyIsolatingRefusals(_ events: [ProjectedEvent], in db: isolated PostgresConnection,
                                       onBatchRefused: (any Error) -> Void = { _ in }) throws -> [(event: ProjectedEvent, error: any Error)] {
        guard !events.isEmpty else { return [] }
        try db.query("SAVEPOINT projection_batch")
        do {
            try apply(events, in: db)
            try db.query("RELEASE SAVEPOINT projection_batch")
            return []
        } catch let error where !endsProjectionTransaction(error) {
            onBatchRefused(error)
            try db.query("ROLLBACK TO SAVEPOINT projection_batch")
        }
        var refused: [(event: ProjectedEvent, error: any Error)] = []
        for event in events {
            try db.query("SAVEPOINT projection_event")
            do {
                try apply([event], in: db)
                try db.query("RELEASE SAVEPOINT projection_event")
            } catch let error where !endsProjectionTransaction(error) {
                try db.query("ROLLBACK TO SAVEPOINT projection_event")
                refused.append((event, error))
            }
        }
        try db.query("RELEASE SAVEPOINT projection_batch")
        return refused
    }

}

/// The connection is gone, or the whole batch is worth retrying as is: not a refusal of its contents.
func endsProjectionTransaction(_ error: any Error) -> Bool {
    guard let error = error as? PostgresError else { return false }
    return error.isConnectionFailure || error.isTransient
}

/// One stream entry handed to a projection. A class: one instance per entry is shared by every
/// projection of a batch, and the lists a projection builds from it copy a reference, not the
/// envelope's strings and arrays.
public final class ProjectedEvent: Sendable {
    public let stream: String
    public let entryID: StreamEntryID
    public let envelope: EventEnvelope
    /// The decoded (and upcast) payload; `nil` for a type this process does not know (or one
    /// that only projections reading every entry, like the archive, were given).
    public let message: (any Message)?

    public init(stream: String, entryID: StreamEntryID, envelope: EventEnvelope, message: (any Message)?) {
        self.stream = stream
        self.entryID = entryID
        self.envelope = envelope
        self.message = message
    }

    public var tenantID: Identifier { envelope.tenantID }

    public func message<M: Message>(as type: M.Type) -> M? { message as? M }
}

extension Array where Element == ProjectedEvent {
    /// The events carrying `M`, each with its envelope, in batch order.
    public func messages<M: Message>(_ type: M.Type) -> [(event: ProjectedEvent, message: M)] {
        compactMap { event in event.message(as: type).map { (event, $0) } }
    }
}

extension Identifier: PostgresArrayElement, PostgresBinaryEncodable {
    public static var postgresType: PostgresDataType { .uuid }
    public static var postgresArrayType: PostgresDataType { .uuidArray }
    public func encodePostgresText(into buffer: inout [UInt8]) { append(to: &buffer) }
    public func encodePostgresBinary(into buffer: inout [UInt8]) { uuid.encodePostgresBinary(into: &buffer) }
}

/// A stream entry id as `text` (`1700000000000-3`), its digits written straight into the buffer:
/// the archive writes one per event, and `description` builds a String each time.
extension StreamEntryID: PostgresArrayElement, PostgresBinaryEncodable {
    public static var postgresType: PostgresDataType { .text }
    public static var postgresArrayType: PostgresDataType { .textArray }
    public func encodePostgresText(into buffer: inout [UInt8]) {
        appendPostgresDecimal(milliseconds, to: &buffer)
        buffer.append(UInt8(ascii: "-"))
        appendPostgresDecimal(sequence, to: &buffer)
    }
    public func encodePostgresBinary(into buffer: inout [UInt8]) { encodePostgresText(into: &buffer) }
}

extension Identifier: PostgresDecodable {
    public init(postgresText text: [UInt8]?) throws(PostgresDecodingFailure) {
        guard let text, let identifier = Identifier(utf8: text) else { throw PostgresDecodingFailure("not a uuid") }
        self = identifier
    }
}
