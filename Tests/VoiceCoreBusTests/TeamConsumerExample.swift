import Logging
import ServiceLifecycle
import UnixSignals
import VoiceCoreBus
import VoiceCoreEvents

// BEGIN team consumer example
/// A team's own consumer: counts finished calls per tenant. Imports VoiceCoreBus and
/// VoiceCoreEvents, nothing else of ours (the bus provides the connection settings).
func runCallCounter(redisURL: String, prefix: String = "vc", onCount: @escaping @Sendable (Identifier, Int) -> Void) async throws {
    let naming = StreamNaming(partitions: 16, prefix: prefix)
    let counts = CallCounts()
    var handlers = MessageHandlers()
    handlers.on(CallEnded.self) { message, ended in
        // At-least-once: count each event id once.
        let total = await counts.add(tenant: message.envelope.tenantID, event: message.envelope.id)
        onCount(message.envelope.tenantID, total)
    }
    let consumer = ConsumerGroupRunner(
        redis: try RedisConfiguration(url: redisURL),
        configuration: ConsumerConfiguration(group: "call-counter", streams: naming.streams(.calls, kind: .event)),
        handlers: handlers)
    try await ServiceGroup(configuration: .init(services: [.init(service: consumer)], gracefulShutdownSignals: [.sigterm], logger: Logger(label: "call-counter"))).run()
}

actor CallCounts {
    private var seen: Set<Identifier> = []
    private var perTenant: [Identifier: Int] = [:]
    func add(tenant: Identifier, event: Identifier) -> Int {
        if seen.insert(event).inserted { perTenant[tenant, default: 0] += 1 }
        return perTenant[tenant, default: 0]
    }
}
// END team consumer example
