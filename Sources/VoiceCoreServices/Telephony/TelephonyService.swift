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
///
/// Why gather and transcription: Telnyx's `gather_using_speak` collects keys only; speech
/// comes from the call's transcription, whose webhooks carry the same `client_state`. The edge
/// turns whichever of `call.gather.ended` and a final `call.transcription` comes first into the
/// turn's ``ReportCallerTurn`` (one command id per turn, so the other is a duplicate).
/// (`gather_using_ai` would let Telnyx's own assistant run the dialogue, not the receptionist.)
///
/// Idempotent under redelivery: every command's `command_id` is a UUIDv5 of the call, the action
/// and the turn, and Telnyx ignores a command id it has seen on the call. A transfer, voicemail
/// or hang-up follows its `speak` once the reply has been said (Telnyx would cut it short
/// otherwise), timed from the reply's length: that follow-up waits in this process, and is lost
/// if the process stops meanwhile (the reply is still said; the caller hangs up).
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
    let logger: Logger

    public static func runner(_ dependencies: ServiceDependencies, directory: TenantDirectory, configuration: TelnyxConfiguration = .fromEnvironment(),
                              client: HTTPClient = .shared, metrics: TelephonyMetrics = TelephonyMetrics()) async throws -> ConsumerGroupRunner {
        let service = TelephonyService(
            control: TelnyxCallControl(configuration: configuration, client: client, metrics: metrics, logger: dependencies.logger),
            keys: TelnyxKeys(directory: directory), tenants: dependencies.tenants, configuration: configuration, logger: dependencies.logger)
        var handlers = MessageHandlers()
        handlers.on(CallStarted.self) { message, started in try await service.handle(started, message) }
        handlers.on(ReceptionistReplied.self) { message, reply in try await service.handle(reply, message) }
        let streams = dependencies.naming.streams(.calls, kind: .event) + dependencies.naming.streams(.conversations, kind: .event)
        // A caller waits on every message: no background read interval.
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
        // After a transfer, voicemail or hang-up no turn is awaited: what the caller says
        // meanwhile is no turn of the receptionist's.
        let closing = CallControlState.closing
        if reply.heard.contains(where: \.isLetter) {
            // A spoken turn: the turn's gather still waits for keys. Stopping it lets the next
            // prompt play at once; a gather already ended is refused (4xx), which is fine.
            try await send(CallControlCommand(action: "gather_stop", callControlID: id, commandID: Self.commandID(call: call, "gather_stop:\(turn)"),
                                              clientState: next), key: key, tenant: tenant, call: call, refusalExpected: true)
        }
        let followUp: CallControlCommand
        switch reply.action {
        case .continue:
            try await send(gather(call: call, callControlID: id, turn: turn + 1, prompt: reply.text), key: key, tenant: tenant, call: call)
            return
        case .transfer:
            guard let to = reply.transferTo else { return }  // validated: a transfer names its number
            followUp = CallControlCommand(action: "transfer", callControlID: id, commandID: Self.commandID(call: call, "transfer:\(turn)"),
                                          clientState: closing, fields: ["to": .string(to)])
        case .voicemail:
            followUp = CallControlCommand(action: "record_start", callControlID: id, commandID: Self.commandID(call: call, "record_start:\(turn)"),
                                          clientState: closing, fields: [
                                              "format": .string("mp3"), "channels": .string("single"), "recording_track": .string("inbound"),
                                              "play_beep": .bool(true), "max_length": .number("120"),
                                          ])
        case .hangup:
            followUp = CallControlCommand(action: "hangup", callControlID: id, commandID: Self.commandID(call: call, "hangup:\(turn)"), clientState: closing)
        }
        guard try await send(speak(call: call, callControlID: id, turn: turn, text: reply.text, clientState: closing), key: key, tenant: tenant, call: call) else { return }
        // On a task of its own: no partition waits while the caller listens.
        let delay = configuration.speakingTime(of: reply.text)
        Task { [self] in
            try? await Task.sleep(for: delay)
            do {
                try await send(followUp, key: key, tenant: tenant, call: call)
            } catch {
                logger.warning("Telnyx call control follow-up not sent", metadata: ["tenant": "\(tenant)", "call": "\(call)", "action": "\(followUp.action)", "error": "\(error)"])
            }
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
