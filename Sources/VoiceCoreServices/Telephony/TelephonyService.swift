import AsyncHTTPClient
import Logging
import Metrics
import Synchronization
import VoiceCoreBus
import VoiceCoreEvents
import VoiceCoreTenants
import VoiceCoreTime

/// The telephony service (group `telephony`): answers Telnyx Call Control calls and speaks the
/// receptionist's replies on them, through Telnyx's REST API with the tenant's API key.
///
/// - ``CallStarted`` of an inbound Telnyx call → `answer`, `transcription_start` (the caller's
///   track: what they say arrives as `call.transcription`), then `gather_using_speak` with the
///   tenant's greeting, waiting for turn 1.
/// - ``ReceptionistReplied`` of a Telnyx call on channel `call-control` (turn N) → by its action:
///   `continue`: `gather_using_speak` with the reply, waiting for turn N+1; `transfer`: `speak`,
///   then `transfer` to `transfer_to`; `voicemail`: `speak`, then `record_start` (the caller's
///   track, with a beep); `hangup`: `speak`, then `hangup`. A reply to a spoken turn first stops
///   the gather still waiting for keys (`gather_stop`).
/// - ``ReportPromptPlayed`` (Telnyx's `call.speak.ended` of that `speak`, via the edge) → the
///   transfer, `record_start` or hang-up kept for turn N.
///
/// Why gather and transcription: Telnyx's `gather_using_speak` collects keys only; speech
/// comes from the call's transcription, whose webhooks carry the same `client_state`. The edge
/// turns whichever of `call.gather.ended` and a final `call.transcription` comes first into the
/// turn's ``ReportCallerTurn`` (one command id per turn, so the other is a duplicate).
/// (`gather_using_ai` would let Telnyx's own assistant run the dialogue, not the receptionist.)
///
/// Idempotent under redelivery: every command's `command_id` is a UUIDv5 of the call, the action
/// and the turn, and Telnyx ignores a command id it has seen on the call.
///
/// Crash-safe follow-ups: a transfer, voicemail or hang-up must wait until the reply before it
/// has been said (Telnyx would cut the speech short). The reply's handler keeps the follow-up
/// (action and number) in the call's state in Redis, keyed by turn, before the `speak` goes out
/// and before the reply is acknowledged; the `speak` carries ``CallControlState/closing(after:)``,
/// so its `call.speak.ended` names the turn. That webhook reaches this service as a command on the
/// call's conversations stream, which is acknowledged only once the follow-up has been sent: no
/// step waits in memory, and a restart anywhere in between resends at most a command Telnyx
/// ignores. No timer stands in for a `call.speak.ended` that never comes: Telnyx sends one for
/// every `speak` it started (status `completed`, or `call_hangup` when the call ended, when no
/// follow-up is needed), and retries its webhooks while the edge is away; a guessed delay would
/// cut replies short or leave the caller waiting, and would have to be kept durably itself.

///
/// A tenant without a Telnyx API key: counted (`voicecore_telephony_skipped_total{reason="no_api_key"}`),
/// logged, acknowledged. Telnyx refusing a command (4xx): counted and logged, not retried. Telnyx
/// unavailable (5xx, 429, timeouts) after the client's attempts: the message fails and its
/// consumer group retries it with backoff, then dead-letters it.
public struct TelephonyService: Sendable {
    public static let group = "telephony"

    let control: TelnyxCallControl
    let keys: TelnyxKeys
    let tenants: TenantProfiles
    let configuration: TelnyxConfiguration
    /// Each call's follow-ups, by turn (``followUpField(turn:)``).
    let state: StateStore
    let naming: StreamNaming
    let logger: Logger

    public static func runner(_ dependencies: ServiceDependencies, directory: TenantDirectory, configuration: TelnyxConfiguration = .fromEnvironment(),
                              client: HTTPClient = .shared, metrics: TelephonyMetrics = TelephonyMetrics()) async throws -> ConsumerGroupRunner {
        let service = TelephonyService(
            control: TelnyxCallControl(configuration: configuration, client: client, metrics: metrics, logger: dependencies.logger),
            keys: TelnyxKeys(directory: directory), tenants: dependencies.tenants, configuration: configuration,
            state: dependencies.stateStore(try await dependencies.connect(group), ttl: .seconds(86_400)), naming: dependencies.naming,
            logger: dependencies.logger)
        var handlers = MessageHandlers()
        handlers.onPartitionAcquired { stream in service.state.invalidate(stream: stream) }
        handlers.on(CallStarted.self) { message, started in try await service.handle(started, message) }
        handlers.on(ReceptionistReplied.self) { message, reply in try await service.handle(reply, message) }
        handlers.on(ReportPromptPlayed.self) { message, played in try await service.handle(played, message) }
        // The conversations commands carry the ends of spoken replies; the caller turns among them
        // are the receptionist's (no handler here: acknowledged and skipped).
        let streams = dependencies.naming.streams(.calls, kind: .event) + dependencies.naming.streams(.conversations, kind: .event)
            + dependencies.naming.streams(.conversations, kind: .command)
        // A caller waits on every message: the live read interval, not the background one.
        return ConsumerGroupRunner(redis: dependencies.redis, configuration: dependencies.consumer(group, streams: streams),
                                   handlers: handlers, logger: dependencies.logger)
    }

    // MARK: Commands of a call

    /// `command_id` of an action on a call (`answer`, `gather:3`, `hangup:2`): the same for every delivery.
    static func commandID(call: Identifier, _ name: String) -> Identifier {
        Identifier.v5(namespace: call, name: "telnyx:\(name)")
    }

    func handle(_ started: CallStarted, _ message: ConsumedMessage) async throws {
        guard started.provider == .telnyx, started.direction == .inbound else { return }
        let tenant = message.envelope.tenantID
        guard let key = try await key(of: tenant, call: started.callID) else { return }
        let call = started.callID
        let waiting = CallControlState.clientState(turn: 1)
        let id = started.providerCallID
        guard try await send(CallControlCommand(action: "answer", callControlID: id, commandID: Self.commandID(call: call, "answer"), clientState: waiting),
                             key: key, tenant: tenant, call: call) else { return }
        guard try await send(CallControlCommand(action: "transcription_start", callControlID: id, commandID: Self.commandID(call: call, "transcription"),
                                                clientState: waiting, fields: ["transcription_tracks": .string("inbound")]),
                             key: key, tenant: tenant, call: call) else { return }
        let greeting = try await tenants.profile(of: tenant)?.aiSettings?.greeting ?? AISettings.builtIn.greeting
        try await send(gather(call: call, callControlID: id, turn: 1, prompt: greeting), key: key, tenant: tenant, call: call)
    }

    func handle(_ reply: ReceptionistReplied, _ message: ConsumedMessage) async throws {
        guard reply.provider == .telnyx, reply.channel == .callControl else { return }
        let tenant = message.envelope.tenantID
        let call = reply.callID
        guard let key = try await key(of: tenant, call: call) else { return }
        let id = reply.providerCallID
        let turn = reply.turn
        let next = CallControlState.clientState(turn: turn + 1)
        if reply.heard.contains(where: \.isLetter) {
            // A spoken turn: the turn's gather still waits for keys. Stopping it lets the next
            // prompt play at once; a gather already ended is refused (4xx), which is fine.
            try await send(CallControlCommand(action: "gather_stop", callControlID: id, commandID: Self.commandID(call: call, "gather_stop:\(turn)"),
                                              clientState: next), key: key, tenant: tenant, call: call, refusalExpected: true)
        }
        let followUp: String
        switch reply.action {
        case .continue:
            try await send(gather(call: call, callControlID: id, turn: turn + 1, prompt: reply.text), key: key, tenant: tenant, call: call)
            return
        case .transfer:
            guard let to = reply.transferTo else { return }  // validated: a transfer names its number
            followUp = "transfer \(to)"
        case .voicemail:
            followUp = "voicemail"
        case .hangup:
            followUp = "hangup"
        }
        // Kept before the speak goes out (its end is the cue) and before the reply is acknowledged.
        // From the speak on no turn is awaited: what the caller says meanwhile is no turn of the
        // receptionist's (its client_state names no turn to wait for).
        try await state.write(stateKey(tenant: tenant, call: call), [Self.followUpField(turn: turn): followUp])
        try await send(speak(call: call, callControlID: id, turn: turn, text: reply.text, clientState: CallControlState.closing(after: turn)),
                       key: key, tenant: tenant, call: call)
    }

    /// The reply to `played.turn` has been said: its transfer, voicemail or hang-up goes out now.
    func handle(_ played: ReportPromptPlayed, _ message: ConsumedMessage) async throws {
        guard played.provider == .telnyx else { return }
        let tenant = message.envelope.tenantID
        let call = played.callID
        let key = stateKey(tenant: tenant, call: call)
        let field = Self.followUpField(turn: played.turn)
        var kept = try await state.read(key)[field]
        if kept == nil {
            // Remembered state may predate another instance's write for this call: ask Redis.
            state.forget(key)
            kept = try await state.read(key)[field]
        }
        guard let kept, let command = followUp(kept, call: call, callControlID: played.providerCallID, turn: played.turn) else {
            control.metrics.skipped("no_follow_up").increment()
            logger.warning("Telnyx speech ended with no follow-up kept for its turn", metadata: ["tenant": "\(tenant)", "call": "\(call)", "turn": "\(played.turn)"])
            return
        }
        guard let apiKey = try await self.key(of: tenant, call: call) else { return }
        try await send(command, key: apiKey, tenant: tenant, call: call)
    }

    /// The state field of the follow-up after the reply to `turn`: `transfer <E.164>`, `voicemail` or `hangup`.
    static func followUpField(turn: Int) -> String { "follow_up:\(turn)" }

    /// The call's state, beside its conversations events.
    func stateKey(tenant: Identifier, call: Identifier) -> String {
        StateStore.key(stream: naming.stream(for: .conversations, kind: .event, tenant: tenant, subject: call.description), service: Self.group,
                       entity: call.description)
    }

    /// The command a kept follow-up stands for; its `command_id` is the one of every delivery.
    func followUp(_ kept: String, call: Identifier, callControlID: String, turn: Int) -> CallControlCommand? {
        let closing = CallControlState.closing
        let parts = kept.split(separator: " ", maxSplits: 1).map(String.init)
        switch parts.first {
        case "transfer":
            guard parts.count == 2 else { return nil }
            return CallControlCommand(action: "transfer", callControlID: callControlID, commandID: Self.commandID(call: call, "transfer:\(turn)"),
                                      clientState: closing, fields: ["to": .string(parts[1])])
        case "voicemail":
            return CallControlCommand(action: "record_start", callControlID: callControlID, commandID: Self.commandID(call: call, "record_start:\(turn)"),
                                      clientState: closing, fields: [
                                          "format": .string("mp3"), "channels": .string("single"), "recording_track": .string("inbound"),
                                          "play_beep": .bool(true), "max_length": .number("120"),
                                      ])
        case "hangup":
            return CallControlCommand(action: "hangup", callControlID: callControlID, commandID: Self.commandID(call: call, "hangup:\(turn)"), clientState: closing)
        default:
            return nil
        }
    }

    func gather(call: Identifier, callControlID: String, turn: Int, prompt: String) -> CallControlCommand {
        CallControlCommand(action: "gather_using_speak", callControlID: callControlID, commandID: Self.commandID(call: call, "gather:\(turn)"),
                           clientState: CallControlState.clientState(turn: turn), fields: [
                               "payload": .string(prompt), "payload_type": .string("text"), "voice": .string(configuration.voice),
                               "language": .string(configuration.language), "minimum_digits": .number("1"), "maximum_digits": .number("16"),
                               "terminating_digit": .string("#"), "valid_digits": .string("0123456789*#"), "maximum_tries": .number("1"),
                               "timeout_millis": .number(String(Int64(configuration.gatherTimeout / .milliseconds(1)))),
                               "inter_digit_timeout_millis": .number("3000"),
                           ])
    }

    func speak(call: Identifier, callControlID: String, turn: Int, text: String, clientState: String) -> CallControlCommand {
        CallControlCommand(action: "speak", callControlID: callControlID, commandID: Self.commandID(call: call, "speak:\(turn)"), clientState: clientState,
                           fields: ["payload": .string(text), "payload_type": .string("text"), "voice": .string(configuration.voice),
                                    "language": .string(configuration.language)])
    }

    /// Sends one command; true when Telnyx took it. A refusal is logged by the client and ends
    /// what the message asked (the call has probably ended).
    @discardableResult
    func send(_ command: CallControlCommand, key: TelnyxAPIKey, tenant: Identifier, call: Identifier, refusalExpected: Bool = false) async throws -> Bool {
        switch try await control.send(command, key: key) {
        case .accepted:
            return true
        case .refused(let status, _):
            if !refusalExpected {
                logger.info("call left as it is after Telnyx refused a command", metadata: ["tenant": "\(tenant)", "call": "\(call)", "action": "\(command.action)", "status": "\(status)"])
            }
            return refusalExpected
        }
    }

    /// The tenant's key; nil (counted and logged) when it has none: its Telnyx calls are left to
    /// whatever else answers them, and the message is acknowledged (retrying would not help).
    func key(of tenant: Identifier, call: Identifier) async throws -> TelnyxAPIKey? {
        switch try await keys.access(of: tenant) {
        case .key(let key):
            return key
        case .noKey:
            control.metrics.skipped("no_api_key").increment()
            logger.warning("Telnyx call not steered: the tenant has no Telnyx API key (set telnyx_api_key)", metadata: ["tenant": "\(tenant)", "call": "\(call)"])
            return nil
        case .unknownTenant:
            control.metrics.skipped("unknown_tenant").increment()
            logger.warning("Telnyx call not steered: the tenant directory does not know the tenant", metadata: ["tenant": "\(tenant)", "call": "\(call)"])
            return nil
        }
    }
}

/// Tenants' Telnyx API keys, opened from the directory and kept in memory for a few seconds (a
/// conversation looks its tenant's key up at every turn).
final class TelnyxKeys: Sendable {
    private let directory: TenantDirectory
    private let ttl: Duration
    private let cache = Mutex<[Identifier: (access: TenantDirectory.TelnyxAccess, fetched: ContinuousClock.Instant)]>([:])

    init(directory: TenantDirectory, ttl: Duration = .seconds(5)) {
        self.directory = directory
        self.ttl = ttl
    }

    func access(of tenant: Identifier) async throws -> TenantDirectory.TelnyxAccess {
        let now = ContinuousClock.now
        if let hit = cache.withLock({ $0[tenant] }), now - hit.fetched < ttl { return hit.access }
        let access = try await directory.telnyxAccess(of: tenant)
        cache.withLock { cache in
            if cache.count >= 10_000 { cache.removeAll() }
            cache[tenant] = (access, now)
        }
        return access
    }
}
