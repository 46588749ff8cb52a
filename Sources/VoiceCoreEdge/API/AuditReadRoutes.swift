import Hummingbird
import VoiceCoreEvents
import VoiceCoreQueries
import VoiceCoreTenants

/// The audit trail of the read API: `GET /v1/audit` (the tenant's changes, newest first, filtered)
/// and its mirror `GET /admin/tenants/{tenant}/audit`. The SQL is ``AuditQueries``'s; the JSON is
/// built by Postgres and passed through.
extension Edge {
    /// The query parameters of `GET /v1/audit`.
    static let auditListParameters: Set<String> = ["from", "to", "action", "actor", "request_id", "cursor", "limit"]

    func addAuditReadRoutes(to router: Router<BasicRequestContext>) {
        addReadRoute(router, "/audit", parameters: Self.auditListParameters) { read in
            let query = read.query
            let filter = AuditFilter(
                from: try query.timestamp("from"), to: try query.timestamp("to"),
                action: try query.enumeration(AuditAction.self, "action")?.rawValue,
                actor: try query.enumeration(AuditActor.Kind.self, "actor")?.rawValue,
                requestID: try query.identifier("request_id"))
            if let from = filter.from, let to = filter.to, from > to {
                throw QueryParameters.malformed("from", "is after to (\(from) > \(to))")
            }
            let limit = try query.limit(default: 50, maximum: 200)
            let cursor = try query.cursor(list: AuditQueries.cursorList, count: AuditQueries.cursorValues, isKeyset: AuditQueries.isKeyset)
            let tenant = read.tenant
            let page = try await read.reads.read(tenant: tenant) { db in
                try AuditQueries.list(db, tenant: tenant, filter: filter, after: cursor, limit: limit)
            }
            return Self.jsonOK(page.json)
        }
    }
}
