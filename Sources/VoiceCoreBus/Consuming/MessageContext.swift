import VoiceCoreEvents

/// The message being handled, visible to everything the handler calls (a task-local value).
///
/// ``Publisher`` reads it: a message published while handling another one carries the same
/// `correlationid` and names the handled message as its `causationid`, without the handler passing
/// them along.
public struct MessageContext: Sendable, Hashable {
    public var tenantID: Identifier
    public var correlationID: Identifier
    /// The id of the message being handled: the cause of whatever is published now.
    public var causationID: Identifier

    @TaskLocal public static var current: MessageContext?

    public init(tenantID: Identifier, correlationID: Identifier, causationID: Identifier) {
        self.tenantID = tenantID
        self.correlationID = correlationID
        self.causationID = causationID
    }
}

/// Wraps handlers: runs code before and after the next step, or instead of it.
///
/// Middleware composes like Watermill's: the first one added is the outermost.
/// ```swift
/// handlers.use { message, next in
///     let start = ContinuousClock.now
///     try await next(message)
///     print("handled \(message.envelope.type) in \(ContinuousClock.now - start)")
/// }
/// ```
/// Retries and dead letters are not middleware here: they are the runner's policy, because they
/// rest on delivery counts kept by Redis, which survive a crash of the process.
public typealias MessageMiddleware = @Sendable (ConsumedMessage, _ next: @Sendable (ConsumedMessage) async throws -> Void) async throws -> Void
