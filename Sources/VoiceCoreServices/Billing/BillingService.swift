import Logging
import VoiceCoreBus
import VoiceCoreEvents
import VoiceCoreTenants
import VoiceCoreTime

/// The billing service (group `billing`): meters usage as ``UsageRecorded`` events.
///
/// - ``CallEnded`` of an answered call → `call_minutes`, rounded up per the tenant's plan
///   (``PlanRounding``), and `transcription_seconds` for the answered duration (every call is
///   transcribed in real time from its answer).
///   and one `ai_requests`: the AI service's summary of the call (updates of a summary after
///   late transcripts are not billed).
///
/// Usage ids are derived from the source event and meter, so a redelivered event is billed once
/// (and the billing projection stores each usage id once).
public struct BillingService: Sendable {
    public static let group = "billing"

    let emitter: Emitter
    let tenants: TenantProfiles

    public static func runner(_ dependencies: ServiceDependencies) async throws -> ConsumerGroupRunner {
        let service = BillingService(
            emitter: try await dependencies.emitter(group),
            tenants: dependencies.tenants)
        var handlers = MessageHandlers()
        handlers.aroundPartitionBatch(EffectBatch.scope(publisher: service.emitter.publisher))
        handlers.on(CallEnded.self) { message, ended in try await service.handle(ended, message) }
        return ConsumerGroupRunner(redis: dependencies.redis,
                                   configuration: dependencies.consumer(group, streams: dependencies.naming.streams(.calls, kind: .event), readInterval: ServiceDependencies.backgroundReadInterval),
                                   handlers: handlers, logger: dependencies.logger)
    }

    func handle(_ ended: CallEnded, _ message: ConsumedMessage) async throws {
        guard ended.answered, ended.durationSeconds > 0 else { return }
        let plan = try await tenants.profile(of: message.envelope.tenantID)?.plan ?? .starter
        let source = message.envelope.id
        try await record(UsageRecorded(meter: .callMinutes, quantity: PlanRounding.billedMinutes(seconds: ended.durationSeconds, plan: plan),
                                       callID: ended.callID, sourceEventID: source, sourceEventType: CallEnded.type, occurredAt: ended.endedAt),
                         tenant: message.envelope.tenantID)
        try await record(UsageRecorded(meter: .transcriptionSeconds, quantity: Double(ended.durationSeconds), callID: ended.callID,
                                       sourceEventID: source, sourceEventType: CallEnded.type, occurredAt: ended.endedAt),
                         tenant: message.envelope.tenantID)
        try await record(UsageRecorded(meter: .aiRequests, quantity: 1, callID: ended.callID, sourceEventID: source,
                                       sourceEventType: CallEnded.type, occurredAt: ended.endedAt),
                         tenant: message.envelope.tenantID)
    }

    func record(_ usage: UsageRecorded, tenant: Identifier) async throws {
        try await emitter.emit(usage, tenant: tenant, key: "usage:\(usage.usageID)", time: usage.occurredAt)
    }
}

/// How each plan rounds a call's duration into billed minutes.
public enum PlanRounding {
    /// The billing increment in seconds: starter per started minute, growth per started 30 s,
    /// enterprise per started 6 s.
    public static func increment(_ plan: Plan) -> Int {
        switch plan {
        case .starter: return 60
        case .growth: return 30
        case .enterprise: return 6
        }
    }

    /// `seconds` rounded up to the plan's increment, in minutes (0 for 0).
    public static func billedMinutes(seconds: Int, plan: Plan) -> Double {
        let step = increment(plan)
        let increments = (max(0, seconds) + step - 1) / step
        return Double(increments * step) / 60
    }
}
