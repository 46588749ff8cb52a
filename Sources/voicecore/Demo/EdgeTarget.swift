import Foundation

/// Where `voicecore loadgen` sends its webhooks: a plain-HTTP edge, by host, port and path prefix.
struct EdgeTarget: Sendable {
    var host: String
    var port: Int
    /// The edge URL's path, without a trailing slash ("" for none).
    var pathPrefix: String

    init(_ url: String) throws {
        guard let components = URLComponents(string: url), let host = components.host, !host.isEmpty else {
            throw CommandFailure("--edge-url \(url) is not a URL like http://127.0.0.1:8080")
        }
        guard components.scheme == "http" else {
            throw CommandFailure("--edge-url \(url): the load generator speaks plain HTTP to an edge on this machine or network; give an http:// URL (TLS belongs to the proxy in front of the edge)")
        }
        self.host = host
        self.port = components.port ?? 80
        self.pathPrefix = components.path.hasSuffix("/") ? String(components.path.dropLast()) : components.path
    }

    /// The Host header's value.
    var authority: String { port == 80 ? host : "\(host):\(port)" }
}
