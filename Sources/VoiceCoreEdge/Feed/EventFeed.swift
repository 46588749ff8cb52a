import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization
import VoiceCoreBus
import VoiceCoreEvents

/// The live event feed of one edge process: one ``StreamTail`` reads every event stream, and each
/// event is fanned out to the open `GET /v1/events` connections of its tenant. No connection reads
/// Redis for the live feed; only a resume (`Last-Event-ID`) reads what it missed, once.
///
/// - Nobody connected: the tail reads only the streams of the types observed (``observe(_:_:)``:
///   the tenants' settings), not every event of the platform (under load that was 15 % of Redis's
///   time and the decoding of every event in this process, for nobody). The first connection
///   makes it read every stream again within ``StreamTail/Configuration/recheck``; the connection
///   is joined to the live frames then, and what was published between its acceptance and that
///   moment is read from the streams first (the catch-up below), so it misses nothing.
///
/// - Order and resume: frames carry the tail's ``TailPosition`` as their `id`; a connection gets
///   every event of its tenant (and types) in that order. A resume reads the streams from its
///   position up to where the live feed stood when it joined (``StreamTail/entries(after:through:count:)``),
///   then continues with the live frames queued meanwhile: no gap, no duplicate. When trimming
///   removed entries after the position, the client is told so first (an `event: missed`).
/// - Limits: ``EventFeedConfiguration/connectionsPerTenant`` connections per tenant (429 beyond);
///   a connection whose queue reaches ``EventFeedConfiguration/queueFrames`` is disconnected.
/// - Heartbeat: a comment line to every connection every ``EventFeedConfiguration/heartbeat``.
///
/// A `Service`: `voicecore edge` and `up` run it beside the HTTP server (after it in the group, so
/// that at shutdown it ends the open streams first and the server can drain).
public final class EventFeed: Service, Sendable {
    public let configuration: EventFeedConfiguration
    let tail: StreamTail
    let logger: Logger

    private struct State {
        var byTenant: [Identifier: [ObjectIdentifier: FeedSubscription]] = [:]
        /// Connections accepted while the tail followed only the observed streams: not handed
        /// frames until the tail follows every stream (``following()``).
        var waiting: [ObjectIdentifier: FeedSubscription] = [:]
        /// The tail reads every stream (someone was connected when it last asked).
        var followingAll = false
        /// Everything up to here has been fanned out; nil until the tail read Redis's clock.
        var through: TailPosition?
        /// Why the feed cannot serve (the tail refused the Redis it was given).
        var unavailable: String?
        var stopped = false
    }

    private let state = Mutex(State())
    /// What to do with the tenant of each event of a type, besides sending it (``observe(_:_:)``),
    /// and the streams those types are published to (read even with nobody connected).
    private let observers = Mutex<(byType: [String: [@Sendable (Identifier) -> Void]], streams: Set<String>)>(([:], []))
    /// Where event types are published (the observed types' streams).
    let naming: StreamNaming

    /// - Parameter naming: the streams' names, as the tail's (where observed types are read).
    public init(tail: StreamTail, naming: StreamNaming, configuration: EventFeedConfiguration = EventFeedConfiguration(),
                logger: Logger = Logger(label: "voicecore.edge.feed")) {
        self.tail = tail
        self.naming = naming
        self.configuration = configuration
        self.logger = logger
    }

    /// Follows the event streams and beats the heartbeat until shutdown; then ends every open
    /// stream.
    public func run() async throws {
        await cancelWhenGracefulShutdown {
            await withTaskGroup(of: Void.self) { group in
                group.addTask { await self.follow() }
                group.addTask { await self.beat() }
                await group.next()
                group.cancelAll()
            }
        }
        let open = state.withLock { state in
            state.stopped = true
            let open = state.byTenant.values.flatMap(\.values)
            state.byTenant = [:]
            state.waiting = [:]
            return open
        }
        for subscription in open { subscription.end(.shutdown) }
        await tail.close()
    }

    /// Open connections, per tenant (for tests and metrics).
    public func connections(of tenant: Identifier) -> Int {
        state.withLock { $0.byTenant[tenant]?.count ?? 0 }
    }

    /// Whether the tail reads every event stream (someone is connected), not only the observed
    /// types' streams.
    public var followsEveryStream: Bool {
        state.withLock { $0.followingAll }
    }

    /// Whether the feed has started following the streams (a connection is accepted).
    public var isFollowing: Bool {
        state.withLock { $0.through != nil && $0.unavailable == nil }
    }

    private func follow() async {
        do {
            try await tail.run(following: { self.following() }) { entries, through in self.fanOut(entries, through: through) }
        } catch {
            logger.error("the live event feed cannot follow the event streams", metadata: ["error": "\(error)"])
            state.withLock { $0.unavailable = "\(error)" }
            // Keep the service up (the rest of the edge works); the feed answers 503.
            while !Task.isCancelled { try? await Task.sleep(for: .seconds(3600)) }
        }
    }

    private func beat() async {
        while !Task.isCancelled {
            do { try await Task.sleep(for: configuration.heartbeat) } catch { return }
            let all = state.withLock { $0.byTenant.values.flatMap(\.values) }
            var gone: [FeedSubscription] = []
            for subscription in all {
                // Never started streaming (its response was never written): a slot held by nobody.
                if subscription.isStale() || !subscription.enqueue(EventFrame.heartbeat) { gone.append(subscription) }
            }
            for subscription in gone {
                subscription.end(.closed)
                remove(subscription)
            }
        }
    }

    /// Calls `body` with the tenant of every event of type `M` the feed reads from now on (before
    /// the event goes to the tenant's connections), whether or not anyone is connected.
    public func observe<M: Message>(_ type: M.Type, _ body: @escaping @Sendable (Identifier) -> Void) {
        let streams = naming.streams(M.category, kind: .event)
        observers.withLock { observers in
            observers.byType[M.type, default: []].append(body)
            observers.streams.formUnion(streams)
        }
    }

    /// Which streams the tail reads next (nil: all): all while someone is connected, else only
    /// the observed types' streams. Asked by the tail before each read, right after its last
    /// delivery, so `through` is where its reading of every stream starts: the connections waiting
    /// for that are joined there.
    private func following() -> Set<String>? {
        let (all, joining, through) = state.withLock { state -> (Bool, [FeedSubscription], TailPosition?) in
            state.followingAll = !state.byTenant.isEmpty
            guard state.followingAll else { return (false, [], nil) }
            let joining = Array(state.waiting.values)
            state.waiting = [:]
            return (true, joining, state.through)
        }
        guard all else { return observers.withLock { $0.streams } }
        // `through` is set: a connection is accepted only after the tail's first delivery.
        if let through {
            for subscription in joining { subscription.join(at: through) }
        }
        return nil
    }

    /// Hands each event to its tenant's connections, in order.
    private func fanOut(_ entries: [TailEntry], through: TailPosition) {
        // Frames are built only for tenants with a connection: the envelope's decoding and the
        // JSON were 2–4 % of `voicecore up`'s CPU under load with nobody connected. Those of the
        // tenants connected now are built here, outside the lock; a tenant that connects before
        // the lock below is taken gets its frames built there (rare), so it misses nothing.
        let peeked = entries.map(EventFrame.peek)
        let observers = self.observers.withLock { $0.byType }
        if !observers.isEmpty {
            for case let (tenant, type)? in peeked {
                for observer in observers[type] ?? [] { observer(tenant) }
            }
        }
        let connected = state.withLock { Set($0.byTenant.keys) }
        var frames: [EventFrame?] = zip(entries, peeked).map { entry, peeked in
            guard let peeked, connected.contains(peeked.tenant) else { return nil }
            return EventFrame(entry)
        }
        let gone: [FeedSubscription] = state.withLock { state in
            var gone: [FeedSubscription] = []
            for index in entries.indices {
                guard let tenant = peeked[index]?.tenant, let subscriptions = state.byTenant[tenant] else { continue }
                if frames[index] == nil, !connected.contains(tenant) { frames[index] = EventFrame(entries[index]) }
                guard let frame = frames[index] else { continue }
                for subscription in subscriptions.values where subscription.wants(frame.type) && state.waiting[ObjectIdentifier(subscription)] == nil {
                    // Ended now (its queue was full) or before in this run: listed once.
                    if !subscription.enqueue(frame.bytes), !gone.contains(where: { $0 === subscription }) { gone.append(subscription) }
                }
            }
            if let current = state.through, current >= through {} else { state.through = through }
            for subscription in gone { Self.remove(subscription, from: &state) }
            return gone
        }
        for subscription in gone where subscription.endReason == .tooSlow {
            logger.info("event feed client too slow: disconnected", metadata: ["tenant": "\(subscription.tenant)", "queue": "\(subscription.capacity)"])
        }
    }

    // MARK: Connections

    /// Opens a connection's subscription, or refuses it: 429 beyond the tenant's limit, 503 while
    /// the feed cannot serve. It is joined to the live frames at once while the tail reads every
    /// stream, else when it does again (``FeedSubscription/joined()``: a catch-up reads up to there).
    func subscribe(tenant: Identifier, types: Set<String>?) throws(Problem) -> FeedSubscription {
        let subscription: FeedSubscription = try state.withLock { (state) throws(Problem) -> FeedSubscription in
            if let reason = state.unavailable {
                throw Problem(.serviceUnavailable, "Temporarily unavailable", detail: "the live event feed is off: \(reason)")
            }
            guard !state.stopped, let through = state.through else {
                throw Problem(.serviceUnavailable, "Temporarily unavailable", detail: "the live event feed is waiting for Redis; retry later",
                              headers: [.retryAfter: "1"])
            }
            let open = state.byTenant[tenant]?.count ?? 0
            guard open < configuration.connectionsPerTenant else {
                throw Problem(.tooManyRequests, "Too many requests",
                              detail: "this tenant has \(open) open event feed connections, the most it may hold; close one or retry later",
                              headers: [.retryAfter: String(configuration.retryAfterSeconds)])
            }
            let subscription = FeedSubscription(tenant: tenant, types: types, capacity: configuration.queueFrames, from: through)
            state.byTenant[tenant, default: [:]][ObjectIdentifier(subscription)] = subscription
            if state.followingAll {
                subscription.join(at: through)
            } else {
                state.waiting[ObjectIdentifier(subscription)] = subscription
            }
            return subscription
        }
        return subscription
    }

    /// Frees a connection's slot and queue.
    func remove(_ subscription: FeedSubscription) {
        state.withLock { Self.remove(subscription, from: &$0) }
    }

    private static func remove(_ subscription: FeedSubscription, from state: inout State) {
        let key = ObjectIdentifier(subscription)
        guard state.byTenant[subscription.tenant]?[key] != nil else { return }
        state.byTenant[subscription.tenant]?[key] = nil
        state.waiting[key] = nil
        if state.byTenant[subscription.tenant]?.isEmpty == true { state.byTenant[subscription.tenant] = nil }
    }
}
