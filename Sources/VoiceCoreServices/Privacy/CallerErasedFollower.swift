import Logging
import ServiceLifecycle
import Synchronization
import VoiceCoreBus
import VoiceCoreEvents

/// What this process's services remember of calls in memory: the write-through memories of
/// their per-call state (``StateStore``: a call's numbers, what the caller said, the dialogue so
/// far; up to 200,000 calls each). A `CallerErased` makes every one of them forget the erased
/// calls (``CallerErasedFollower``), so a service never answers from memory what the erasure
/// deleted from Redis, nor writes it back.
///
/// One per process, shared through ``ServiceDependencies/callMemory``: each service that keeps
/// per-call state registers its store when it is built.
public final class InMemoryCallState: Sendable {
    private let stores = Mutex<[StateStore]>([])

    public init() {}

    func register(_ store: StateStore) {
        stores.withLock { $0.append(store) }
    }

    /// Whether any service of this process keeps per-call state (else nothing needs to follow erasures).
    public var isEmpty: Bool { stores.withLock { $0.isEmpty } }

    /// Forgets these calls in every registered memory.
    /// - Returns: how many entries were dropped.
    @discardableResult
    public func forget(calls: [Identifier]) -> Int {
        let entities = Set(calls.map(\.description))
        return stores.withLock { $0 }.reduce(0) { $0 + $1.forget(entities: entities) }
    }

    /// Whether some service of this process remembers something of `call`.
    public func remembers(call: Identifier) -> Bool {
        stores.withLock { $0 }.contains { $0.remembers(entity: call.description) }
    }
}

/// Follows the tenants event streams in every process that runs services with per-call memory,
/// and on each `CallerErased` (`voicecore.privacy.caller-erased`) has ``InMemoryCallState`` forget
/// the erased calls.
///
/// ## Why not a consumer group
/// A consumer group hands each entry to one member, but every process (every instance of every
/// service) may remember a call: the one holding the call's partition now, and any that held it
/// before. So each process reads the streams itself (``StreamFollower``: plain `XREAD`, no state
/// in Redis, from where the streams stood at its start — a process started later remembers
/// nothing of an erased call). It reads once a second: a memory forgets within about a second of
/// the event. The erasure deleted the calls' state in Redis before it published the event and
/// waited for every group to have processed the calls' entries, so nothing about them is handled
/// meanwhile; what a late message would find in memory in that second is what the erasure of
/// late events (the privacy service) is for.
///
/// `PlatformServices.make` adds one to the services it makes whenever one of them registered a
/// memory (`voicecore up`, `voicecore consume`).
public struct CallerErasedFollower: Service {
    let dependencies: ServiceDependencies
    let interval: Duration

    public init(_ dependencies: ServiceDependencies, interval: Duration = .seconds(1)) {
        self.dependencies = dependencies
        self.interval = interval
    }

    public func run() async throws {
        let connection = try await dependencies.connect("erasures")
        let follower = StreamFollower(connection: connection, streams: dependencies.naming.streams(.tenants, kind: .event), interval: interval,
                                      logger: dependencies.logger)
        let memory = dependencies.callMemory
        let logger = dependencies.logger
        await cancelWhenGracefulShutdown {
            do {
                try await follower.run { events in
                    for event in events where event.type == CallerErased.type {
                        guard let erased = try? MessageCodec.decode(CallerErased.self, from: event.data) else {
                            logger.warning("a CallerErased that does not decode was skipped", metadata: ["event": "\(event.id)"])
                            continue
                        }
                        let dropped = memory.forget(calls: erased.callIDs)
                        logger.info("erased calls forgotten from memory",
                                    metadata: ["tenant": "\(event.tenantID)", "erasure": "\(erased.erasureID)", "entries": "\(dropped)"])
                    }
                }
            } catch {
                logger.error("erasures cannot be followed", metadata: ["error": "\(error)"])
            }
        }
        await connection.close()
    }
}
