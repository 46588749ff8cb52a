import ArgumentParser
import Foundation
import Logging
import ServiceLifecycle
import UnixSignals
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
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var handlers = MessageHandlers()
        handlers.onAny { message in
            var bytes = try encoder.encode(TailLine(message))
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

/// One entry as `tail` prints it: where it is, what it is, and its data as JSON (as text when the
/// data is not JSON).
struct TailLine: Encodable {
    var stream: String
    var entry: String
    var type: String
    var subject: String
    var tenantid: String
    var deliveries: Int
    var data: TailJSON

    init(_ message: ConsumedMessage) {
        stream = message.stream
        entry = message.entryID.description
        type = message.envelope.type
        subject = message.envelope.subject
        tenantid = message.envelope.tenantID.description
        deliveries = message.deliveryCount
        // An object or an array as JSON; anything else (not JSON, or a bare value) as its text.
        switch try? JSONDecoder().decode(TailJSON.self, from: Data(message.envelope.data)) {
        case let value? where value.isContainer: data = value
        default: data = .string(String(decoding: message.envelope.data, as: UTF8.self))
        }
    }
}

/// Any JSON value, read and written back through Codable (so `tail` prints an entry's data with
/// its keys sorted, whatever its type).
enum TailJSON: Codable {
    case null
    case bool(Bool)
    case integer(Int64)
    case number(Double)
    case string(String)
    case array([TailJSON])
    case object([String: TailJSON])

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(Int64.self) {
            self = .integer(value)
        } else if let value = try? container.decode(Double.self) {
            self = .number(value)
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode([TailJSON].self) {
            self = .array(value)
        } else {
            self = .object(try container.decode([String: TailJSON].self))
        }
    }

    var isContainer: Bool {
        switch self {
        case .array, .object: true
        default: false
        }
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case .bool(let value): try container.encode(value)
        case .integer(let value): try container.encode(value)
        case .number(let value): try container.encode(value)
        case .string(let value): try container.encode(value)
        case .array(let value): try container.encode(value)
        case .object(let value): try container.encode(value)
        }
    }
}
