import ArgumentParser
import Foundation
import Logging
import VoiceCoreBus
import VoiceCoreEdge
import VoiceCoreEvents

/// The live event feed's limits (`GET /v1/events`), shared by `edge` and `up`. Flags override
/// `VOICECORE_EVENTS_PER_TENANT`, `VOICECORE_EVENTS_QUEUE` and `VOICECORE_EVENTS_HEARTBEAT`.
struct EventFeedOptions: ParsableArguments {
    @Option(name: .customLong("events-per-tenant"),
            help: "Open event feed connections one tenant may hold; the next is answered 429 (default: $VOICECORE_EVENTS_PER_TENANT, else 100).")
    var perTenant: Int?

    @Option(name: .customLong("events-queue"),
            help: "Events that may wait for one feed connection; a client that falls this far behind is disconnected (default: $VOICECORE_EVENTS_QUEUE, else 1024).")
    var queue: Int?

    @Option(name: .customLong("events-heartbeat"),
            help: "Seconds between the heartbeat comments every feed connection gets (default: $VOICECORE_EVENTS_HEARTBEAT, else 15).")
    var heartbeat: Double?

    func configuration() throws -> EventFeedConfiguration {
        let environment = ProcessInfo.processInfo.environment
        func number(_ flag: Double?, _ name: String, _ variable: String, default defaultValue: Double, range: ClosedRange<Double>) throws -> Double {
            let value: Double
            if let flag {
                value = flag
            } else if let text = environment[variable], !text.isEmpty {
                guard let parsed = Double(text) else { throw ValidationError("\(variable) must be a number, not '\(text)'") }
                value = parsed
            } else {
                value = defaultValue
            }
            guard range.contains(value) else { throw ValidationError("--\(name) (or \(variable)) must be \(range.lowerBound)…\(range.upperBound)") }
            return value
        }
        let perTenant = try number(perTenant.map(Double.init), "events-per-tenant", "VOICECORE_EVENTS_PER_TENANT", default: 100, range: 1...100_000)
        let queue = try number(queue.map(Double.init), "events-queue", "VOICECORE_EVENTS_QUEUE", default: 1024, range: 1...1_000_000)
        let heartbeat = try number(heartbeat, "events-heartbeat", "VOICECORE_EVENTS_HEARTBEAT", default: 15, range: 0.01...3600)
        guard perTenant == perTenant.rounded(), queue == queue.rounded() else {
            throw ValidationError("--events-per-tenant and --events-queue are whole numbers")
        }
        return EventFeedConfiguration(connectionsPerTenant: Int(perTenant), queueFrames: Int(queue), heartbeat: .milliseconds(Int64(heartbeat * 1000)))
    }

    /// The feed, tailing every event stream of `naming` on connections of its own.
    func eventFeed(_ connections: ConnectionOptions, naming: StreamNaming, logger: Logger) async throws -> EventFeed {
        let configuration = try configuration()
        let streams = StreamCategory.allCases.flatMap { naming.streams($0, kind: .event) }
        let tail = try await StreamTail.connect(try connections.redisConfiguration(), clientName: "vc-edge:feed",
                                                configuration: StreamTail.Configuration(streams: streams), logger: Logger(label: "voicecore.edge.feed"))
        logger.info("live event feed", metadata: ["streams": "\(streams.count)", "per_tenant": "\(configuration.connectionsPerTenant)",
                                                  "queue": "\(configuration.queueFrames)", "heartbeat": "\(configuration.heartbeat)"])
        return EventFeed(tail: tail, naming: naming, configuration: configuration, logger: Logger(label: "voicecore.edge.feed"))
    }
}
