import ArgumentParser
import Foundation
import Logging

/// Sets up logging, then runs the command line.
@main
enum Entry {
    static func main() async {
        tuneAllocator()
        VoiceCoreCommand.bootstrapLogging()
        await VoiceCoreCommand.main()
    }

    /// Turns off glibc's fastbins. Stream reads allocate and free hundreds of thousands of small
    /// blocks per batch (hiredis reply objects, Swift arrays); with fastbins, each larger allocation
    /// then consolidates them all (`malloc_consolidate` took a third of a consumer's time).
    /// Measured with `voicecore bench consume`: 62k → 87k events/s. `GLIBC_TUNABLES` still wins.
    static func tuneAllocator() {
        #if os(Linux)
        // `mallopt` lives in <malloc.h>, which Swift's Glibc module does not import; M_MXFAST is 1.
        guard ProcessInfo.processInfo.environment["GLIBC_TUNABLES"] == nil,
              let process = dlopen(nil, RTLD_NOW), let symbol = dlsym(process, "mallopt") else { return }
        typealias Mallopt = @convention(c) (Int32, Int32) -> Int32
        _ = unsafeBitCast(symbol, to: Mallopt.self)(1, 0)
        #endif
    }
}

/// Prints and flushes at once: stdout is block-buffered into a pipe or file, and what `up`,
/// `demo` and `loadgen` report must show up while they run.
func say(_ text: String) {
    print(text)
    fflush(nil)
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
        subcommands: [VersionCommand.self, DoctorCommand.self, MigrateCommand.self, StreamsCommand.self, TailCommand.self, DeadLetterCommand.self, ProjectCommand.self, ProjectionsCommand.self, ReplayCommand.self, EdgeCommand.self, TenantsCommand.self, PrivacyCommand.self, ConsumeCommand.self, UpCommand.self, DemoCommand.self, LoadgenCommand.self, BenchCommand.self]
    )

    /// Logs go to stderr (stdout is for data), at VOICECORE_LOG_LEVEL (default info).
    static func bootstrapLogging() {
        let level = ProcessInfo.processInfo.environment["VOICECORE_LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)) ?? .info
        LoggingSystem.bootstrap { label in StandardErrorLogHandler(label: label, level: level) }
    }

}

enum VoiceCoreVersion {
    static let current = "0.1.0"
}
