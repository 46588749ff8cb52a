import Foundation

/// Where the demo finds the tenant's API key to read its call back: `--api-key`, else
/// `$VOICECORE_API_KEY`, else the file `voicecore up` stored the demo tenant's key in
/// (`$VOICECORE_DEMO_API_KEY_FILE`; tools/dev-env sets it to .local/demo-api.key).
enum DemoAPIKey {
    static let fileVariable = "VOICECORE_DEMO_API_KEY_FILE"

    /// The key and where it came from (for an error that says which key was refused), or nil.
    static func resolve(_ option: String?, environment: [String: String] = ProcessInfo.processInfo.environment) -> (key: String, source: String)? {
        if let option, !option.isEmpty { return (option, "--api-key") }
        if let key = environment["VOICECORE_API_KEY"], !key.isEmpty { return (key, "$VOICECORE_API_KEY") }
        if let path = environment[fileVariable], !path.isEmpty,
           let text = try? String(contentsOfFile: path, encoding: .utf8) {
            let key = text.trimmingCharacters(in: .whitespacesAndNewlines)
            if !key.isEmpty { return (key, path) }
        }
        return nil
    }

    /// Writes `key` to `path`, readable and writable by this user only (it grants the tenant's API).
    static func store(_ key: String, at path: String) throws {
        let url = URL(fileURLWithPath: path)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try? FileManager.default.removeItem(at: url)
        guard FileManager.default.createFile(atPath: path, contents: Data((key + "\n").utf8), attributes: [.posixPermissions: 0o600]) else {
            throw CommandFailure("could not write the demo tenant's API key to \(path)")
        }
    }
}
