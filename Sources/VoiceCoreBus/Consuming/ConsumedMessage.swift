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

    /// Handles every entry that has no typed handler (unknown types included).
    public mutating func onAny(_ handler: @escaping @Sendable (ConsumedMessage) async throws -> Void) {
        fallback = handler
    }

    /// The handler for a type, wrapped in the middleware and in the message's context.
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
