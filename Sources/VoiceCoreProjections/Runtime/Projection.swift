import VoiceCoreEvents
import VoiceCorePostgres
import VoiceCoreRedis

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
    /// The categories whose event streams this projection reads.
    var categories: [StreamCategory] { get }
    /// The event types applied; `nil` means every entry, known or not (the archive). Entries of
    /// other types are passed over (their checkpoint still advances).
    var eventTypes: Set<String>? { get }
    /// The tables this projection writes (for replay and `--verify`).
    var tables: [String] { get }
    /// Applies a batch, in the caller's transaction, on the caller's connection.
    func apply(_ events: [ProjectedEvent], in db: isolated PostgresConnection) throws
}

/// One stream entry handed to a projection.
public struct ProjectedEvent: Sendable {
    public var stream: String
    public var entryID: StreamEntryID
    public var envelope: EventEnvelope
    /// The decoded (and upcast) payload; `nil` for a type this process does not know.
    public var message: (any Message)?

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

extension Identifier: PostgresArrayElement {
    public static var postgresType: PostgresDataType { .uuid }
    public static var postgresArrayType: PostgresDataType { .uuidArray }
    public func encodePostgresText(into buffer: inout [UInt8]) { append(to: &buffer) }
}

extension Identifier: PostgresDecodable {
    public init(postgresText text: [UInt8]?) throws(PostgresDecodingFailure) {
        guard let text, let identifier = Identifier(utf8: text) else { throw PostgresDecodingFailure("not a uuid") }
        self = identifier
    }
}
