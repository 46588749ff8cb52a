import Logging
import Metrics
import NIOCore
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
///
/// Two transports (``RedisTransport``), one publish path: over a ``RedisClient`` (hiredis on the
/// connection's thread, single server or cluster) the publisher group-commits as above; over an
/// ``EventLoopRedisTransport`` (code running on NIO event loops, like the edge's handlers) each
/// publish goes straight to the current loop's connection, which already sends everything of one
/// loop tick as one pipeline, so a second queue would only add a hop. Streams, the deduplication
/// script, replies, errors and metrics are the same either way.
public final class Publisher: Sendable {
    public let configuration: PublisherConfiguration
    private let transport: Transport
    private let logger: Logger
    private let metrics: PublisherMetrics
    private let state = Mutex(State())
    /// Publishes over event loops, counted without the group commit's lock.
    private let publishedOnLoops = Atomic<Int>(0)
    private let failedOnLoops = Atomic<Int>(0)

    /// Concrete cases rather than `any RedisTransport`: the hot paths call their transport with
    /// static dispatch, and each keeps its own batching.
    private enum Transport: Sendable {
        /// Group commit on the client's connection thread.
        case pipelined(RedisClient)
        /// Each publish on the current loop's connection (which pipelines per loop tick).
        case eventLoops(EventLoopRedisTransport)
    }

    /// Counters since the publisher was made.
    public struct Statistics: Sendable, Hashable {
        /// Entries Redis acknowledged.
        public var published = 0
        /// Entries that failed (server error or connection failure).
        public var failed = 0
        /// Pipelines sent (round trips) by the group commit. A publisher over event loops leaves
        /// pipelining to its loops' connections and counts none.
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
            case .deduplicated(let resume, let eventID):
                resume(result.map { .published(PublishedEntry(stream: stream, entryID: $0, eventID: eventID)) })
            }
        }
    }

    private enum Completion: Sendable {
        case single(CheckedContinuation<StreamEntryID, any Error>)
        case batch(BatchCollector<StreamEntryID>, Int)
        /// A deduplicated publish (an `EVALSHA` of ``Publisher/deduplicationScript``).
        case deduplicated(@Sendable (Result<DeduplicatedOutcome, any Error>) -> Void, eventID: Identifier)

        var isScript: Bool {
            if case .deduplicated = self { return true }
            return false
        }
    }

    /// Collects the results of one batch publish and resumes its caller once all are in.
    private final class BatchCollector<Value: Sendable>: Sendable {
        private let state: Mutex<(results: [Result<Value, any Error>?], remaining: Int)>
        private let continuation: CheckedContinuation<[Result<Value, any Error>], Never>

        init(count: Int, continuation: CheckedContinuation<[Result<Value, any Error>], Never>) {
            state = Mutex((Array(repeating: nil, count: count), count))
            self.continuation = continuation
        }

        func complete(_ index: Int, _ result: Result<Value, any Error>) {
            let done: [Result<Value, any Error>]? = state.withLock { state in
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

    /// A publisher on a single server's connection.
    public convenience init(connection: RedisConnection, configuration: PublisherConfiguration, logger: Logger = Logger(label: "voicecore.bus.publisher"),
                            metricsFactory: any MetricsFactory = MetricsSystem.factory) {
        self.init(connection: RedisClient(connection), configuration: configuration, logger: logger, metricsFactory: metricsFactory)
    }

    /// A publisher that group-commits over `connection` (a single server or a cluster).
    public init(connection: RedisClient, configuration: PublisherConfiguration, logger: Logger = Logger(label: "voicecore.bus.publisher"),
                metricsFactory: any MetricsFactory = MetricsSystem.factory) {
        self.transport = .pipelined(connection)
        self.configuration = configuration
        self.logger = logger
        self.metrics = PublisherMetrics(factory: metricsFactory)
    }

    /// A publisher for code that runs on `eventLoops`' loops: each publish goes out on the
    /// current loop's connection and resumes its caller there (see the type's documentation).
    /// The transport speaks to a single server; with ``PublisherConfiguration/replicaAcknowledgement``
    /// every publish waits for its replicas on its own.
    public init(eventLoops: EventLoopRedisTransport, configuration: PublisherConfiguration, logger: Logger = Logger(label: "voicecore.bus.publisher"),
                metricsFactory: any MetricsFactory = MetricsSystem.factory) {
        self.transport = .eventLoops(eventLoops)
        self.configuration = configuration
        self.logger = logger
        self.metrics = PublisherMetrics(factory: metricsFactory)
    }

    /// A publisher with this one's configuration that publishes from `group`'s event loops — for
    /// code that runs on them, as the HTTP edge's handlers do: each publish goes out on the current
    /// loop's own connection and resumes its caller there, with no thread in between. Close it with
    /// ``close()`` after the loops' last publish.
    ///
    /// Nil when this publisher needs its own client: on a Redis Cluster (routing per slot) and
    /// with ``PublisherConfiguration/replicaAcknowledgement`` (acknowledgement per node); publish
    /// through this publisher then.
    public func onEventLoops(of group: any EventLoopGroup, logger: Logger? = nil,
                             metricsFactory: any MetricsFactory = MetricsSystem.factory) -> Publisher? {
        guard case .pipelined(let client) = transport, !client.isCluster, configuration.replicaAcknowledgement == nil else { return nil }
        let logger = logger ?? self.logger
        let loops = EventLoopRedisTransport(group: group, configuration: client.configuration, logger: logger)
        return Publisher(eventLoops: loops, configuration: configuration, logger: logger, metricsFactory: metricsFactory)
    }

    /// Closes the loops' connections of a publisher made by ``onEventLoops(of:logger:metricsFactory:)``;
    /// a publisher over a `RedisClient` leaves closing to the client's owner.
    public func close() async {
        if case .eventLoops(let loops) = transport { await loops.close() }
    }

    /// Whether Redis answers this publisher's connection: throws when it does not (a broken
    /// connection reconnects by itself at this command). What a readiness probe asks.
    public func ping() async throws {
        switch transport {
        case .pipelined(let client): _ = try await client.execute(.ping())
        case .eventLoops(let loops): _ = try await loops.execute(.ping())
        }
    }

    public var statistics: Statistics {
        var statistics = state.withLock { $0.statistics }
        statistics.published += publishedOnLoops.load(ordering: .relaxed)
        statistics.failed += failedOnLoops.load(ordering: .relaxed)
        return statistics
    }

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
        if case .eventLoops(let loops) = transport {
            do {
                let id = try Self.xaddOutcome(try await reply(to: command, over: loops, scriptSource: nil), stream: stream).get()
                countOnLoops(published: 1)
                return PublishedEntry(stream: stream, entryID: id, eventID: envelope.id)
            } catch {
                countOnLoops(failed: 1)
                throw error
            }
        }
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
        if case .eventLoops(let loops) = transport {
            let replies = await loops.sendEach(commands.map(\.1), replicas: configuration.replicaAcknowledgement)
            let results = zip(commands, zip(replies, batch)).map { command, item in
                item.0.mapError { $0 as any Error }.flatMap { Self.xaddOutcome($0, stream: command.0) }
                    .map { PublishedEntry(stream: command.0, entryID: $0, eventID: item.1.envelope.id) }
            }
            let published = results.count { (try? $0.get()) != nil }
            countOnLoops(published: published, failed: results.count - published)
            return results
        }
        let ids = await withCheckedContinuation { continuation in
            let collector = BatchCollector<StreamEntryID>(count: batch.count, continuation: continuation)
            enqueue(commands.enumerated().map { index, command in
                Pending(command: command.1, stream: command.0, completion: .batch(collector, index))
            })
        }
        return zip(ids, zip(commands, batch)).map { id, item in
            id.map { PublishedEntry(stream: item.0.0, entryID: $0, eventID: item.1.envelope.id) }
        }
    }

    // MARK: Deduplicated publishing

    /// `KEYS[1]` the deduplication key, `KEYS[2]` the stream; `ARGV[1]` the key's lifetime in
    /// seconds, `ARGV[2]` the envelope id, `ARGV[3…]` the XADD arguments after the stream.
    /// XADD runs before SET: Redis does not roll a script back, so a failing XADD must not leave
    /// the key behind (it would make every retry a "duplicate" of nothing).
    static let deduplicationScript = """
        local prior = redis.call('GET', KEYS[1])
        if prior then return {0, prior} end
        local id = redis.call('XADD', KEYS[2], unpack(ARGV, 3))
        redis.call('SET', KEYS[1], id .. ' ' .. ARGV[2], 'EX', ARGV[1])
        return {1, id .. ' ' .. ARGV[2]}
        """
    private static let deduplicationSHA1 = SHA1.hex(Array(deduplicationScript.utf8))

    /// Publishes an envelope unless one with the same `deduplicationKey` was published within
    /// `window`: the check, the XADD and the recording of the key are one Lua script, so two
    /// concurrent deliveries of the same provider callback publish once. The key lives beside the
    /// stream (`<stream>:dedup:<tenant>:<key>`, same Redis Cluster slot) and goes out in the same
    /// pipelines as every other publish.
    ///
    /// - Returns: ``DeduplicatedOutcome/published(_:)``, or ``DeduplicatedOutcome/duplicate(_:)``
    ///   with the entry and event id of the first publish.
    public func publish(_ envelope: EventEnvelope, category: StreamCategory, kind: MessageKind, deduplicationKey: String,
                        window: Duration = .seconds(86_400)) async throws -> DeduplicatedOutcome {
        let (stream, evalsha) = deduplicated(envelope, category: category, kind: kind, key: deduplicationKey, window: window)
        if case .eventLoops(let loops) = transport {
            do {
                let outcome = try Self.deduplicatedOutcome(try await reply(to: evalsha, over: loops, scriptSource: Self.deduplicationScript), stream: stream).get()
                if !outcome.isDuplicate { countOnLoops(published: 1) }
                return outcome
            } catch {
                countOnLoops(failed: 1)
                throw error
            }
        }
        return try await withCheckedThrowingContinuation { continuation in
            enqueue([Pending(command: evalsha, stream: stream, completion: .deduplicated({ continuation.resume(with: $0) }, eventID: envelope.id))])
        }
    }

    /// Deduplicated publishes of several envelopes, queued together in order (so they go out in
    /// as few pipelines as possible, in order); each result says what its publish did.
    public func publish(deduplicated batch: [(envelope: EventEnvelope, category: StreamCategory, kind: MessageKind, key: String)],
                        window: Duration = .seconds(86_400)) async -> [Result<DeduplicatedOutcome, any Error>] {
        guard !batch.isEmpty else { return [] }
        let commands = batch.map { deduplicated($0.envelope, category: $0.category, kind: $0.kind, key: $0.key, window: window) }
        if case .eventLoops(let loops) = transport {
            let replies = await loops.sendEach(commands.map(\.evalsha), replicas: configuration.replicaAcknowledgement) { _ in Self.deduplicationScript }
            let results = zip(commands, replies).map { command, reply in
                reply.mapError { $0 as any Error }.flatMap { Self.deduplicatedOutcome($0, stream: command.stream) }
            }
            let failed = results.count { (try? $0.get()) == nil }
            countOnLoops(published: results.count { (try? $0.get())?.isDuplicate == false }, failed: failed)
            return results
        }
        return await withCheckedContinuation { continuation in
            let collector = BatchCollector<DeduplicatedOutcome>(count: batch.count, continuation: continuation)
            enqueue(commands.enumerated().map { index, command in
                Pending(command: command.evalsha, stream: command.stream,
                        completion: .deduplicated({ collector.complete(index, $0) }, eventID: batch[index].envelope.id))
            })
        }
    }

    /// The stream, and the script call as EVALSHA (sent as EVAL after NOSCRIPT: ``RedisTransport``).
    private func deduplicated(_ envelope: EventEnvelope, category: StreamCategory, kind: MessageKind, key deduplicationKey: String,
                              window: Duration) -> (stream: String, evalsha: RESPCommand) {
        let (stream, xadd) = xadd(envelope, category: category, kind: kind)
        let key = "\(stream):dedup:\(envelope.tenantID):\(deduplicationKey)"
        let seconds = max(1, window.components.seconds)
        var arguments: [RESPArgument] = ["EVALSHA", .string(Self.deduplicationSHA1), "2", .string(key), .string(stream), .string(String(seconds)),
                                         .string(envelope.id.description)]
        arguments.reserveCapacity(arguments.count + xadd.arguments.count - 2)
        arguments.append(contentsOf: xadd.arguments.dropFirst(2))
        return (stream, RESPCommand(arguments))
    }

    // MARK: Publishing on event loops

    /// One publish over the event loops' transport: its reply, `NOSCRIPT` answered with the
    /// script's source; with replica acknowledgement, the command and its `WAIT` as one pipeline.
    private func reply(to command: RESPCommand, over loops: EventLoopRedisTransport, scriptSource: String?) async throws -> RESPValue {
        guard let replicas = configuration.replicaAcknowledgement else {
            return try await loops.reply(to: command, scriptSource: scriptSource)
        }
        let results = await loops.sendEach([command], replicas: replicas) { _ in scriptSource }
        guard let result = results.first else { throw RedisError(kind: .unexpectedReply, message: "no reply to '\(command)'") }
        return try result.get()
    }

    /// Counts publishes made over the event loops (a duplicate is neither published nor failed).
    private func countOnLoops(published: Int = 0, failed: Int = 0) {
        if published > 0 {
            publishedOnLoops.add(published, ordering: .relaxed)
            metrics.published.increment(by: published)
        }
        if failed > 0 {
            failedOnLoops.add(failed, ordering: .relaxed)
            metrics.failed.increment(by: failed)
        }
    }

    // MARK: Group commit

    /// The stream of an envelope and the `XADD` that appends it (untrimmed: the
    /// ``RetentionTrimmer`` trims, below what every reader has processed).
    private func xadd(_ envelope: EventEnvelope, category: StreamCategory, kind: MessageKind) -> (String, RESPCommand) {
        let stream = configuration.naming.stream(for: category, kind: kind, tenant: envelope.tenantID, subject: envelope.subject)
        var arguments: [RESPArgument] = ["XADD", .string(stream)]
        arguments.reserveCapacity(32)
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
        if startFlusher, case .pipelined(let connection) = transport {
            // The flusher runs on the connection's own thread: no hop per round trip.
            Task(executorPreference: connection.taskExecutor) { await self.flush(over: connection) }
        }
    }

    private func flush(over connection: RedisClient) async {
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
            await send(batch, over: connection)
        }
    }

    private func send(_ batch: [Pending], over connection: RedisClient) async {
        let start = ContinuousClock.now
        defer { metrics.batch.record(since: start) }
        // A broken connection reconnects by itself at this send (RedisConnection), on the
        // clients' shared backoff: while Redis is down the batch fails at once.
        var commands: [RESPCommand] = []
        commands.reserveCapacity(batch.count)
        for pending in batch { commands.append(pending.command) }
        // One pipeline (one per node on a cluster), each ending with WAIT when configured;
        // scripts the server does not know (restarted or flushed, another cluster node) once more as EVAL.
        let results = await connection.sendEach(commands, replicas: configuration.replicaAcknowledgement) { index in
            batch[index].completion.isScript ? Self.deduplicationScript : nil
        }
        var published = 0
        var firstFailure: RedisError?
        for (pending, result) in zip(batch, results) {
            let reply: RESPValue
            switch result {
            case .success(let value):
                reply = value
            case .failure(let error):
                // The connection failed after sending (outcome unknown), the node was unreachable
                // for the whole retry window, or replicas did not confirm: not published.
                firstFailure = firstFailure ?? error
                switch pending.completion {
                case .deduplicated(let resume, _): resume(.failure(error))
                default: pending.resume(.failure(error))
                }
                continue
            }
            if case .deduplicated(let resume, _) = pending.completion {
                let outcome = Self.deduplicatedOutcome(reply, stream: pending.stream)
                switch outcome {
                case .success(let outcome):
                    if case .published = outcome { published += 1 }
                case .failure(let error):
                    logger.warning("deduplicated XADD failed", metadata: ["stream": "\(pending.stream)", "error": "\(error)"])
                }
                resume(outcome)
                continue
            }
            let outcome = Self.xaddOutcome(reply, stream: pending.stream)
            switch outcome {
            case .success: published += 1
            case .failure(let error): logger.warning("XADD failed", metadata: ["stream": "\(pending.stream)", "error": "\(error)"])
            }
            pending.resume(outcome)
        }
        if let firstFailure {
            logger.warning("publishes failed", metadata: ["entries": "\(batch.count - published)", "error": "\(firstFailure)"])
        }
        state.withLock {
            $0.statistics.batches += 1
            $0.statistics.published += published
            $0.statistics.failed += batch.count - published
        }
        metrics.published.increment(by: published)
        if published < batch.count { metrics.failed.increment(by: batch.count - published) }
    }
}

extension Publisher {
    /// Reads an `XADD`'s answer: the new entry's id.
    static func xaddOutcome(_ reply: RESPValue, stream: String) -> Result<StreamEntryID, any Error> {
        switch reply {
        case .bulkString(let bytes):
            guard let id = StreamEntryID(ascii: bytes) else {
                return .failure(RedisError(kind: .unexpectedReply, message: "XADD to \(stream) returned a malformed id"))
            }
            return .success(id)
        case .error(let message):
            return .failure(RedisError.server(message))
        default:
            return .failure(RedisError(kind: .unexpectedReply, message: "XADD to \(stream) returned \(reply)"))
        }
    }

    /// Reads the script's answer: `{1, "<entry id> <event id>"}` published, `{0, …}` a duplicate.
    static func deduplicatedOutcome(_ reply: RESPValue, stream: String) -> Result<DeduplicatedOutcome, any Error> {
        if case .error(let message) = reply { return .failure(RedisError.server(message)) }
        guard case .array(let items) = reply, items.count == 2, case .integer(let flag) = items[0], case .bulkString(let value) = items[1] else {
            return .failure(RedisError(kind: .unexpectedReply, message: "deduplicated publish to \(stream) returned \(reply)"))
        }
        let parts = value.split(separator: UInt8(ascii: " "), maxSplits: 1)
        guard parts.count == 2, let id = StreamEntryID(ascii: Array(parts[0])), let eventID = Identifier(utf8: Array(parts[1])) else {
            return .failure(RedisError(kind: .unexpectedReply, message: "deduplicated publish to \(stream) returned a malformed record"))
        }
        let entry = PublishedEntry(stream: stream, entryID: id, eventID: eventID)
        return .success(flag == 1 ? .published(entry) : .duplicate(entry))
    }
}

/// What a deduplicated publish did.
public enum DeduplicatedOutcome: Sendable, Hashable {
    /// Published now.
    case published(PublishedEntry)
    /// Published before under the same key: the first publish's entry.
    case duplicate(PublishedEntry)

    public var entry: PublishedEntry {
        switch self {
        case .published(let entry), .duplicate(let entry): entry
        }
    }

    public var isDuplicate: Bool {
        if case .duplicate = self { return true }
        return false
    }
}

/// Where a published message landed.
public struct PublishedEntry: Sendable, Hashable {
    public var stream: String
    public var entryID: StreamEntryID
    /// The envelope's `id` (UUIDv7).
    public var eventID: Identifier

    init(stream: String, entryID: StreamEntryID, eventID: Identifier) {
        self.stream = stream
        self.entryID = entryID
        self.eventID = eventID
    }
}

extension Publisher {
    /// Whether a publish failed because Redis is full: it reached `maxmemory` under
    /// `maxmemory-policy noeviction` and refused the write (`-OOM …`, also from inside the
    /// deduplication script). Nothing was stored; the caller may retry once retention or an
    /// operator frees memory. The edge answers it with 503 and `Retry-After`.
    public static func isRedisFull(_ error: any Error) -> Bool {
        guard let error = error as? RedisError, error.kind == .server else { return false }
        return error.serverCode == "OOM" || error.message.hasPrefix("OOM ")
    }
}
