import Logging
import Metrics
import Synchronization
import VoiceCoreEvents
import VoiceCoreRedis
import VoiceCoreTime

/// Publishes commands and events to their partitioned streams, acknowledging each only after
/// Redis acknowledged its `XADD`.
///
/// Group commit: concurrent `publish` calls queue their `XADD`s; one flusher sends everything
/// queued as one pipeline (at most ``PublisherConfiguration/maxBatch``), and while that round trip
/// is in flight the next callers queue for the following one. Many small publishes cost few round
/// trips, with no timer adding latency to a lone publish.
///
/// ```swift
/// let publisher = Publisher(connection: redis, configuration: PublisherConfiguration(source: "/services/calls"))
/// let published = try await publisher.publish(CallStarted(…), tenant: tenant, causationID: command.id)
/// print(published.stream, published.entryID)
/// ```
///
/// A connection failure fails the publishes of the batch in flight (the caller cannot know whether
/// Redis applied them, so it must treat them as not published: the edge answers 503, a consumer
/// leaves its entry unacknowledged); the next batch reconnects first.
public final class Publisher: Sendable {
    public let configuration: PublisherConfiguration
    private let connection: RedisConnection
    private let logger: Logger
    private let metrics: PublisherMetrics
    private let state = Mutex(State())

    /// Counters since the publisher was made.
    public struct Statistics: Sendable, Hashable {
        /// Entries Redis acknowledged.
        public var published = 0
        /// Entries that failed (server error or connection failure).
        public var failed = 0
        /// Pipelines sent (round trips).
        public var batches = 0
    }

    private struct Pending: Sendable {
        var command: RESPCommand
        var stream: String
        var completion: Completion

        func resume(_ result: Result<StreamEntryID, any Error>) {
            switch completion {
            case .single(let continuation): continuation.resume(with: result)
            case .batch(let collector, let index): collector.complete(index, result)
            }
        }
    }

    private enum Completion: Sendable {
        case single(CheckedContinuation<StreamEntryID, any Error>)
        case batch(BatchCollector, Int)
    }

    /// Collects the results of one `publish(batch:)` and resumes its caller once all are in.
    private final class BatchCollector: Sendable {
        private let state: Mutex<(results: [Result<StreamEntryID, any Error>?], remaining: Int)>
        private let continuation: CheckedContinuation<[Result<StreamEntryID, any Error>], Never>

        init(count: Int, continuation: CheckedContinuation<[Result<StreamEntryID, any Error>], Never>) {
            state = Mutex((Array(repeating: nil, count: count), count))
            self.continuation = continuation
        }

        func complete(_ index: Int, _ result: Result<StreamEntryID, any Error>) {
            let done: [Result<StreamEntryID, any Error>]? = state.withLock { state in
                state.results[index] = result
                state.remaining -= 1
                return state.remaining == 0 ? state.results.map { $0 ?? .failure(RedisError(kind: .unexpectedReply, message: "no result for a batched publish")) } : nil
            }
            if let done { continuation.resume(returning: done) }
        }
    }

    private struct State {
        var pending: [Pending] = []
        var flushing = false
        var statistics = Statistics()
    }

    public init(connection: RedisConnection, configuration: PublisherConfiguration, logger: Logger = Logger(label: "voicecore.bus.publisher"),
                metricsFactory: MetricsFactory = MetricsSystem.factory) {
        self.connection = connection
        self.configuration = configuration
        self.logger = logger
        self.metrics = PublisherMetrics(factory: metricsFactory)
    }

    public var statistics: Statistics { state.withLock { $0.statistics } }

    /// Publishes a message of this deployment's vocabulary.
    /// - Parameters:
    ///   - correlationID: the original request's id. Inside a handler it defaults to the handled
    ///     message's (``MessageContext``); otherwise to the new event's own id.
    ///   - causationID: the message that caused this one; inside a handler, the handled message.
    @discardableResult
    public func publish<M: Message>(_ message: M, tenant: Identifier, correlationID: Identifier? = nil, causationID: Identifier? = nil) async throws -> PublishedEntry {
        let context = MessageContext.current
        let envelope = EventEnvelope(message, tenant: tenant, source: configuration.source,
                                     correlationID: correlationID ?? context?.correlationID, causationID: causationID ?? context?.causationID)
        return try await publish(envelope, category: M.category, kind: M.kind)
    }

    /// Publishes an envelope built elsewhere to the stream of its category, kind and subject.
    @discardableResult
    public func publish(_ envelope: EventEnvelope, category: StreamCategory, kind: MessageKind) async throws -> PublishedEntry {
        let (stream, command) = xadd(envelope, category: category, kind: kind)
        let id = try await withCheckedThrowingContinuation { continuation in
            enqueue([Pending(command: command, stream: stream, completion: .single(continuation))])
        }
        return PublishedEntry(stream: stream, entryID: id, eventID: envelope.id)
    }

    /// Publishes several envelopes. They are queued together, so they go out in as few pipelines
    /// as ``PublisherConfiguration/maxBatch`` allows (with whatever else is queued), in order; each
    /// result says whether its entry was acknowledged.
    public func publish(batch: [(envelope: EventEnvelope, category: StreamCategory, kind: MessageKind)]) async -> [Result<PublishedEntry, any Error>] {
        guard !batch.isEmpty else { return [] }
        let commands = batch.map { xadd($0.envelope, category: $0.category, kind: $0.kind) }
        let ids = await withCheckedContinuation { continuation in
            let collector = BatchCollector(count: batch.count, continuation: continuation)
            enqueue(commands.enumerated().map { index, command in
                Pending(command: command.1, stream: command.0, completion: .batch(collector, index))
            })
        }
        return zip(ids, zip(commands, batch)).map { id, item in
            id.map { PublishedEntry(stream: item.0.0, entryID: $0, eventID: item.1.envelope.id) }
        }
    }

    // MARK: Group commit

    private func xadd(_ envelope: EventEnvelope, category: StreamCategory, kind: MessageKind) -> (String, RESPCommand) {
        let stream = configuration.naming.stream(for: category, kind: kind, tenant: envelope.tenantID, subject: envelope.subject)
        var arguments: [RESPArgument] = ["XADD", .string(stream)]
        arguments.reserveCapacity(32)
        if let trim = configuration.trim(category, kind, nowMilliseconds: Timestamp.now.millisecondsSinceEpoch) {
            arguments.append(contentsOf: trim.arguments)
        }
        arguments.append("*")
        for field in envelope.fields {
            arguments.append(.string(field.name))
            arguments.append(.bytes(field.value))
        }
        return (stream, RESPCommand(arguments))
    }

    private func enqueue(_ items: [Pending]) {
        let startFlusher = state.withLock { state -> Bool in
            state.pending.append(contentsOf: items)
            guard !state.flushing else { return false }
            state.flushing = true
            return true
        }
        if startFlusher {
            // The flusher runs on the connection's own thread: no hop per round trip.
            Task(executorPreference: connection.taskExecutor) { await self.flush() }
        }
    }

    private func flush() async {
        while true {
            let batch: [Pending] = state.withLock { state in
                if state.pending.count <= configuration.maxBatch {
                    let all = state.pending
                    state.pending = []
                    if all.isEmpty { state.flushing = false }
                    return all
                }
                let head = Array(state.pending.prefix(configuration.maxBatch))
                state.pending.removeFirst(configuration.maxBatch)
                return head
            }
            if batch.isEmpty { return }
            await send(batch)
        }
    }

    private func send(_ batch: [Pending]) async {
        let start = ContinuousClock.now
        defer { metrics.batch.record(since: start) }
        do {
            if await !connection.isConnected {
                try await connection.reconnect()
            }
            var commands: [RESPCommand] = []
            commands.reserveCapacity(batch.count)
            for pending in batch { commands.append(pending.command) }
            let replies = try await connection.send(commands)
            var published = 0
            for (pending, reply) in zip(batch, replies) {
                switch reply {
                case .bulkString(let bytes):
                    if let id = StreamEntryID(ascii: bytes) {
                        published += 1
                        pending.resume(.success(id))
                    } else {
                        pending.resume(.failure(RedisError(kind: .unexpectedReply, message: "XADD to \(pending.stream) returned a malformed id")))
                    }
                case .error(let message):
                    logger.warning("XADD failed", metadata: ["stream": "\(pending.stream)", "error": "\(message)"])
                    pending.resume(.failure(RedisError.server(message)))
                default:
                    pending.resume(.failure(RedisError(kind: .unexpectedReply, message: "XADD to \(pending.stream) returned \(reply)")))
                }
            }
            state.withLock {
                $0.statistics.batches += 1
                $0.statistics.published += published
                $0.statistics.failed += batch.count - published
            }
            metrics.published.increment(by: published)
            if published < batch.count { metrics.failed.increment(by: batch.count - published) }
        } catch {
            logger.warning("publish batch failed", metadata: ["entries": "\(batch.count)", "error": "\(error)"])
            state.withLock {
                $0.statistics.batches += 1
                $0.statistics.failed += batch.count
            }
            metrics.failed.increment(by: batch.count)
            for pending in batch { pending.resume(.failure(error)) }
        }
    }
}

/// Where a published message landed.
public struct PublishedEntry: Sendable, Hashable {
    public var stream: String
    public var entryID: StreamEntryID
    /// The envelope's `id` (UUIDv7).
    public var eventID: Identifier
}
