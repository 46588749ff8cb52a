import ArgumentParser
import Foundation
import Logging
import ServiceLifecycle
import VoiceCoreBus
import VoiceCoreEvents
import VoiceCoreRedis

struct TailCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tail",
        abstract: "Follow streams as a consumer group and print each entry as a JSON line.",
        discussion: """
            Reads every partition of the chosen category as member --consumer of group --group, \
            prints one JSON object per entry on stdout (stream, entry id, type, subject, tenant, \
            delivery count, data) and acknowledges it after printing, so a killed tail loses nothing: \
            restarted with the same consumer name it prints its unacknowledged entries again. Stops \
            gracefully on SIGTERM or SIGINT. Logs go to stderr.
            """
    )

    @OptionGroup var connections: ConnectionOptions

    @Option(help: "Consumer group (created at the start of the streams when missing).")
    var group = "tail"

    @Option(help: "Consumer name within the group (stable across restarts).")
    var consumer = "tail-\(ProcessInfo.processInfo.hostName)"

    @Option(help: "Stream category: calls, crm, billing or tenants.")
    var category = "calls"

    @Flag(help: "Read the command streams instead of the event streams.")
    var commands = false

    @Option(help: "Partitions per category (must match the deployment).")
    var partitions = 16

    @Option(help: "Stream key prefix (must match the deployment).")
    var prefix = "vc"

    @Option(help: "Entries read per stream per XREADGROUP.")
    var batchSize = 256

    func run() async throws {
        guard let category = StreamCategory(rawValue: category) else {
            throw ValidationError("unknown category '\(category)': use calls, crm, billing or tenants")
        }
        let naming = StreamNaming(partitions: partitions, prefix: prefix)
        var configuration = ConsumerConfiguration(group: group, streams: naming.streams(category, kind: commands ? .command : .event), consumer: consumer)
        configuration.batchSize = batchSize
        configuration.block = .milliseconds(500)
        let output = FileHandle.standardOutput
        var handlers = MessageHandlers()
        handlers.onAny { message in
            var line: [String: Any] = [
                "stream": message.stream, "entry": message.entryID.description, "type": message.envelope.type,
                "subject": message.envelope.subject, "tenantid": message.envelope.tenantID.description,
                "deliveries": message.deliveryCount,
            ]
            line["data"] = (try? JSONSerialization.jsonObject(with: Data(message.envelope.data))) ?? String(decoding: message.envelope.data, as: UTF8.self)
            var bytes = try JSONSerialization.data(withJSONObject: line, options: [.sortedKeys, .withoutEscapingSlashes])
            bytes.append(10)
            try output.write(contentsOf: bytes)
        }
        let logger = Logger(label: "voicecore.tail")
        let runner = ConsumerGroupRunner(redis: try connections.redisConfiguration(), configuration: configuration, handlers: handlers, logger: logger)
        let serviceGroup = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: [.init(service: runner)], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await serviceGroup.run()
    }
}
