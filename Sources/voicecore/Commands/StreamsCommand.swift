import ArgumentParser
import Foundation
import VoiceCoreBus
import VoiceCoreRedis

struct StreamsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "streams",
        abstract: "Show every stream with its length and each consumer group's lag, pending entries and consumers.",
        discussion: """
            Lists the streams under --prefix (dead-letter streams included). Per group: lag (entries \
            not yet delivered), pending (delivered, not acknowledged), the oldest pending entry's idle \
            time, and each consumer's pending count and idle time. --json prints the same as JSON.
            """
    )

    @OptionGroup var connections: ConnectionOptions

    @Option(help: "Stream key prefix.")
    var prefix = "vc"

    @Flag(help: "Print JSON instead of a table.")
    var json = false

    func run() async throws {
        let admin = StreamAdmin(connection: try await RedisClient.connect(try connections.redisConfiguration()))
        var reports: [StreamAdmin.StreamReport] = []
        for stream in try await admin.streams(prefix: prefix) { reports.append(try await admin.report(stream)) }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            print(String(decoding: try encoder.encode(reports), as: UTF8.self))
            return
        }
        if reports.isEmpty {
            print("no streams under '\(prefix):'")
            return
        }
        func pad(_ text: String, _ width: Int) -> String { text.count >= width ? text + " " : text + String(repeating: " ", count: width - text.count) }
        print(pad("STREAM", 34) + pad("LENGTH", 9) + pad("FIRST", 17) + "LAST")
        for report in reports {
            print(pad(report.stream, 34) + pad(String(report.length), 9) + pad(report.firstID ?? "-", 17) + (report.lastID ?? "-"))
            for group in report.groups {
                let idle = group.oldestPendingIdleMs.map { "\($0) ms" } ?? "-"
                print("  group \(group.name): lag \(group.lag.map(String.init) ?? "?"), pending \(group.pending), oldest pending idle \(idle)")
                for consumer in group.consumers {
                    print("    consumer \(consumer.name): pending \(consumer.pending), idle \(consumer.idleMs) ms")
                }
            }
        }
    }
}
