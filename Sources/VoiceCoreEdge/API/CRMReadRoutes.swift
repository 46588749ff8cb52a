import Hummingbird
import VoiceCoreEvents
import VoiceCoreQueries
import VoiceCoreTime

/// The CRM's read routes: leads, contacts (searched by phone, e-mail or name) and a contact's
/// interactions, under `/v1` and mirrored under `/admin/tenants/{tenant}` (see ``addReadRoute``).
/// What they answer is ``CRMQueries``'; schemas/openapi.yaml documents each shape.
extension Edge {
    func addCRMReadRoutes(to router: Router<BasicRequestContext>) {
        addReadRoute(router, "/leads", parameters: ["from", "to", "intent", "source", "contact_id", "call_id", "limit", "cursor"]) { read in
            let query = read.query
            let filter = CRMQueries.LeadFilter(
                from: try query.timestamp("from"), to: try query.timestamp("to"),
                intent: try query.enumeration(Intent.self, "intent"), source: try query.enumeration(LeadCreated.Source.self, "source"),
                contactID: try query.identifier("contact_id"), callID: try query.identifier("call_id"))
            if let from = filter.from, let to = filter.to, to <= from {
                throw QueryParameters.malformed("to", "must be later than from")
            }
            let limit = try query.limit()
            let position = try Self.position(query, list: CRMQueries.leadsList)
            let page = try await read.reads.read(tenant: read.tenant) { db in
                try CRMQueries.leads(filter, after: position, limit: limit, in: db)
            }
            return Self.jsonOK(page.json)
        }

        addReadRoute(router, "/leads/{lead}", parameters: []) { read in
            let id = try read.identifier("lead", what: "lead")
            guard let lead = try await read.reads.read(tenant: read.tenant, { db in try CRMQueries.lead(id, in: db) }) else {
                throw Self.notFound("lead")
            }
            return Self.jsonOK(lead)
        }

        addReadRoute(router, "/contacts", parameters: ["phone", "email", "name", "limit", "cursor"]) { read in
            let query = read.query
            let search = CRMQueries.ContactSearch(phone: try query.e164("phone"), email: try query.string("email", maxLength: 254),
                                                  name: try query.string("name"))
            let limit = try query.limit()
            let position = try Self.position(query, list: CRMQueries.contactsList)
            let page = try await read.reads.read(tenant: read.tenant) { db in
                try CRMQueries.contacts(search, after: position, limit: limit, in: db)
            }
            return Self.jsonOK(page.json)
        }

        addReadRoute(router, "/contacts/{contact}", parameters: []) { read in
            let id = try read.identifier("contact", what: "contact")
            guard let contact = try await read.reads.read(tenant: read.tenant, { db in try CRMQueries.contact(id, in: db) }) else {
                throw Self.notFound("contact")
            }
            return Self.jsonOK(contact)
        }

        addReadRoute(router, "/contacts/{contact}/interactions", parameters: ["limit", "cursor"]) { read in
            let id = try read.identifier("contact", what: "contact")
            let limit = try read.query.limit()
            let position = try Self.position(read.query, list: CRMQueries.interactionsList)
            guard let page = try await read.reads.read(tenant: read.tenant, { db in
                try CRMQueries.interactions(of: id, after: position, limit: limit, in: db)
            }) else {
                throw Self.notFound("contact")
            }
            return Self.jsonOK(page.json)
        }
    }

    /// The position the `cursor` parameter names in a newest-first list, nil without one.
    private static func position(_ query: QueryParameters, list: String) throws(Problem) -> CRMQueries.Position? {
        guard let cursor = try query.cursor(list: list, count: 2) else { return nil }
        guard let position = CRMQueries.Position(cursor) else {
            throw QueryParameters.notACursor
        }
        return position
    }
}
