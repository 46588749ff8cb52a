import Foundation
import HTTPTypes
import Hummingbird
import Logging
import VoiceCoreBus
import VoiceCoreEvents
import VoiceCoreTenants

/// The tenant command API (`/v1`, `Authorization: Bearer <API key>`): each request is validated
/// (including what the platform can store, ``Storable``, through each command's `validate()`),
/// published as a command and answered `202 Accepted` with the command's id — the services
/// decide what happens. An `Idempotency-Key` header makes a retried request publish once.
///
/// Each command's id is the request's id (``RequestID``, answered in `X-Request-Id`), and its
/// CloudEvents `source` names the API key that asked, `/edge/api/keys/<key id>` (the key's public
/// id, never the key): the `audit` projection records the command in the audit trail from them.
extension Edge {
    func addTenantAPIRoutes(to router: Router<BasicRequestContext>) {
        let api = router.group("/v1")
        api.post("/leads") { request, _ in
            let (tenant, keyID) = try await authenticatedKey(request)
            let body = try await jsonBody(request)
            let key = try idempotencyKey(request)
            let lead: CreateLead
            do throws(MessageDecodingError) {
                // A retried request (same Idempotency-Key) names the same lead, so it lands on the
                // same stream partition and its key finds the first publish.
                let derived = key.map { Identifier.v5(namespace: tenant, name: "lead/\($0)") }
                lead = CreateLead(
                    leadID: try body.optionalIdentifier("lead_id") ?? derived ?? .v7(), callID: try body.optionalIdentifier("call_id"),
                    name: try body.optionalString("name"), phone: try body.optionalString("phone"), email: try body.optionalString("email"),
                    intent: try body.enumeration(Intent.self, "intent"), notes: try body.optionalString("notes"))
                try lead.validate()
            } catch {
                throw Problem.decoding(Self.inBody(error))
            }
            let outcome = try await publish(lead, tenant: tenant, source: AuditActor.tenantAPISource(keyID: keyID), id: RequestID.ofCurrentRequest,
                                            deduplicationKey: key, metricSource: "api")
            return accepted(outcome, extra: { $0.field("lead_id", lead.leadID) })
        }
        api.put("/contacts/{contact}") { request, context in
            let (tenant, keyID) = try await authenticatedKey(request)
            guard let contact = context.parameters.get("contact").flatMap(Identifier.init) else {
                throw Problem.malformed("contact", "must be a UUID (the contact_id of ContactUpserted)")
            }
            let body = try await jsonBody(request)
            let update: UpdateContact
            do throws(MessageDecodingError) {
                update = UpdateContact(contactID: contact, name: try body.optionalString("name"), phone: try body.optionalString("phone"),
                                       email: try body.optionalString("email"))
                try update.validate()
            } catch {
                throw Problem.decoding(Self.inBody(error))
            }
            let outcome = try await publish(update, tenant: tenant, source: AuditActor.tenantAPISource(keyID: keyID), id: RequestID.ofCurrentRequest,
                                            deduplicationKey: try idempotencyKey(request), metricSource: "api")
            return accepted(outcome, extra: { $0.field("contact_id", contact) })
        }
        api.put("/settings") { request, _ in
            let (tenant, keyID) = try await authenticatedKey(request)
            let body = try await jsonBody(request)
            let settings: AISettings
            do throws(MessageDecodingError) {
                settings = try AISettings(json: body)
            } catch {
                throw Problem.decoding(Self.inBody(error))
            }
            let key = try idempotencyKey(request)
            do {
                let outcome = try await publishSettings(settings, of: tenant, keyID: keyID, deduplicationKey: key, metricSource: "api")
                return accepted(outcome, extra: { _ in })
            } catch let error as MessageDecodingError {
                throw Problem.decoding(Self.inBody(error))
            }
        }
    }

    /// The one way the edge changes a tenant's AI settings (`PUT /v1/settings` and the console's
    /// settings page): validates them as ``ChangeSettings`` and publishes that command for the
    /// tenants service, its `source` naming the API key (or the console session's key) that asked.
    /// - Throws: `MessageDecodingError` naming the field at fault (`data.settings.<field>`), with
    ///   nothing published; a ``Problem`` (503) when Redis did not take the command.
    func publishSettings(_ settings: AISettings, of tenant: Identifier, keyID: String, deduplicationKey: String?,
                         metricSource: String) async throws -> DeduplicatedOutcome {
        let change = ChangeSettings(tenantID: tenant, settings: settings)
        try change.validate()
        return try await publish(change, tenant: tenant, source: AuditActor.tenantAPISource(keyID: keyID), id: RequestID.ofCurrentRequest,
                                 deduplicationKey: deduplicationKey, metricSource: metricSource)
    }

    /// The tenant of the request's API key (401), within its rate limit (429). A GET without an
    /// `Authorization` header may instead carry a tenant's console session cookie
    /// (``consoleCookieTenant(_:)``): the read routes and the event feed, which call this, serve
    /// the console's pages in the browser. Writes never take the cookie (they call
    /// ``authenticatedKey(_:)``).
    func authenticatedTenant(_ request: Request) async throws -> Identifier {
        if request.headers[.authorization] == nil, let tenant = try await consoleCookieTenant(request) { return tenant }
        return try await authenticatedKey(request).tenant
    }

    /// The tenant of the request's API key and the key's public id (401), within the tenant's
    /// rate limit (429).
    func authenticatedKey(_ request: Request) async throws -> (tenant: Identifier, keyID: String) {
        guard let header = request.headers[.authorization], header.hasPrefix("Bearer "),
              let key = APIKey(header.dropFirst("Bearer ".count).drop { $0 == " " })
        else { throw Problem.unauthorized }
        let tenant: Identifier?
        do {
            tenant = try await tenants.tenant(for: key)
        } catch {
            logger.warning("tenant directory unreachable", metadata: ["error": "\(error)"])
            throw Problem.unavailable("the tenant directory")
        }
        guard let tenant else { throw Problem.unauthorized }
        let credentials = try await credentials(of: tenant)
        if let wait = limiter.take(tenant, rate: credentials.requestsPerSecond) {
            let seconds = max(1, Int((Double(wait.components.seconds) + Double(wait.components.attoseconds) / 1e18).rounded(.up)))
            throw Problem(.tooManyRequests, "Too many requests", detail: "this tenant may send \(credentials.requestsPerSecond) requests per second",
                          headers: [.retryAfter: String(seconds)])
        }
        return (tenant, key.keyID)
    }

    /// The request's JSON object body (415 not JSON, 413 too large, 400 malformed).
    func jsonBody(_ request: Request) async throws -> JSONObject {
        let (bytes, _) = try await body(of: request, accepting: [.applicationJson])
        do {
            return try JSONObject.parse(bytes, path: "body")
        } catch {
            throw Problem.malformed("body", error.reason)
        }
    }

    /// The request's `Idempotency-Key` as a deduplication key; one longer than a line
    /// (``Storable/lineLength``, 200 characters) is refused (400) rather than ignored, so a
    /// retry is never published twice for a key the client believes in.
    private func idempotencyKey(_ request: Request) throws(Problem) -> String? {
        guard let key = request.headers[.idempotencyKey], !key.isEmpty else { return nil }
        do {
            try Storable.check(key, "Idempotency-Key", as: .line)
        } catch {
            throw Problem.unstorable(error)
        }
        return "api:\(key)"
    }

    private func accepted(_ outcome: DeduplicatedOutcome, extra: (inout JSONObjectWriter) -> Void) -> Response {
        Self.json(.accepted, JSONObjectWriter.object { json in
            json.field("command_id", outcome.entry.eventID)
            json.field("duplicate", outcome.isDuplicate)
            extra(&json)
        })
    }

    /// Validation errors name fields without a prefix; decoding errors as `body.<field>`.
    static func inBody(_ error: MessageDecodingError) -> MessageDecodingError {
        if error.field.hasPrefix("body") { return error }
        let field = error.field.hasPrefix("data.") ? String(error.field.dropFirst(5)) : error.field
        return MessageDecodingError(field: "body.\(field)", reason: error.reason)
    }
}
