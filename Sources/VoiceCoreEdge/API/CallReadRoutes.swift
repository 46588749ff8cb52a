import Hummingbird
import VoiceCoreEvents
import VoiceCoreQueries

/// The calls of the read API: `GET /v1/calls` (a page of calls, newest first, filtered) and
/// `GET /v1/calls/{call}` (one call whole), and their mirrors under `/admin/tenants/{tenant}`.
/// The SQL is ``CallQueries``'s; the JSON is built by Postgres and passed through.
extension Edge {
    /// The query parameters of `GET /v1/calls`.
    static let callListParameters: Set<String> = ["from", "to", "status", "intent", "direction", "number", "cursor", "limit"]

    func addCallReadRoutes(to router: Router<BasicRequestContext>) {
        addReadRoute(router, "/calls", parameters: Self.callListParameters) { read in
            let query = read.query
            let filter = CallFilter(
                from: try query.timestamp("from"), to: try query.timestamp("to"),
                status: try query.oneOf("status", CallQueries.statuses),
                intent: try query.enumeration(Intent.self, "intent")?.rawValue,
                direction: try query.enumeration(CallDirection.self, "direction")?.rawValue,
                number: try query.e164("number"))
            if let from = filter.from, let to = filter.to, from > to {
                throw QueryParameters.malformed("from", "is after to (\(from) > \(to))")
            }
            let limit = try query.limit(default: 50, maximum: 200)
            let cursor = try query.cursor(list: CallQueries.cursorList, count: CallQueries.cursorValues, isKeyset: CallQueries.isKeyset)
            let tenant = read.tenant
            let page = try await read.reads.read(tenant: tenant) { db in
                try CallQueries.list(db, tenant: tenant, filter: filter, after: cursor, limit: limit)
            }
            return Self.jsonOK(page.json)
        }

        addReadRoute(router, "/calls/{call}", parameters: []) { read in
            let call = try read.identifier("call", what: "call")
            let tenant = read.tenant
            guard let detail = try await read.reads.read(tenant: tenant, { db in try CallQueries.detail(db, tenant: tenant, call: call) }) else {
                throw Self.notFound("call")
            }
            return Self.jsonOK(detail)
        }
    }
}
