import Foundation
import VoiceCoreBus
import VoiceCoreEvents
import VoiceCorePostgres
import VoiceCoreTime

/// The tenant directory's outbox in Postgres (`tenant_outbox`, migration 0008): the events the
/// directory announces, written in the transaction of the change they announce and published by
/// an ``OutboxRelay`` (see there for why that publishes each once).
///
/// ```swift
/// let relay = OutboxRelay(source: directory.outbox, publisher: publisher)
/// ```
public struct TenantOutbox: OutboxSource {
    private let connection: PostgresConnection

    public init(connection: PostgresConnection) {
        self.connection = connection
    }

    /// Adds `message` inside the caller's transaction (once: the same event written again, by a
    /// transaction run again after a lost connection, is ignored). Call it after the statement that
    /// locks the tenant's directory row, so one tenant's entries are ordered as their transactions
    /// commit.
    static func write(_ message: OutboxMessage, in db: isolated PostgresConnection) throws {
        let envelope = message.envelope
        try db.query("""
            INSERT INTO tenant_outbox (event_id, tenant_id, category, kind, deduplication_key, source, type, time, subject, dataschema,
                                       correlation_id, causation_id, data)
            VALUES (\(envelope.id.uuid), \(envelope.tenantID.uuid), \(message.category.rawValue), \(message.kind.rawValue), \(message.deduplicationKey),
                    \(envelope.source), \(envelope.type), \(envelope.time), \(envelope.subject), \(envelope.dataschema),
                    \(envelope.correlationID.uuid), \(envelope.causationID?.uuid), \(PostgresBytes(envelope.data)))
            ON CONFLICT (event_id) DO NOTHING
            """)
    }

    public func pending(limit: Int) async throws -> [OutboxEntry] {
        let rows = try await retryingOnce { db in
            try db.query("""
                SELECT position, event_id, tenant_id, category, kind, deduplication_key, source, type, time, subject, dataschema,
                       correlation_id, causation_id, data
                FROM tenant_outbox ORDER BY position LIMIT \(limit)
                """)
        }
        return try rows.map { row in
            let position = try row.decode(Int64.self, "position")
            let categoryName = try row.decode(String.self, "category")
            let kindName = try row.decode(String.self, "kind")
            guard let category = StreamCategory(rawValue: categoryName), let kind = MessageKind(rawValue: kindName) else {
                throw PostgresDecodingFailure("tenant_outbox entry \(position) names an unknown stream (\(categoryName), \(kindName))")
            }
            let envelope = EventEnvelope(
                id: Identifier(try row.decode(UUID.self, "event_id")), source: try row.decode(String.self, "source"),
                type: try row.decode(String.self, "type"), time: try row.decode(Timestamp.self, "time"),
                subject: try row.decode(String.self, "subject"), dataschema: try row.decode(String.self, "dataschema"),
                tenantID: Identifier(try row.decode(UUID.self, "tenant_id")), correlationID: Identifier(try row.decode(UUID.self, "correlation_id")),
                causationID: try row.decode(UUID?.self, "causation_id").map(Identifier.init), data: try row.decode(PostgresBytes.self, "data").bytes)
            return OutboxEntry(position: position, message: OutboxMessage(envelope, category: category, kind: kind,
                                                                          deduplicationKey: try row.decode(String.self, "deduplication_key")))
        }
    }

    public func remove(_ positions: [Int64]) async throws {
        guard !positions.isEmpty else { return }
        // Idempotent: safe to run again after a lost connection.
        _ = try await retryingOnce { db in try db.query("DELETE FROM tenant_outbox WHERE position = ANY(\(positions))") }
    }

    /// How many entries wait to be relayed.
    public func count() async throws -> Int {
        try await retryingOnce { db in try db.query("SELECT count(*) AS entries FROM tenant_outbox") }[0].decode(Int.self, "entries")
    }

    /// Runs `body`; once more when the connection was found lost at it (the second run
    /// reconnects by itself). Reads and idempotent writes only.
    private func retryingOnce<T: Sendable>(_ body: @Sendable (isolated PostgresConnection) throws -> T) async throws -> T {
        do {
            return try await connection.withConnection(body)
        } catch let error as PostgresError where error.code == .connection {
            return try await connection.withConnection(body)
        }
    }
}
