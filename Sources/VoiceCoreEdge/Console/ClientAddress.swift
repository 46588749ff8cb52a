import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// The IP address of the client of the request being handled, for limits per client (failed
/// console sign-ins). The edge's server sets it for every request (``ClientAddressResponder``);
/// nil in process (the router tests), where every request counts as one client. Behind a reverse
/// proxy it is the proxy's address — the limit then holds for all clients together, never less —
/// unless the proxy is one of ``EdgeConfiguration/trustedProxies`` (``clientAddress(connection:forwardedFor:trusted:)``).
enum ClientAddress {
    @TaskLocal static var current: String?

    /// The client's address: the connection's, or, when the connection comes from a trusted
    /// proxy, the last address of `X-Forwarded-For` (all its lines, in order) that is not a
    /// trusted proxy itself — the one the nearest untrusted hop connected from. Entries a
    /// client may have written further left are never believed. A trusted proxy that names no
    /// such address stays the client.
    static func of(connection: String?, forwardedFor: [String], trusted: Set<String>) -> String? {
        guard let connection, trusted.contains(connection) else { return connection }
        let hops = forwardedFor.flatMap { $0.split(separator: ",") }.map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        return hops.last { !trusted.contains($0) } ?? connection
    }
}

/// The edge's router behind a responder that knows the connection: it sets ``ClientAddress`` from
/// the channel's remote address, then answers with the router (whose handlers take a
/// `BasicRequestContext`, which keeps no channel).
struct ClientAddressResponder<Inner: HTTPResponder>: HTTPResponder where Inner.Context == BasicRequestContext {
    let inner: Inner
    /// ``EdgeConfiguration/trustedProxies``.
    var trustedProxies: Set<String> = []

    func respond(to request: Request, context: ClientAddressRequestContext) async throws -> Response {
        let address = ClientAddress.of(connection: context.address, forwardedFor: request.headers[values: Self.forwardedFor], trusted: trustedProxies)
        return try await ClientAddress.$current.withValue(address) {
            try await inner.respond(to: request, context: context.basic)
        }
    }
}

/// A request context made from the connection that keeps the client's address beside the
/// router's `BasicRequestContext`.
extension ClientAddressResponder {
    static var forwardedFor: HTTPField.Name { HTTPField.Name("X-Forwarded-For")! }
}

struct ClientAddressRequestContext: RequestContext {
    var basic: BasicRequestContext
    let address: String?

    init(source: ApplicationRequestContextSource) {
        basic = BasicRequestContext(source: source)
        address = source.channel.remoteAddress?.ipAddress
    }

    var coreContext: CoreRequestContextStorage {
        get { basic.coreContext }
        set { basic.coreContext = newValue }
    }
}
