import ArgumentParser

struct VersionCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "version",
        abstract: "Print the VoiceCore version."
    )

    func run() {
        print("voicecore \(VoiceCoreVersion.current)")
    }
}
