import ArgumentParser
import Foundation
import VoiceCoreEdge

/// `--probe-port` / `--probe-host`: where a process that serves no HTTP of its own (`consume`,
/// `project`) answers `/health`, `/ready` and `/metrics`. Off unless a port is given: several such
/// processes often share a host, and a default port would make the second one fail to start.
struct ProbeOptions: ParsableArguments {
    @Option(name: .customLong("probe-port"),
            help: "Serve GET /health, /ready and /metrics on this port (default: $VOICECORE_PROBE_PORT; neither set: no listener; 0: any free port, logged).")
    var probePort: Int?

    @Option(name: .customLong("probe-host"),
            help: "Address the probe listener binds (default: $VOICECORE_PROBE_HOST, else 127.0.0.1; 0.0.0.0 to be probed from outside the host or container).")
    var probeHost: String?

    /// Where to listen; nil when no port is configured.
    func configuration() throws -> ProbeConfiguration? {
        let environment = ProcessInfo.processInfo.environment
        let port: Int
        if let probePort {
            port = probePort
        } else if let text = environment["VOICECORE_PROBE_PORT"], !text.isEmpty {
            guard let number = Int(text) else { throw ValidationError("VOICECORE_PROBE_PORT must be a port number, 0…65535 (got \"\(text)\")") }
            port = number
        } else {
            return nil
        }
        guard (0...65535).contains(port) else { throw ValidationError("--probe-port (or VOICECORE_PROBE_PORT) must be 0…65535 (0: any free port), got \(port)") }
        let host = probeHost ?? environment["VOICECORE_PROBE_HOST"].flatMap { $0.isEmpty ? nil : $0 } ?? "127.0.0.1"
        return ProbeConfiguration(host: host, port: port)
    }
}
