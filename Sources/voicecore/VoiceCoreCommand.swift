import ArgumentParser

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
        subcommands: [VersionCommand.self, DoctorCommand.self, BenchCommand.self]
    )
}

enum VoiceCoreVersion {
    static let current = "0.1.0"
}
