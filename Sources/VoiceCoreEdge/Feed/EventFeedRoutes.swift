import Foundation
import HTTPTypes
import Hummingbird
import VoiceCoreBus
import VoiceCoreEvents

/// `GET /v1/events` (the tenant of the API key) and `GET /admin/tenants/{tenant}/events` (any
/// tenant, admin key): the live event feed as Server-Sent Events (see ``EventFeed``).
///
/// - `types`: comma-separated event types (`voicecore.call.started,voicecore.lead.created`); only
///   those are sent. An unknown type is a 400 naming it.
/// - `Last-Event-ID` header: the `id` of the last event the client has; the feed resumes right
///   after it. Malformed: 400.
extension Edge {
    func addEventFeedRoutes(to router: Router<BasicRequestContext>) {
        router.get("/v1/events") { request, _ in
            // Who asks comes first: a request without a valid key learns nothing about its parameters.
            let tenant = try await authenticatedTenant(request)
            let (types, resumeAfter) = try Self.feedRequest(request)
            return try feed().response(tenant: tenant, types: types, resumeAfter: resumeAfter)
        }
        guard configuration.adminKey != nil else { return }
        router.get("/admin/tenants/{tenant}/events") { request, context in
            try authorizeAdmin(request)
            let tenant = try tenantID(context)
            let (types, resumeAfter) = try Self.feedRequest(request)
            _ = try await credentials(of: tenant)  // 404 for a tenant that does not exist
            return try feed().response(tenant: tenant, types: types, resumeAfter: resumeAfter)
        }
    }

    /// The feed; an edge built without one (embedded, in tests) answers 503 rather than leaving
    /// the documented route out.
    private func feed() throws(Problem) -> EventFeed {
        guard let eventFeed else {
            throw Problem(.serviceUnavailable, "Temporarily unavailable", detail: "the live event feed does not run in this process")
        }
        return eventFeed
    }

    /// The feed request's `types` filter and `Last-Event-ID` (400 naming what is malformed).
    static func feedRequest(_ request: Request) throws(Problem) -> (types: Set<String>?, resumeAfter: TailPosition?) {
        let query = try QueryParameters(request.uri.queryParameters, allowed: ["types"])
        var types: Set<String>?
        if let text = try query.string("types", maxLength: 4000) {
            let known = Set(MessageRegistry.eventTypes)
            var wanted: Set<String> = []
            for name in text.split(separator: ",", omittingEmptySubsequences: false).map({ $0.trimmingCharacters(in: .whitespaces) }) {
                guard !name.isEmpty else { throw QueryParameters.malformed("types", "has an empty entry (comma-separated event types)") }
                guard known.contains(name) else {
                    throw QueryParameters.malformed("types", "names \(name), which is not an event type (known: \(known.sorted().joined(separator: ", ")))")
                }
                wanted.insert(name)
            }
            types = wanted
        }
        var resumeAfter: TailPosition?
        if let text = request.headers[HTTPField.Name("Last-Event-ID")!], !text.isEmpty {
            guard let position = TailPosition(text) else {
                throw Problem(.badRequest, "Malformed header", detail: "Last-Event-ID must be the id of an event of this feed (<milliseconds>-<sequence>@<stream>)",
                              field: "Last-Event-ID")
            }
            resumeAfter = position
        }
        return (types, resumeAfter)
    }
}
