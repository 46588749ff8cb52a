import VoiceCoreEvents
import VoiceCoreRedis

/// One stream entry handed to a handler.
public struct ConsumedMessage: Sendable {
    public var stream: String
    public var entryID: StreamEntryID
    public var envelope: EventEnvelope
    /// The typed message (or `.unknown` for a type this registry does not know).
    public var decoded: DecodedMessage
    /// How many times Redis has delivered the entry to this group, this delivery included.
    public var deliveryCount: Int
}

/// Runs one partition's batch (`body`) inside whatever the consumer needs around it.
public typealias PartitionBatchScope = @Sendable (_ stream: String, _ body: @Sendable () async throws -> Void) async throws -> Void

/// The handlers of a consumer: one per message type, plus an optional fallback.
///
/// ```swift
/// var handlers = MessageHandlers()
/// handlers.on(CallEnded.self) { message, ended in try await bill(ended, tenant: message.envelope.tenantID) }
/// ```
/// Entries of types without a handler are acknowledged and skipped.
public struct MessageHandlers: Sendable {
    typealias Handler = @Sendable (ConsumedMessage) async throws -> Void
    var byType: [String: Handler] = [:]
    var fallback: Handler?
    var middleware: [MessageMiddleware] = []
    var acquired: (@Sendable (String) async -> Void)?
    var batchScope: PartitionBatchScope?

    public init() {}

    /// Adds middleware around every handler; the first added runs outermost.
    public mutating func use(_ middleware: @escaping MessageMiddleware) {
        self.middleware.append(middleware)
    }

    /// Handles messages of type `M` (older versions arrive upcast).
    public mutating func on<M: Message>(_ type: M.Type, _ handler: @escaping @Sendable (ConsumedMessage, M) async throws -> Void) {
        byType[M.type] = { consumed in
            guard let message = consumed.decoded.message(as: M.self) else { return }
            try await handler(consumed, message)
        }
    }

    /// Called with a stream (partition) this consumer just took over through a lease, before any
    /// of its entries is handled: a handler that caches per-partition state drops it here, since
    /// another member may have changed it meanwhile.
    public mutating func onPartitionAcquired(_ handler: @escaping @Sendable (String) async -> Void) {
        acquired = handler
    }

    /// Wraps the handling of each batch one partition delivers (its entries, in order), before
    /// they are acknowledged: a handler may defer its effects to the end of the batch and apply
    /// them together (one pipeline instead of a round trip per message). When the scope throws,
    /// none of the batch is acknowledged: the consumer reads its pending entries again.
    public mutating func aroundPartitionBatch(_ scope: @escaping PartitionBatchScope) {
        batchScope = scope
    }

    /// Handles every entry that has no typed handler (unknown types included).
    public mutating func onAny(_ handler: @escaping @Sendable (ConsumedMessage) async throws -> Void) {
        fallback = handler
    }

    /// The handler for a type, wrapped in the middleware and in the message's context.
    /// Whether an entry of `type` has a handler (a typed one or the fallback).
    func handles(_ type: [UInt8]) -> Bool {
        fallback != nil || byType[String(decoding: type, as: UTF8.self)] != nil
    }

    func handler(for type: String) -> Handler? {
        guard var handler = byType[type] ?? fallback else { return nil }
        for layer in middleware.reversed() {
            let next = handler
            handler = { message in try await layer(message, next) }
        }
        let wrapped = handler
        return { message in
            let context = MessageContext(tenantID: message.envelope.tenantID, correlationID: message.envelope.correlationID, causationID: message.envelope.id)
            try await MessageContext.$current.withValue(context) { try await wrapped(message) }
        }
    }
}
