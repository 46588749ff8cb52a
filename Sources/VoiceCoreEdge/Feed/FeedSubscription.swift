import NIOCore
import Synchronization
import VoiceCoreBus
import VoiceCoreEvents

/// One open `GET /v1/events` connection as the ``EventFeed`` sees it: the tenant and event types it
/// wants, and a bounded queue of frames waiting to be written to it.
///
/// The feed appends frames (shared buffers: one per event for every connection) and never waits;
/// the connection's writer takes them all at once. A queue that reaches its bound ends the
/// subscription as too slow: a client that stops reading costs at most that many frames, never an
/// unbounded buffer, and is disconnected while the others keep receiving.
final class FeedSubscription: Sendable {
    /// Why a subscription ended.
    enum End: Sendable, Equatable {
        /// The client read too slowly: its queue reached the bound.
        case tooSlow
        /// The client went away (a write failed) or the response ended.
        case closed
        /// The edge is shutting down.
        case shutdown
    }

    /// What the writer gets next.
    enum Next: Sendable {
        case frames([ByteBuffer])
        case ended(End)
    }

    let tenant: Identifier
    /// The event types wanted; nil: all.
    let types: Set<String>?
    let capacity: Int
    /// Where the live feed stood when the connection was accepted: a connection that is not
    /// resuming gets every event after it.
    let from: TailPosition

    private struct State: ~Copyable {
        var queue = CircularBuffer<ByteBuffer>()
        var waiter: CheckedContinuation<Next, Never>?
        var ended: End?
        var endWaiters: [CheckedContinuation<End, Never>] = []
        /// The response began streaming.
        var started = false
        /// Heartbeat ticks seen before it did.
        var ticksUnstarted = 0
        /// Where its live frames start (``join(at:)``); nil until the feed hands it frames.
        var joined: TailPosition?
        var joinWaiter: CheckedContinuation<TailPosition?, Never>?
    }

    private let state = Mutex(State())

    init(tenant: Identifier, types: Set<String>?, capacity: Int, from: TailPosition) {
        self.tenant = tenant
        self.types = types
        self.capacity = max(1, capacity)
        self.from = from
    }

    /// The feed hands it every frame after `position` from now on (what came before is read from
    /// the streams: the catch-up).
    func join(at position: TailPosition) {
        let waiter: CheckedContinuation<TailPosition?, Never>? = state.withLock { state in
            guard state.joined == nil, state.ended == nil else { return nil }
            state.joined = position
            defer { state.joinWaiter = nil }
            return state.joinWaiter
        }
        waiter?.resume(returning: position)
    }

    /// Where its live frames start, once the feed has joined it (at once while the feed follows
    /// every stream; after at most the tail's recheck when it followed only some); nil when it
    /// ended first. One caller (the connection's writer).
    func joined() async -> TailPosition? {
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let now: TailPosition?? = state.withLock { state in
                    if let joined = state.joined { return .some(joined) }
                    if state.ended != nil { return .some(nil) }
                    state.joinWaiter = continuation
                    return .none
                }
                if let now { continuation.resume(returning: now) }
            }
        } onCancel: {
            end(.closed)
        }
    }

    /// The response began streaming (until then the slot is held for a response not yet written).
    func markStarted() {
        state.withLock { $0.started = true }
    }

    /// Counts a heartbeat tick; true when a second tick finds the response still not streaming
    /// (its client went away before the body was written): the slot is held by nobody.
    func isStale() -> Bool {
        state.withLock { state in
            guard !state.started else { return false }
            state.ticksUnstarted += 1
            return state.ticksUnstarted >= 2
        }
    }

    func wants(_ type: String) -> Bool {
        types?.contains(type) ?? true
    }

    /// Appends a frame; false when the subscription has ended (now, because its queue was full, or
    /// before): the feed drops it.
    @discardableResult
    func enqueue(_ frame: ByteBuffer) -> Bool {
        enum Outcome { case handed(CheckedContinuation<Next, Never>), queued, full, ended }
        let outcome: Outcome = state.withLock { state in
            if state.ended != nil { return .ended }
            if let waiter = state.waiter {
                state.waiter = nil
                return .handed(waiter)
            }
            guard state.queue.count < capacity else { return .full }
            state.queue.append(frame)
            return .queued
        }
        switch outcome {
        case .handed(let waiter):
            waiter.resume(returning: .frames([frame]))
            return true
        case .queued:
            return true
        case .full:
            // A reader this far behind is cut off rather than buffered for.
            end(.tooSlow)
            return false
        case .ended:
            return false
        }
    }

    /// Ends the subscription (the first reason wins); its queue is released at once. Returns
    /// whether this call ended it.
    @discardableResult
    func end(_ reason: End) -> Bool {
        let (waiter, joinWaiter, endWaiters, ended): (CheckedContinuation<Next, Never>?, CheckedContinuation<TailPosition?, Never>?,
                                                      [CheckedContinuation<End, Never>], Bool) = state.withLock { state in
            guard state.ended == nil else { return (nil, nil, [], false) }
            state.ended = reason
            state.queue = CircularBuffer()
            let waiter = state.waiter
            state.waiter = nil
            let joinWaiter = state.joinWaiter
            state.joinWaiter = nil
            let endWaiters = state.endWaiters
            state.endWaiters = []
            return (waiter, joinWaiter, endWaiters, true)
        }
        waiter?.resume(returning: .ended(reason))
        joinWaiter?.resume(returning: nil)
        for endWaiter in endWaiters { endWaiter.resume(returning: reason) }
        return ended
    }

    /// The frames queued (all of them), waiting for one when there is none; or how it ended.
    /// A cancelled waiter ends the subscription (`closed`).
    func next() async -> Next {
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
            let immediate: Next? = state.withLock { state in
                if let ended = state.ended { return .ended(ended) }
                if !state.queue.isEmpty {
                    let frames = Array(state.queue)
                    state.queue.removeAll(keepingCapacity: true)
                    return .frames(frames)
                }
                state.waiter = continuation
                return nil
            }
            if let immediate { continuation.resume(returning: immediate) }
            }
        } onCancel: {
            end(.closed)
        }
    }

    /// Waits until the subscription ends, and says why.
    func ended() async -> End {
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
            let ended: End? = state.withLock { state in
                if let ended = state.ended { return ended }
                state.endWaiters.append(continuation)
                return nil
            }
            if let ended { continuation.resume(returning: ended) }
            }
        } onCancel: {
            end(.closed)
        }
    }

    /// How it ended, nil while open.
    var endReason: End? {
        state.withLock { $0.ended }
    }
}
