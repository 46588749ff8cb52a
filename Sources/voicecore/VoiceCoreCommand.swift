import ArgumentParser
import Foundation
import Logging

/// Sets up logging, then runs the command line.
@main
enum Entry {
    static func main() async {
        VoiceCoreCommand.bootstrapLogging()
        await VoiceCoreCommand.main()
    }
}

/// A command that could not do what was asked, with the reason (exit status 1, no usage text).
struct CommandFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// The `voicecore` command line: composition only, no domain logic.
struct VoiceCoreCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "voicecore",
        abstract: "VoiceCore: the event bus of a multi-tenant AI virtual-receptionist platform.",
        discussion: """
            Connections come from the environment (REDIS_URL, DATABASE_URL); flags override it. \
            Without them, the local servers of `tools/dev-env start` are used.
            """,
        version: VoiceCoreVersion.current,
        subcommands: [VersionCommand.self, DoctorCommand.self, StreamsCommand.self, TailCommand.self, DeadLetterCommand.self, BenchCommand.self]
    )

    /// Logs go to stderr (stdout is for data), at VOICECORE_LOG_LEVEL (default info).
    static func bootstrapLogging() {
        let level = ProcessInfo.processInfo.environment["VOICECORE_LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
    }

}

enum VoiceCoreVersion {
    static let current = "0.1.0"
}
