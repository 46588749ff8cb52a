import ArgumentParser
import Foundation
import VoiceCoreBus
import VoiceCoreRedis

struct DeadLetterCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dlq",
        abstract: "Inspect, requeue and purge dead-lettered entries.",
        discussion: "Dead-letter streams are named <stream>:dlq:<group>; `voicecore dlq list` shows them.",
        subcommands: [List.self, Show.self, Requeue.self, Purge.self]
    )

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List dead-letter streams and how many entries each holds.")
        @OptionGroup var connections: ConnectionOptions
        @Option(help: "Stream key prefix.") var prefix = "vc"

        func run() async throws {
            let dlq = DeadLetters(connection: try await RedisClient.connect(try connections.redisConfiguration()))
            let streams = try await dlq.list(prefix: prefix)
            if streams.isEmpty { print("no dead letters under '\(prefix):'") }
            for (stream, length) in streams { print("\(stream)  \(length)") }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show a dead-letter stream's entries: reason, error, attempts, origin, message type and id.")
        @OptionGroup var connections: ConnectionOptions
        @Argument(help: "The dead-letter stream.") var stream: String
        @Option(help: "Entries to show.") var count = 20

        func run() async throws {
            let dlq = DeadLetters(connection: try await RedisClient.connect(try connections.redisConfiguration()))
            let entries = try await dlq.show(stream, count: count)
            if entries.isEmpty { print("\(stream) is empty") }
            for entry in entries {
                print("\(entry.id)  \(entry["type"] ?? "?")  event \(entry["id"] ?? "?")")
                print("  from \(entry["dlq.origin_stream"] ?? "?") \(entry["dlq.origin_id"] ?? "?"), group \(entry["dlq.group"] ?? "?"), \(entry["dlq.attempts"] ?? "?") attempts, at \(entry["dlq.time"] ?? "?")")
                print("  reason: \(entry["dlq.reason"] ?? "?")")
                print("  error: \(entry["dlq.error"] ?? "?")")
                if let requeues = entry[DeadLetters.requeueCountField] { print("  requeued before: \(requeues) times") }
            }
        }
    }

    struct Requeue: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Hand dead-lettered entries back to the consumer group that failed them, and to no other.",
            discussion: """
                Each entry moves, atomically, from the dead-letter stream to <origin>:retry:<group>, \
                which only that group reads (within its claim interval, 5 s by default): the shared \
                stream gets no new entry, so no other group handles it again. An entry requeued \
                twice is delivered once (the second finds it gone). Each requeue increments the \
                entry's dlq.requeues field; past --max-requeues it is refused unless --force, and \
                then nothing is requeued.
                """
        )
        @OptionGroup var connections: ConnectionOptions
        @Argument(help: "The dead-letter stream.") var stream: String
        @Option(help: "Entry id to requeue (repeatable); all entries when omitted.") var id: [String] = []
        @Option(help: "Requeues allowed per entry.") var maxRequeues = DeadLetters.defaultMaxRequeues
        @Flag(help: "Requeue even past --max-requeues.") var force = false

        func validate() throws {
            for text in id where StreamEntryID(text) == nil {
                throw ValidationError("'\(text)' is not a stream entry id (like 1700000000000-0)")
            }
        }

        func run() async throws {
            let ids = id.compactMap { StreamEntryID($0) }
            let dlq = DeadLetters(connection: try await RedisClient.connect(try connections.redisConfiguration()))
            let requeued = try await dlq.requeue(stream, ids: ids.isEmpty ? nil : ids, maxRequeues: maxRequeues, force: force)
            print("requeued \(requeued.count) entries")
            if !ids.isEmpty, requeued.count < ids.count {
                print("\(ids.count - requeued.count) of the given ids are not in \(stream) (requeued already, purged, or mistyped): nothing was done for them")
            }
        }
    }

    struct Purge: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete a dead-letter stream and its entries (asks for --yes).")
        @OptionGroup var connections: ConnectionOptions
        @Argument(help: "The dead-letter stream.") var stream: String
        @Flag(help: "Confirm the deletion.") var yes = false

        func validate() throws {
            guard stream.contains(":dlq:") else { throw ValidationError("'\(stream)' is not a dead-letter stream (<stream>:dlq:<group>)") }
        }

        func run() async throws {
            guard yes else {
                throw CommandFailure("purging deletes every entry of \(stream) for good; run again with --yes")
            }
            let dlq = DeadLetters(connection: try await RedisClient.connect(try connections.redisConfiguration()))
            print("purged \(try await dlq.purge(stream)) entries")
        }
    }
}
