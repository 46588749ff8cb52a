import Logging
import Metrics
import ServiceLifecycle
import Synchronization
import VoiceCoreBus
import VoiceCoreEvents

/// The edge's metric names for conversation turns.
public enum TurnReplyMetricNames {
    /// Counter: waits for a turn's reply (``TurnReplies/reply(to:stream:deadline:)`` calls).
    public static let waits = "voicecore_edge_turn_waits_total"
    /// Counter: replies this edge read (from the shared tail or a look-up).
    public static let replies = "voicecore_edge_turn_replies_total"
    /// Counter: waits that reached their deadline without a reply.
    public static let deadlineMisses = "voicecore_edge_turn_deadline_misses_total"
    /// Counter: replies that arrived after a wait for them had missed its deadline.
    public static let lateReplies = "voicecore_edge_turn_late_replies_total"
    /// Counter: bounded look-ups of a reply in its call's stream (the cache could not vouch).
    public static let lookups = "voicecore_edge_turn_lookups_total"
}

/// Waits for the receptionist's replies to caller turns: request/reply over the streams, one
/// shared subscription per edge process.
///
/// The edge publishes a turn as a `ReportCallerTurn` command and waits here for the
/// `ReceptionistReplied` event whose `causationid` is that command's id. One ``StreamTail`` follows
/// every conversations event stream (one blocking `XREAD` on a connection thread of its own, never
/// an event loop); each reply completes the waits for its command and is kept in a bounded cache
/// (``Configuration/cacheCapacity`` replies, oldest out first), so a wait that starts after its
/// reply — a provider's retry of the same callback, a redirect that waits again — is answered at
/// once.
///
/// A reply this edge cannot have seen (written before the tail started following, or pushed out
/// of the cache) is looked up once in the call's own stream, newest first, at most
/// ``Configuration/lookupCount`` entries: only for a command that may have been on its stream
/// before the wait (a provider's retry, a second wait), and only while the cache cannot vouch
/// for the recent past (the tail started, or the cache dropped a reply, less than
/// ``Configuration/lookback`` ago). A turn this edge has just published for the first time never
/// costs a read: its reply comes after the tail's position. While the tail cannot follow (before
/// it starts, or on a Redis Cluster, which it refuses), a wait polls that bounded look-up instead.
///
/// No wait outlives its deadline or its task: a cancelled or expired wait leaves nothing behind.
///
/// A reply holds what the caller said (`heard`) and what they were told. When the tail also
/// follows the tenants event streams (`naming.streams(.tenants, kind: .event)`, as `voicecore
/// edge` and `up` configure it), a `CallerErased` drops the replies of the erased calls from the
/// cache (``forget(calls:)``), so an erased caller's words do not stay in the edge's memory until
/// newer replies push them out. (On a Redis Cluster, where the tail cannot follow, the cache only
/// holds what look-ups found, and ages out as usual.)
///
/// ```swift
/// let turns = TurnReplies(tail: try await StreamTail.connect(redis, clientName: "vc-edge:turns",
///                         configuration: .init(streams: naming.streams(.conversations, kind: .event))))
/// // run `turns` as a service, then per turn:
/// let reply = try await turns.reply(to: ReportCallerTurn.commandID(callID: call, turn: 3),
///                                   stream: naming.stream(for: .conversations, kind: .event, tenant: tenant, subject: call.description),
///                                   deadline: .milliseconds(2500))   // nil: the deadline passed
/// ```
public final class TurnReplies: Service, Sendable {
    /// How replies are kept and looked up.
    public struct Configuration: Sendable {
        /// Replies kept in memory (the oldest is dropped first).
        public var cacheCapacity: Int
        /// Entries of the call's stream read, newest first, by a look-up.
        public var lookupCount: Int
        /// How old a reply asked for again may be (providers retry a callback within seconds, a
        /// redirect follows at once): while the tail started, or the cache dropped a reply, less
        /// than this long ago, a repeated wait the cache cannot answer looks the reply up.
        public var lookback: Duration
        /// Between look-ups while the tail is not following.
        public var pollInterval: Duration

        public init(cacheCapacity: Int = 10_000, lookupCount: Int = 500, lookback: Duration = .seconds(120),
                    pollInterval: Duration = .milliseconds(200)) {
            self.cacheCapacity = max(1, cacheCapacity)
            self.lookupCount = max(1, lookupCount)
            self.lookback = lookback
            self.pollInterval = pollInterval
        }
    }

    public let configuration: Configuration
    private let tail: StreamTail
    private let logger: Logger
    private let waits: Counter
    private let replies: Counter
    private let deadlineMisses: Counter
    private let lateReplies: Counter
    private let lookups: Counter

    /// One wait's slot: registered, then waiting with its continuation, or answered before it
    /// began waiting.
    private enum Slot {
        case registered
        case waiting(CheckedContinuation<ReceptionistReplied?, Never>)
        case answered(ReceptionistReplied?)
    }

    private struct State {
        var slots: [Identifier: [Int: Slot]] = [:]
        var nextToken = 0
        var cache: BoundedMap<ReceptionistReplied>
        /// Commands whose wait missed its deadline (a reply to one is late).
        var missed: BoundedMap<Void>
        /// Since when the tail delivers every reply; nil while it is not following.
        var followingSince: ContinuousClock.Instant?
        /// When the newest reply the cache dropped had been cached: replies before it may be gone.
        var droppedCachedAt: ContinuousClock.Instant?
        var stopped = false
    }

    private let state: Mutex<State>

    /// - Parameter tail: follows the conversations event streams (`naming.streams(.conversations,
    ///   kind: .event)`); closed when the service stops.
    public init(tail: StreamTail, configuration: Configuration = Configuration(), metricsFactory: any MetricsFactory = MetricsSystem.factory,
                logger: Logger = Logger(label: "voicecore.edge.turns")) {
        self.tail = tail
        self.configuration = configuration
        self.logger = logger
        state = Mutex(State(cache: BoundedMap(capacity: configuration.cacheCapacity), missed: BoundedMap(capacity: configuration.cacheCapacity)))
        waits = Counter(label: TurnReplyMetricNames.waits, factory: metricsFactory)
        replies = Counter(label: TurnReplyMetricNames.replies, factory: metricsFactory)
        deadlineMisses = Counter(label: TurnReplyMetricNames.deadlineMisses, factory: metricsFactory)
        lateReplies = Counter(label: TurnReplyMetricNames.lateReplies, factory: metricsFactory)
        lookups = Counter(label: TurnReplyMetricNames.lookups, factory: metricsFactory)
    }

    // MARK: Service

    /// Follows the conversations event streams until shutdown; then answers every open wait with
    /// nil (a missed deadline: the caller hears the holding line) and closes the tail.
    public func run() async throws {
        await cancelWhenGracefulShutdown {
            do {
                try await self.tail.run { entries, _ in self.receive(entries) }
            } catch {
                // A Redis Cluster: keep serving, by polling look-ups (see the type's summary).
                self.logger.error("turn replies cannot follow the conversations streams; waits poll the call's stream instead",
                                  metadata: ["error": "\(error)"])
                while !Task.isCancelled { try? await Task.sleep(for: .seconds(3600)) }
            }
        }
        let open: [CheckedContinuation<ReceptionistReplied?, Never>] = state.withLock { state in
            state.stopped = true
            state.followingSince = nil
            var open: [CheckedContinuation<ReceptionistReplied?, Never>] = []
            for (command, slots) in state.slots {
                for (token, slot) in slots {
                    switch slot {
                    case .waiting(let continuation):
                        open.append(continuation)
                        state.slots[command]?[token] = nil
                    case .registered:
                        state.slots[command]?[token] = .answered(nil)
                    case .answered:
                        break
                    }
                }
                if state.slots[command]?.isEmpty == true { state.slots[command] = nil }
            }
            return open
        }
        for continuation in open { continuation.resume(returning: nil) }
        await tail.close()
    }

    // MARK: Waiting

    /// The reply to the turn whose command id is `commandID`, waiting for it up to `deadline`.
    /// - Parameters:
    ///   - commandID: the `ReportCallerTurn`'s envelope id (``ReportCallerTurn/commandID(callID:turn:)``).
    ///   - stream: the conversations event stream of the call
    ///     (`naming.stream(for: .conversations, kind: .event, tenant:, subject: callID.description)`),
    ///     read only when the reply must be looked up.
    ///   - deadline: how long to wait.
    /// - Returns: the reply; nil when the deadline passed first (or the edge is shutting down).
    /// - Throws: `CancellationError` when the waiting task is cancelled.
    public func reply(to commandID: Identifier, stream: String, deadline: Duration) async throws -> ReceptionistReplied? {
        try await reply(to: commandID, stream: stream, deadline: deadline, alreadyPublished: true)
    }

    /// ``reply(to:stream:deadline:)``, saying whether the command may have been on its stream
    /// before this wait began.
    /// - Parameter alreadyPublished: false when this edge has just published the command for the
    ///   first time (not a duplicate): its reply cannot be older than what the tail has seen, so
    ///   it is never looked up. True for a provider's retry or a second wait for the same turn.
    public func reply(to commandID: Identifier, stream: String, deadline: Duration, alreadyPublished: Bool) async throws -> ReceptionistReplied? {
        try Task.checkCancellation()
        waits.increment()
        let now = ContinuousClock.now
        let registration: Registration = state.withLock { state in
            if let cached = state.cache[commandID] { return .cached(cached) }
            if state.stopped { return .stopped }
            let token = state.nextToken
            state.nextToken &+= 1
            state.slots[commandID, default: [:]][token] = .registered
            guard let since = state.followingSince else { return .registered(token, lookUp: .polling) }
            let vouchedSince = max(since, state.droppedCachedAt ?? since)
            return .registered(token, lookUp: alreadyPublished && now - vouchedSince < configuration.lookback ? .once : .none)
        }
        let token: Int
        let lookUp: LookUp
        switch registration {
        case .cached(let reply): return reply
        case .stopped: return nil
        case .registered(let registered, let mode): (token, lookUp) = (registered, mode)
        }
        // Whatever ends the wait (reply, deadline, cancellation), its slot goes with it.
        defer { forget(commandID, token: token) }
        let outcome = await withTaskGroup(of: Outcome.self) { group in
            group.addTask { .answered(await self.wait(for: commandID, token: token)) }
            group.addTask {
                do {
                    try await Task.sleep(for: deadline)
                    return .deadline
                } catch {
                    return .cancelled
                }
            }
            if lookUp != .none {
                group.addTask { await self.lookUp(commandID, in: stream, polling: lookUp == .polling) }
            }
            for await outcome in group {
                switch outcome {
                case .answered(.some), .deadline:
                    group.cancelAll()
                    return outcome
                case .answered(.none), .cancelled, .notFound:
                    // A look-up that found nothing, or the wait ended empty (shutdown, cancellation):
                    // the deadline or cancellation decides.
                    if Task.isCancelled || state.withLock({ $0.stopped }) {
                        group.cancelAll()
                        return .cancelled
                    }
                    continue
                }
            }
            return .cancelled
        }
        switch outcome {
        case .answered(let reply?):
            return reply
        case .deadline:
            deadlineMisses.increment()
            state.withLock { state in _ = state.missed.insert(commandID, ()) }
            return nil
        case .answered(nil), .cancelled, .notFound:
            try Task.checkCancellation()
            return nil
        }
    }

    private enum LookUp { case none, once, polling }

    private enum Registration {
        case cached(ReceptionistReplied)
        case stopped
        case registered(Int, lookUp: LookUp)
    }

    private enum Outcome {
        case answered(ReceptionistReplied?)
        case deadline
        case cancelled
        case notFound
    }

    /// Suspends until the slot is answered; nil when it is cancelled.
    private func wait(for commandID: Identifier, token: Int) async -> ReceptionistReplied? {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<ReceptionistReplied?, Never>) in
                let answered: ReceptionistReplied?? = state.withLock { state in
                    switch state.slots[commandID]?[token] {
                    case .registered:
                        state.slots[commandID]?[token] = .waiting(continuation)
                        return .none
                    case .answered(let reply):
                        state.slots[commandID]?[token] = nil
                        if state.slots[commandID]?.isEmpty == true { state.slots[commandID] = nil }
                        return .some(reply)
                    case .waiting, nil:
                        // Forgotten (cancelled before it began waiting).
                        return .some(nil)
                    }
                }
                if let answered { continuation.resume(returning: answered) }
            }
        } onCancel: {
            forget(commandID, token: token)
        }
    }

    /// Removes a wait's slot, resuming it with nil if it is waiting.
    private func forget(_ commandID: Identifier, token: Int) {
        let continuation: CheckedContinuation<ReceptionistReplied?, Never>? = state.withLock { state in
            guard let slot = state.slots[commandID]?[token] else { return nil }
            state.slots[commandID]?[token] = nil
            if state.slots[commandID]?.isEmpty == true { state.slots[commandID] = nil }
            if case .waiting(let continuation) = slot { return continuation }
            return nil
        }
        continuation?.resume(returning: nil)
    }

    /// Reads the call's stream, newest first, for the reply (repeatedly while `polling`).
    private func lookUp(_ commandID: Identifier, in stream: String, polling: Bool) async -> Outcome {
        repeat {
            lookups.increment()
            do {
                for entry in try await tail.latestEntries(of: stream, count: configuration.lookupCount) {
                    guard let (causation, reply) = Self.reply(in: entry), causation == commandID else { continue }
                    deliver(reply, causation: causation)
                    return .answered(reply)
                }
            } catch is CancellationError {
                return .cancelled
            } catch {
                logger.warning("turn reply look-up failed", metadata: ["stream": "\(stream)", "error": "\(error)"])
            }
            guard polling, !Task.isCancelled else { break }
            // Keep polling only while the tail still is not following.
            if state.withLock({ $0.followingSince != nil }) { break }
            do { try await Task.sleep(for: configuration.pollInterval) } catch { return .cancelled }
        } while true
        return .notFound
    }

    // MARK: Receiving

    /// The tail's entries: every reply is cached and completes the waits for its command; a
    /// `CallerErased` drops the erased calls' replies.
    private func receive(_ entries: [TailEntry]) {
        state.withLock { state in
            if state.followingSince == nil { state.followingSince = .now }
        }
        for tailEntry in entries {
            if let erased = Self.erasure(in: tailEntry.entry) {
                let dropped = forget(calls: erased.callIDs)
                if dropped > 0 { logger.info("erased calls' replies forgotten", metadata: ["erasure": "\(erased.erasureID)", "replies": "\(dropped)"]) }
                continue
            }
            guard let (causation, reply) = Self.reply(in: tailEntry.entry) else { continue }
            deliver(reply, causation: causation)
        }
    }

    /// Drops the cached replies of these calls (an erased caller's); how many. A wait for one of
    /// their turns afterwards looks the reply up in the call's stream, where the erasure deleted it.
    @discardableResult
    public func forget(calls: [Identifier]) -> Int {
        let erased = Set(calls)
        guard !erased.isEmpty else { return 0 }
        return state.withLock { state in state.cache.removeAll { erased.contains($0.callID) } }
    }

    /// Whether a reply of `call` is cached.
    func remembers(call: Identifier) -> Bool {
        state.withLock { state in state.cache.contains { $0.callID == call } }
    }

    /// The `CallerErased` in a stream entry; nil for any other entry.
    static func erasure(in entry: StreamEntry) -> CallerErased? {
        guard let fields = entry.fields,
              let typeField = fields.first(where: { $0.name == "type" }),
              typeField.value.elementsEqual(CallerErased.type.utf8),
              let envelope = try? EventEnvelope(fields: fields.map { EnvelopeField(name: $0.name, value: $0.value) })
        else { return nil }
        return try? MessageCodec.decode(CallerErased.self, from: envelope.data)
    }

    private func deliver(_ reply: ReceptionistReplied, causation: Identifier) {
        let now = ContinuousClock.now
        let waiting: [CheckedContinuation<ReceptionistReplied?, Never>] = state.withLock { state in
            // The first reply to a command stands (a look-up may find one the tail also delivers).
            guard state.cache[causation] == nil else { return [] }
            if let dropped = state.cache.insert(causation, reply, at: now) {
                state.droppedCachedAt = max(state.droppedCachedAt ?? dropped, dropped)
            }
            let wasLate = state.missed.remove(causation)
            // Counted before the lock lets anyone see the cached reply: whoever is answered from
            // the cache already finds the reply counted (and a late one counted as late).
            replies.increment()
            if wasLate { lateReplies.increment() }
            var waiting: [CheckedContinuation<ReceptionistReplied?, Never>] = []
            if let slots = state.slots[causation] {
                for (token, slot) in slots {
                    switch slot {
                    case .waiting(let continuation):
                        waiting.append(continuation)
                        state.slots[causation]?[token] = nil
                    case .registered:
                        state.slots[causation]?[token] = .answered(reply)
                    case .answered:
                        break
                    }
                }
                if state.slots[causation]?.isEmpty == true { state.slots[causation] = nil }
            }
            return waiting
        }
        for continuation in waiting { continuation.resume(returning: reply) }
    }

    /// The reply in a stream entry and the command it answers; nil for any other entry (another
    /// event type, no causation, a payload that does not decode).
    static func reply(in entry: StreamEntry) -> (Identifier, ReceptionistReplied)? {
        guard let fields = entry.fields,
              let typeField = fields.first(where: { $0.name == "type" }),
              typeField.value.elementsEqual(ReceptionistReplied.type.utf8),
              let envelope = try? EventEnvelope(fields: fields.map { EnvelopeField(name: $0.name, value: $0.value) }),
              let causation = envelope.causationID,
              let reply = try? MessageCodec.decode(ReceptionistReplied.self, from: envelope.data)
        else { return nil }
        return (causation, reply)
    }

    // MARK: Inspection

    /// Waits open now (for tests: a wait that ended leaves none behind).
    var openWaits: Int {
        state.withLock { $0.slots.values.reduce(0) { $0 + $1.count } }
    }

    /// Replies kept in memory now.
    var cachedReplies: Int {
        state.withLock { $0.cache.count }
    }

    /// Whether the tail is following (every reply from now on is seen without a look-up).
    public var isFollowing: Bool {
        state.withLock { $0.followingSince != nil }
    }
}

/// A map that holds at most `capacity` values, dropping the oldest inserted first.
struct BoundedMap<Value> {
    private var values: [Identifier: (value: Value, insertedAt: ContinuousClock.Instant)] = [:]
    /// Keys in insertion order, as a ring (`head` is the oldest once full).
    private var order: [Identifier] = []
    private var head = 0
    let capacity: Int

    init(capacity: Int) {
        self.capacity = max(1, capacity)
    }

    var count: Int { values.count }

    subscript(key: Identifier) -> Value? { values[key]?.value }

    /// Inserts (or replaces) a value; returns when the value it dropped to make room was inserted.
    @discardableResult
    mutating func insert(_ key: Identifier, _ value: Value, at now: ContinuousClock.Instant = .now) -> ContinuousClock.Instant? {
        if let existing = values[key] {
            values[key] = (value, existing.insertedAt)
            return nil
        }
        var dropped: ContinuousClock.Instant?
        if order.count < capacity {
            order.append(key)
        } else {
            // The oldest place; a key removed early left it stale (then nothing is dropped).
            if let removed = values.removeValue(forKey: order[head]) { dropped = removed.insertedAt }
            order[head] = key
            head = (head + 1) % capacity
        }
        values[key] = (value, now)
        return dropped
    }

    /// Removes a key; whether it was there. Its place in the ring is reused later.
    mutating func remove(_ key: Identifier) -> Bool {
        values.removeValue(forKey: key) != nil
    }

    /// Removes every value `matches` accepts; how many. Their places in the ring are reused later.
    mutating func removeAll(where matches: (Value) -> Bool) -> Int {
        let doomed = values.filter { matches($0.value.value) }.map(\.key)
        for key in doomed { values.removeValue(forKey: key) }
        return doomed.count
    }

    /// Whether some value is one `matches` accepts.
    func contains(where matches: (Value) -> Bool) -> Bool {
        values.values.contains { matches($0.value) }
    }
}
