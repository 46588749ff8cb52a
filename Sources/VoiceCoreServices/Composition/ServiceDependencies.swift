import Logging
import VoiceCoreBus
import VoiceCoreEvents

/// What every service is built from: where the streams are, how to publish, where to keep state,
/// what to know about tenants.
public struct ServiceDependencies: Sendable {
    public var redis: RedisConfiguration
    public var naming: StreamNaming
    public var tenants: TenantProfiles
    /// This process's name within each consumer group (stable across restarts).
    public var instance: String
    public var logger: Logger
    /// What this process's services remember of calls, forgotten when a caller is erased
    /// (``CallerErasedFollower``): shared by every copy of these dependencies.
    public let callMemory = InMemoryCallState()

    public init(redis: RedisConfiguration, naming: StreamNaming, tenants: TenantProfiles, instance: String, logger: Logger = Logger(label: "voicecore.services")) {
        self.redis = redis
        self.naming = naming
        self.tenants = tenants
        self.instance = instance
        self.logger = logger
    }

    func consumer(_ group: String, streams: [String], readInterval: Duration? = Self.liveReadInterval) -> ConsumerConfiguration {
        ConsumerConfiguration(group: group, streams: streams, consumer: "\(instance)-\(group)", readInterval: readInterval)
    }

    /// How often services a caller may wait on (calls, telephony, tenants) read a busy stream. A read that blocks costs Redis the registration of every stream it lists, and under
    /// load a reader with no interval blocks again after nearly every entry: `voicecore up` at
    /// 800 webhooks/s spent over 60 % of Redis's command time in such reads. Spaced 5 ms apart they
    /// return more entries each and seldom block. An entry on a quiet stream is still read at once
    /// (the interval counts from the last read's start, and that read is already waiting), so a
    /// caller waits at most 5 ms more per hop, and only under load. The receptionist reads with no
    /// interval: every entry it reads is a caller's turn waiting for its answer (`voicecore bench
    /// turn` at 50 calls: +5.7 ms p99 with 5 ms, over its 5 ms target), and its stream carries
    /// nothing else, so it wakes only for those.
    static let liveReadInterval: Duration = .milliseconds(5)

    /// How often services that no caller waits on (billing, CRM) read a busy
    /// stream: they skip most of the call stream's entries (transcript chunks above all), and
    /// reading them every 50 ms instead of at every entry spares Redis most of their reads.
    static let backgroundReadInterval: Duration = .milliseconds(50)

    /// The service's publisher (its own connection, source `/services/<group>`), deduplicating.
    func emitter(_ group: String) async throws -> Emitter {
        Emitter(publisher: Publisher(connection: try await connect("\(group)-publisher"),
                                     configuration: PublisherConfiguration(source: "/services/\(group)", naming: naming)))
    }

    /// A per-call state store on `connection` whose memory forgets erased callers (registered in
    /// ``callMemory``).
    func stateStore(_ connection: BusConnection, ttl: Duration = .seconds(7 * 86_400)) -> StateStore {
        let store = StateStore(connection: connection, ttl: ttl)
        callMemory.register(store)
        return store
    }

    /// A connection of the service's own, named `vc-service:<role>:<instance>` in `CLIENT LIST`.
    func connect(_ role: String) async throws -> BusConnection {
        // Redis refuses spaces in a client name.
        let name = String("vc-service:\(role):\(instance)".map { $0 == " " ? "_" : $0 })
        return try await BusConnection.connect(redis, name: name, logger: logger)
    }
}
