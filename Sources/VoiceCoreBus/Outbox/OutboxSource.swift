import VoiceCoreEvents

/// A message to publish once the transaction that wrote it has committed: an envelope, the
/// stream it belongs to, and the key its publish is deduplicated on.
///
/// ```swift
/// let envelope = EventEnvelope(TenantProvisioned(…), tenant: tenant, source: "/cli/tenants")
/// let message = OutboxMessage(envelope, category: TenantProvisioned.category, kind: TenantProvisioned.kind)
/// ```
public struct OutboxMessage: Sendable, Hashable {
    public var envelope: EventEnvelope
    public var category: StreamCategory
    public var kind: MessageKind
    /// What the relay deduplicates the publish on: the event id, or a key naming the message's
    /// cause (`settings:<command id>`) when the same change may be written twice (a command
    /// handled again after a crash).
    public var deduplicationKey: String

    public init(_ envelope: EventEnvelope, category: StreamCategory, kind: MessageKind, deduplicationKey: String? = nil) {
        self.envelope = envelope
        self.category = category
        self.kind = kind
        self.deduplicationKey = deduplicationKey ?? envelope.id.description
    }
}

/// An outbox message with its place in the outbox.
public struct OutboxEntry: Sendable, Hashable {
    /// Increases in the order the messages were written; the relay publishes in this order.
    public var position: Int64
    public var message: OutboxMessage

    public init(position: Int64, message: OutboxMessage) {
        self.position = position
        self.message = message
    }
}

/// Where an ``OutboxRelay`` finds what to publish: a table written in the same database
/// transaction as the change each message announces (the tenant directory's `tenant_outbox`).
///
/// The bus knows no database: a module that keeps such a table implements this over it.
public protocol OutboxSource: Sendable {
    /// The oldest entries not yet removed, in ``OutboxEntry/position`` order, at most `limit`.
    func pending(limit: Int) async throws -> [OutboxEntry]
    /// Removes entries whose messages are on their streams. Removing an entry that is gone
    /// already (another relay removed it) is not an error.
    func remove(_ positions: [Int64]) async throws
}
