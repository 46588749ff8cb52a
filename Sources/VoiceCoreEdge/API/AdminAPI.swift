import Foundation
import HTTPTypes
import Hummingbird
import VoiceCoreBus
import VoiceCoreEvents
import VoiceCoreTenants

/// The admin API (`/admin`, `Authorization: Bearer $VOICECORE_ADMIN_KEY`): provision tenants,
/// list them, rotate API keys and change provider credentials. Present only when an admin key is
/// configured. Secrets go in (`twilio_auth_token`, `twilio_shared_key`, `telnyx_api_key`, all
/// write-only: summaries say `…_set`); the only secret that ever comes out is a new API key, once.
///
/// Each change is recorded in the audit trail in its own transaction, with actor `admin` and the
/// request's id (``RequestID``, answered in `X-Request-Id`); a refused change records nothing.
extension Edge {
    func addAdminRoutes(to router: Router<BasicRequestContext>) {
        guard let directory else { return }
        let admin = router.group("/admin")
        admin.post("/tenants") { request, _ in
            try authorizeAdmin(request)
            let body = try await jsonBody(request)
            let new: NewTenant
            do throws(MessageDecodingError) {
                let plan = try body.optionalEnumeration(Plan.self, "plan") ?? .starter
                new = NewTenant(
                    id: try body.optionalIdentifier("tenant_id") ?? .v7(), name: try body.string("name"), plan: plan,
                    timeZone: try body.optionalString("time_zone") ?? "UTC", twilioAccountSID: try body.optionalString("twilio_account_sid"),
                    twilioAuthToken: try body.optionalString("twilio_auth_token"), twilioSharedKey: try body.optionalString("twilio_shared_key"),
                    telnyxPublicKey: try body.optionalString("telnyx_public_key"), telnyxAPIKey: try body.optionalString("telnyx_api_key"),
                    requestsPerSecond: try body.optionalInt("requests_per_second") ?? 50)
                try new.checkStorable()
            } catch {
                throw Problem.decoding(error)
            }
            let provisioned: ProvisionedTenant
            do {
                provisioned = try await directory.provision(new, publisher: publisher, request: Self.adminRequest)
            } catch let error as TenantError {
                throw Self.problem(error)
            }
            let webhooks = webhookURLs(provisioned.tenant.id, request: request)
            // The summary's fields with the new key and the URLs to configure; `announced` says
            // whether TenantProvisioned is on its stream already (false: Redis did not take it,
            // and the outbox relay publishes it once Redis answers — the tenant exists either way).
            return Self.json(.created, JSONObjectWriter.object { json in
                json.field("announced", provisioned.announced)
                json.field("api_key", provisioned.apiKey.plaintext)
                provisioned.tenant.writeJSON(to: &json)
                json.field("webhooks", webhooks)
            })
        }
        admin.get("/tenants") { request, _ in
            try authorizeAdmin(request)
            let tenants = try await directory.list()
            return Self.json(.ok, JSONObjectWriter.object { $0.field("tenants", tenants) })
        }
        admin.post("/tenants/{tenant}/api-keys") { request, context in
            try authorizeAdmin(request)
            let tenant = try tenantID(context)
            do {
                let key = try await directory.rotateAPIKey(of: tenant, request: Self.adminRequest)
                return Self.json(.created, JSONObjectWriter.object { json in
                    json.field("api_key", key.plaintext)
                    json.field("tenant_id", tenant)
                })
            } catch let error as TenantError {
                throw Self.problem(error)
            }
        }
        admin.patch("/tenants/{tenant}") { request, context in
            try authorizeAdmin(request)
            let tenant = try tenantID(context)
            let body = try await jsonBody(request)
            let change: CredentialChange
            do throws(MessageDecodingError) {
                change = CredentialChange(
                    twilioAccountSID: try body.optionalString("twilio_account_sid"), twilioAuthToken: try body.optionalString("twilio_auth_token"),
                    twilioSharedKey: try body.optionalString("twilio_shared_key"), telnyxPublicKey: try body.optionalString("telnyx_public_key"),
                    telnyxAPIKey: try body.optionalString("telnyx_api_key"), requestsPerSecond: try body.optionalInt("requests_per_second"))
                try change.checkStorable()
            } catch {
                throw Problem.decoding(error)
            }
            guard !change.isEmpty else { throw Problem.invalid("body", "names no credential to change") }
            do {
                try await directory.update(tenant, change, request: Self.adminRequest)
            } catch let error as TenantError {
                throw Self.problem(error)
            }
            return Self.empty(.noContent)
        }
    }

    /// The request being handled, as the admin's, for the audit trail.
    static var adminRequest: AuditedRequest { AuditedRequest(actor: .admin, requestID: RequestID.ofCurrentRequest) }

    /// The URLs to configure at the providers for a tenant.
    func webhookURLs(_ tenant: Identifier, request: Request) -> [String: String] {
        let base = publicBase(of: request)
        return [
            "twilio_voice": "\(base)/webhooks/twilio/\(tenant)/voice",
            "twilio_status": "\(base)/webhooks/twilio/\(tenant)/status",
            "twilio_transcription": "\(base)/webhooks/twilio/\(tenant)/transcription",
            "telnyx": "\(base)/webhooks/telnyx/\(tenant)",
        ]
    }

    func authorizeAdmin(_ request: Request) throws {
        guard let expected = configuration.adminKey, let header = request.headers[.authorization], header.hasPrefix("Bearer "),
              constantTimeEquals(Array(header.dropFirst("Bearer ".count).utf8), Array(expected.utf8))
        else { throw Problem(.unauthorized, "Unauthorized", detail: "send the admin key as `Authorization: Bearer …`", headers: [.wwwAuthenticate: "Bearer"]) }
    }

    static func problem(_ error: TenantError) -> Problem {
        switch error {
        case .invalid(let field, let reason): Problem.invalid("body.\(field)", reason)
        case .unknownTenant: Problem.unknownTenant
        case .conflict(let message): Problem(.conflict, "Conflict", detail: message)
        case .configuration, .undecryptable: Problem.unavailable("the tenant directory")
        }
    }
}

// What the tenant directory stores (`tenant_directory`, migration 0003), checked before it is
// asked (``Storable``): a value Postgres would refuse is a 422 naming the field, not a failed
// statement. Secrets and account ids are identifiers; the rate limit is a positive `integer`.

extension NewTenant {
    func checkStorable() throws(MessageDecodingError) {
        try Storable.check(name, "body.name", as: .line)
        try Storable.check(timeZone, "body.time_zone", as: .line)
        try CredentialChange(twilioAccountSID: twilioAccountSID, twilioAuthToken: twilioAuthToken, twilioSharedKey: twilioSharedKey,
                             telnyxPublicKey: telnyxPublicKey, telnyxAPIKey: telnyxAPIKey, requestsPerSecond: requestsPerSecond).checkStorable()
    }
}

extension CredentialChange {
    func checkStorable() throws(MessageDecodingError) {
        try Storable.check(twilioAccountSID, "body.twilio_account_sid", as: .identifier)
        try Storable.check(twilioAuthToken, "body.twilio_auth_token", as: .identifier)
        try Storable.check(twilioSharedKey, "body.twilio_shared_key", as: .identifier)
        try Storable.check(telnyxPublicKey, "body.telnyx_public_key", as: .identifier)
        try Storable.check(telnyxAPIKey, "body.telnyx_api_key", as: .identifier)
        try Storable.check(requestsPerSecond, "body.requests_per_second", in: 1...Storable.integerMaximum)
    }
}
