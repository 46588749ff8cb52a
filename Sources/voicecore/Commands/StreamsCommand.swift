import ArgumentParser
import Foundation
import VoiceCoreBus
import VoiceCoreEvents
import VoiceCoreProjections
import VoiceCoreRedis

struct StreamsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "streams",
        abstract: "Show every stream with its length, each consumer group's lag, pending entries and consumers, and what retention is held back.",
        discussion: """
            Lists the streams under --prefix (dead-letter streams included). Per group: lag (entries \
            not yet delivered), pending (delivered, not acknowledged), the oldest pending entry's idle \
            time, and each consumer's pending count and idle time. Per command and event stream: its \
            retention, the trim the retention trimmer would make now, and what is held back beyond \
            the retention because a group (or a projection, by its checkpoint in Postgres) has not \
            processed it; a group with no consumer seen for the abandonment time \
            (VOICECORE_RETENTION_ABANDON_AFTER_SECONDS, 7 days) is marked ABANDONED and holds nothing \
            back. Reading trims nothing. --json prints the same as JSON.
            """
    )

    @OptionGroup var connections: ConnectionOptions

    @Option(help: "Stream key prefix.")
    var prefix = "vc"

    @Option(help: "Partitions per category (must match the deployment).")
    var partitions = 16

    @Flag(help: "Print JSON instead of a table.")
    var json = false

    func run() async throws {
        guard partitions > 0 else { throw ValidationError("--partitions must be at least 1") }
        let naming = StreamNaming(partitions: partitions, prefix: prefix)
        let retention: RetentionConfiguration
        do {
            retention = try RetentionConfiguration.fromEnvironment(naming: naming)
        } catch let error as RetentionConfigurationError {
            throw ValidationError(error.description)
        }
        // The projector's checkpoints count; without Postgres its groups show as holding everything.
        var readers: [any ReaderProgressSource] = []
        let checkpoints = ProjectionCheckpointProgress(projections: StandardProjections.all, naming: naming, postgres: try connections.postgresConfiguration())
        do {
            _ = try await checkpoints.progress()
            readers.append(checkpoints)
        } catch {
            FileHandle.standardError.write(Data("note: projection checkpoints not read (\(error)); projector groups are shown holding their whole streams\n".utf8))
        }
        let admin = StreamAdmin(connection: try await RedisClient.connect(try connections.redisConfiguration()))
        let reports = try await admin.reports(prefix: prefix, retention: retention, readers: readers)
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
        func age(_ seconds: Double) -> String { seconds >= 3600 ? String(format: "%.1f h", seconds / 3600) : String(format: "%.0f s", seconds) }
        print(pad("STREAM", 34) + pad("LENGTH", 9) + pad("FIRST", 17) + "LAST")
        for report in reports {
            print(pad(report.stream, 34) + pad(String(report.length), 9) + pad(report.firstID ?? "-", 17) + (report.lastID ?? "-"))
            let readers = Dictionary(report.retention?.readers.map { ($0.group, $0) } ?? [], uniquingKeysWith: { first, _ in first })
            for group in report.groups {
                let idle = group.oldestPendingIdleMs.map { "\($0) ms" } ?? "-"
                var line = "  group \(group.name): lag \(group.lag.map(String.init) ?? "?"), pending \(group.pending), oldest pending idle \(idle)"
                if let reader = readers[group.name] {
                    line += ", keeps from \(reader.keepsFrom)" + (reader.source == .checkpoints ? " (checkpoints)" : reader.source == .unknown ? " (checkpoints unknown)" : "")
                    if reader.abandoned {
                        line += ", ABANDONED (no consumer seen for \(age(reader.lastSeenSeconds ?? 0))): holds nothing back"
                    } else if reader.heldBackSeconds > 0 {
                        line += ", holds retention back \(age(reader.heldBackSeconds))"
                    }
                }
                print(line)
                for consumer in group.consumers {
                    print("    consumer \(consumer.name): pending \(consumer.pending), idle \(consumer.idleMs) ms")
                }
            }
            if let status = report.retention {
                var line = "  retention \(status.retention): trim \(status.trim ?? "none")"
                if status.heldBackEntries > 0 || status.heldBackSeconds > 0 {
                    line += "; held back \(status.heldBackEntriesIsLowerBound ? "≥" : "")\(status.heldBackEntries) entries"
                    if status.heldBackSeconds > 0 { line += ", \(age(status.heldBackSeconds)) beyond the bound" }
                } else {
                    line += "; nothing held back"
                }
                print(line)
            }
        }
    }
}
