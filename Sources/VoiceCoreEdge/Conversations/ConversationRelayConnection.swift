import HummingbirdWebSocket
import Logging
import Metrics
import NIOCore
import NIOWebSocket
import Synchronization
import VoiceCoreBus
import VoiceCoreEvents
import VoiceCoreTime

/// One ConversationRelay WebSocket, from `setup` to `end`: reads the provider's messages, drives
/// the session's ``ConversationRelaySession``, publishes each caller turn as ``ReportCallerTurn``
/// (channel `relay`), waits for the receptionist's ``ReceptionistReplied`` through the edge's
/// ``TurnReplies`` (one shared subscription per process, a deadline per wait) and speaks it.
///
/// Reading never waits for a reply: one task reads, turns are waited for in child tasks, and every
/// outcome comes back to one loop that owns the session's state. A message that cannot be
/// understood is counted (`voicecore_relay_frames_rejected_total{reason}`) and logged without its
/// text; the session goes on. A session for a call whose relay already ended is closed with code
/// 1008 and a reason.
struct ConversationRelayConnection: Sendable {
    let edge: Edge
    let tenant: Identifier
    let sessions: ConversationRelaySessions
    let metrics: ConversationRelayMetrics

    /// The largest message accepted (the provider's are a few hundred bytes; a prompt is at most
    /// a few thousand characters).
    static let maxMessageSize = 64 * 1024
    /// How long the provider has to hang up the WebSocket after `end` before the edge closes it.
    static let lingerAfterEnd: Duration = .seconds(5)

    /// The WebSocket settings of the edge's server.
    static var webSocketConfiguration: WebSocketServerConfiguration {
        WebSocketServerConfiguration(maxFrameSize: maxMessageSize, autoPing: .enabled(timePeriod: .seconds(30)), closeTimeout: .seconds(5))
    }

    private enum Event: Sendable {
        case message(WebSocketMessage)
        case replied(ReceptionistReplied)
        case missed(turn: Int)
        case closed
        case lingered
    }

    func run(inbound: WebSocketInboundStream, outbound: WebSocketOutboundWriter) async {
        var logger = edge.logger
        logger[metadataKey: "tenant"] = "\(tenant)"
        let (events, sink) = AsyncStream<Event>.makeStream()
        var session = ConversationRelaySession(tenant: tenant)
        var registered: Identifier?
        await withTaskGroup(of: Void.self) { group in
            let readerLogger = logger
            group.addTask {
                do {
                    for try await message in inbound.messages(maxSize: Self.maxMessageSize) { sink.yield(.message(message)) }
                } catch {
                    readerLogger.debug("relay WebSocket read ended", metadata: ["error": "\(error)"])
                }
                sink.yield(.closed)
            }
            loop: for await event in events {
                let actions: [ConversationRelaySession.Action]
                switch event {
                case .message(.text(let text)): actions = session.receive(ConversationRelayFrame.parse(Array(text.utf8)))
                case .message(.binary): actions = session.receive(.failure(.binary))
                case .replied(let reply): actions = session.replied(reply)
                case .missed(let turn):
                    metrics.deadlineMissed()
                    actions = session.missedDeadline(turn: turn)
                case .closed, .lingered: break loop
                }
                for action in actions {
                    switch action {
                    case .reject(let reason):
                        metrics.rejected(reason)
                        logger.info("relay message rejected", metadata: ["reason": "\(reason.rawValue)", "call": "\(session.call?.callID.description ?? "-")"])
                    case .open(let call):
                        logger[metadataKey: "call"] = "\(call.callID)"
                        if let refusal = sessions.open(call.callID) {
                            session.refuse()
                            metrics.sessionEnded("refused")
                            logger.info("relay session refused", metadata: ["reason": "\(refusal)"])
                            try? await outbound.close(.policyViolation, reason: refusal)
                            break loop
                        }
                        registered = call.callID
                        metrics.sessionOpened()
                    case .ask(let turn, let attempt):
                        guard let call = session.call else { continue }
                        if attempt == 1 { metrics.turnAsked() }
                        let turnLogger = logger
                        group.addTask { await ask(turn, of: call, logger: turnLogger, sink: sink) }
                    case .send(let frame):
                        do {
                            try await outbound.write(.text(frame.json))
                        } catch {
                            logger.debug("relay WebSocket write failed", metadata: ["error": "\(error)"])
                        }
                    case .finish:
                        if let registered { sessions.ended(registered) }
                        metrics.sessionEnded(ConversationRelayMetrics.outcome(of: actions))
                        group.addTask {
                            try? await Task.sleep(for: Self.lingerAfterEnd)
                            sink.yield(.lingered)
                        }
                    }
                }
            }
            sink.finish()
            group.cancelAll()
        }
        if let registered {
            sessions.ended(registered)
            if !session.isEnded { metrics.sessionEnded("closed") }
        }
    }

    /// Publishes `turn` (once in effect: its id and deduplication key are the turn's) and waits
    /// for the reply up to the edge's turn deadline.
    private func ask(_ turn: ConversationRelaySession.Turn, of call: ConversationRelaySession.Call, logger: Logger,
                     sink: AsyncStream<Event>.Continuation) async {
        let command = ReportCallerTurn(callID: call.callID, provider: .twilio, providerCallID: call.callSid, turn: turn.number, text: turn.text,
                                       digits: turn.digits, channel: .relay, from: call.from, to: call.to, language: turn.language,
                                       occurredAt: .now)
        let id = ReportCallerTurn.commandID(callID: call.callID, turn: turn.number)
        let outcome: DeduplicatedOutcome
        do {
            try command.validate()
            outcome = try await edge.publish(command, tenant: call.tenant, source: "/edge/twilio", id: id, deduplicationKey: "turn:\(id)",
                                       metricSource: "relay")
        } catch {
            // Redis unreachable (or a turn it cannot hold): the caller hears the holding line
            // and the turn is published again on the next attempt.
            logger.warning("relay turn not published", metadata: ["turn": "\(turn.number)", "error": "\(error)"])
            sink.yield(.missed(turn: turn.number))
            return
        }
        guard let replies = edge.turnReplies else {
            sink.yield(.missed(turn: turn.number))
            return
        }
        let stream = edge.publisher.configuration.naming.stream(for: .conversations, kind: .event, tenant: call.tenant, subject: call.callID.description)
        do {
            // A turn published for the first time cannot have an older reply: no look-up.
            if let reply = try await replies.reply(to: id, stream: stream, deadline: edge.configuration.turnDeadline, alreadyPublished: outcome.isDuplicate),
               reply.callID == call.callID, reply.turn == turn.number {
                sink.yield(.replied(reply))
            } else {
                sink.yield(.missed(turn: turn.number))
            }
        } catch is CancellationError {
            return
        } catch {
            logger.warning("relay turn reply not read", metadata: ["turn": "\(turn.number)", "error": "\(error)"])
            sink.yield(.missed(turn: turn.number))
        }
    }
}

/// The relay sessions of one edge process: which calls have one open and which ended, so a
/// WebSocket for a call whose conversation is over is refused (close 1008) instead of starting
/// it again at turn 1. Bounded: the last ``capacity`` ended calls are remembered.
final class ConversationRelaySessions: Sendable {
    let capacity: Int
    private struct State {
        var open: Set<Identifier> = []
        var ended: Set<Identifier> = []
        var endedOrder: [Identifier] = []
        var oldest = 0
    }
    private let state = Mutex(State())

    init(capacity: Int = 10_000) {
        self.capacity = max(1, capacity)
    }

    /// Registers a session for `call`; the reason it may not run, if any (the WebSocket close reason).
    func open(_ call: Identifier) -> String? {
        state.withLock { state in
            if state.ended.contains(call) { return "call already ended" }
            if state.open.contains(call) { return "call already has a relay session" }
            state.open.insert(call)
            return nil
        }
    }

    /// The session of `call` ended (or its WebSocket closed): the call takes no new session.
    func ended(_ call: Identifier) {
        state.withLock { state in
            state.open.remove(call)
            guard state.ended.insert(call).inserted else { return }
            state.endedOrder.append(call)
            if state.endedOrder.count - state.oldest > capacity {
                state.ended.remove(state.endedOrder[state.oldest])
                state.oldest += 1
                // Drop the forgotten prefix now and then, not at every session.
                if state.oldest >= capacity {
                    state.endedOrder.removeFirst(state.oldest)
                    state.oldest = 0
                }
            }
        }
    }

    func isOpen(_ call: Identifier) -> Bool { state.withLock { $0.open.contains(call) } }
    func hasEnded(_ call: Identifier) -> Bool { state.withLock { $0.ended.contains(call) } }
}

/// The ConversationRelay metric names (Prometheus at `/metrics`).
public enum ConversationRelayMetricNames {
    /// Counter, label `reason` (``ConversationRelayFrame/Rejection``): provider messages not understood.
    public static let framesRejected = "voicecore_relay_frames_rejected_total"
    /// Counter, label `status` (403, 404, 503): upgrade requests refused before any WebSocket.
    public static let upgradesRefused = "voicecore_relay_upgrades_refused_total"
    /// Counter: sessions opened by a `setup`.
    public static let sessionsOpened = "voicecore_relay_sessions_opened_total"
    /// Counter, label `outcome` (`transfer`, `voicemail`, `hangup`, `fallback`, `closed`, `refused`).
    public static let sessionsEnded = "voicecore_relay_sessions_ended_total"
    /// Counter: caller turns asked.
    public static let turns = "voicecore_relay_turns_total"
    /// Counter: replies that missed their deadline (each is a holding line, or the fallback).
    public static let deadlineMisses = "voicecore_relay_deadline_misses_total"
}

struct ConversationRelayMetrics: Sendable {
    let factory: any MetricsFactory

    func rejected(_ reason: ConversationRelayFrame.Rejection) {
        Counter(label: ConversationRelayMetricNames.framesRejected, dimensions: [("reason", reason.rawValue)], factory: factory).increment()
    }

    func upgradeRefused(_ status: Int) {
        Counter(label: ConversationRelayMetricNames.upgradesRefused, dimensions: [("status", String(status))], factory: factory).increment()
    }

    func sessionOpened() {
        Counter(label: ConversationRelayMetricNames.sessionsOpened, factory: factory).increment()
    }

    func sessionEnded(_ outcome: String) {
        Counter(label: ConversationRelayMetricNames.sessionsEnded, dimensions: [("outcome", outcome)], factory: factory).increment()
    }

    func turnAsked() {
        Counter(label: ConversationRelayMetricNames.turns, factory: factory).increment()
    }

    func deadlineMissed() {
        Counter(label: ConversationRelayMetricNames.deadlineMisses, factory: factory).increment()
    }

    /// How a session ended, from the actions that ended it (the `end` message's handoff).
    static func outcome(of actions: [ConversationRelaySession.Action]) -> String {
        for case .send(.end(handoffData: let handoff)) in actions {
            guard let handoff else { return "hangup" }
            if handoff.contains(ConversationRelaySession.fallbackReason) { return "fallback" }
            if handoff.contains("\"transfer\"") { return "transfer" }
            return "voicemail"
        }
        return "closed"
    }
}
