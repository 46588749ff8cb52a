import Hummingbird
import NIOCore

/// The IP address of the client of the request being handled, for limits per client (failed
/// console sign-ins). The edge's server sets it for every request (``ClientAddressResponder``);
/// nil in process (the router tests), where every request counts as one client. Behind a reverse
/// proxy it is the proxy's address: the limit then holds for all clients together, never less.
enum ClientAddress {
    @TaskLocal static var current: String?
}

/// The edge's router behind a responder that knows the connection: it sets ``ClientAddress`` from
/// the channel's remote address, then answers with the router (whose handlers take a
/// `BasicRequestContext`, which keeps no channel).
struct ClientAddressResponder<Inner: HTTPResponder>: HTTPResponder where Inner.Context == BasicRequestContext {
    let inner: Inner

    func respond(to request: Request, context: ClientAddressRequestContext) async throws -> Response {
        try await ClientAddress.$current.withValue(context.address) {
            try await inner.respond(to: request, context: context.basic)
        }
    }
}

/// A request context made from the connection that keeps the client's address beside the
/// router's `BasicRequestContext`.
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
