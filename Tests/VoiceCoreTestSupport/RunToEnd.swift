import Foundation

/// Runs a program to its end with posix_spawn and waitpid and returns what it printed (stdout and
/// stderr); throws, with that output, when it exits non-zero. Not Foundation's `Process`: on
/// Linux it waits for the output the child inherits, and the servers `tools/dev-env` starts keep
/// that open, so it would never see the script end.
public func runToEnd(_ executable: String, _ arguments: [String], environment: [String: String] = [:]) throws -> String {
    let log = FileManager.default.temporaryDirectory.appendingPathComponent("vc-run-\(UUID().uuidString)").path
    defer { unlink(log) }
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    posix_spawn_file_actions_adddup2(&actions, 1, 2)
    let argv = ([executable] + arguments).map { strdup($0) } + [nil]
    let merged = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    let envp = merged.map { strdup("\($0.key)=\($0.value)") } + [nil]
    defer { (argv + envp).forEach { free($0) } }
    var pid: pid_t = 0
    let spawned = posix_spawn(&pid, executable, &actions, nil, argv, envp)
    guard spawned == 0 else { throw TestServerError(description: "cannot start \(executable): errno \(spawned)") }
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
    let exited = status & 0x7f == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    guard exited == 0 else {
        throw TestServerError(description: "\(executable) \(arguments.joined(separator: " ")) exited with \(exited): \(text)")
    }
    return text
}
