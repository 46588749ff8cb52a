import HTTPTypes
import Hummingbird
import VoiceCoreEvents

/// The id the edge gives each request: a UUIDv7, answered in `X-Request-Id` on every response
/// (errors included), and the id under which the request's change is recorded in the audit trail
/// (`audit_logs.request_id`). A command the tenant API publishes carries it as its id, so for an
/// accepted command it equals `command_id`.
///
/// Always made here, never taken from the client: a client-chosen id could collide with another
/// request's on purpose and keep that change out of the trail (the trail records one row per id).
struct RequestIDMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let id = Identifier.v7()
        do {
            var response = try await RequestID.$current.withValue(id) { try await next(request, context) }
            response.headers[.requestID] = id.description
            return response
        } catch let error as any HTTPResponseError {
            var response = try error.response(from: request, context: context)
            response.headers[.requestID] = id.description
            return response
        }
    }
}

/// The current request's id (see ``RequestIDMiddleware``), where its handler runs.
enum RequestID {
    @TaskLocal static var current: Identifier?

    /// The id of the request being handled. Every route runs behind ``RequestIDMiddleware``; off
    /// it (code calling a handler directly) a fresh id stands in.
    static var ofCurrentRequest: Identifier { current ?? .v7() }
}

extension HTTPField.Name {
    static let requestID = Self("X-Request-Id")!
}
