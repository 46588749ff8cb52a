import ArgumentParser
import Foundation
import Logging

/// The `voicecore` command line: composition only, no domain logic.
@main
struct VoiceCoreCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "voicecore",
        abstract: "VoiceCore: the event bus of a multi-tenant AI virtual-receptionist platform.",
        discussion: """
            Connections come from the environment (REDIS_URL, DATABASE_URL); flags override it. \
            Without them, the local servers of `tools/dev-env start` are used.
            """,
        version: VoiceCoreVersion.current,
        subcommands: [VersionCommand.self, DoctorCommand.self, TailCommand.self, BenchCommand.self]
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

    static func main() async {
        bootstrapLogging()
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            exit(withError: error)
        }
    }
}

enum VoiceCoreVersion {
    static let current = "0.1.0"
}
