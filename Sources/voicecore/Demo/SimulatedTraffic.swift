import Foundation
import AsyncHTTPClient
import NIOCore
import VoiceCoreEdge
import VoiceCoreEvents
import VoiceCoreTenants

/// A tenant whose Twilio credentials the demo and the load generator sign with.
struct TwilioTenant {
    var id: Identifier
    var accountSID: String
    var authToken: String

    /// `tenant`, or the first tenant with Twilio credentials; an error says what to do without one.
    static func find(_ tenant: Identifier?, in directory: TenantDirectory) async throws -> TwilioTenant {
        let id: Identifier
        if let tenant {
            id = tenant
        } else {
            guard let first = try await directory.list().first(where: \.hasTwilioAuthToken) else {
                throw CommandFailure("no tenant with Twilio credentials: run `voicecore up` (it provisions a demo tenant) or `voicecore tenants add --twilio-account-sid … --twilio-auth-token -`")
            }
            id = first.id
        }
        guard let credentials = try await directory.credentials(of: id), let token = credentials.twilioAuthToken, let account = credentials.twilioAccountSID else {
            throw CommandFailure("tenant \(id) has no Twilio account SID and auth token: add them with `voicecore tenants rotate \(id) --twilio-account-sid … --twilio-auth-token -`")
        }
        return TwilioTenant(id: id, accountSID: account, authToken: String(decoding: token, as: UTF8.self))
    }
}

extension SimulatedWebhook {
    /// The POST Twilio would make, to the edge at `base`.
    func request(to base: String) -> HTTPClientRequest {
        var request = HTTPClientRequest(url: (base.hasSuffix("/") ? String(base.dropLast()) : base) + path)
        request.method = .POST
        for header in headers { request.headers.add(name: header.name, value: header.value) }
        request.body = .bytes(ByteBuffer(string: body))
        return request
    }
}

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
