import HTTPTypes
import Hummingbird
import VoiceCoreEvents
import VoiceCoreTenants

/// Caller erasure (GDPR art. 17, CCPA): `POST /v1/privacy/erasures` asks for the erasure of a
/// caller named by exactly one of `phone`, `email` or `contact_id`, and `GET
/// /v1/privacy/erasures/{erasure}` reports its state; the operator's mirrors live under
/// `/admin/tenants/{tenant}/privacy/erasures` (admin key).
///
/// A new erasure is answered `202 Accepted` with `Location` and its status; an erasure of the same
/// caller still open is answered `200` as it is (asking twice erases once). An identifier that is
/// malformed, missing or given twice is a 400 naming the field; one that matches nothing of the
/// tenant is a 404 — nothing is stored for either. The privacy service does the erasure
/// (``ErasureRequests`` only records the request, with its audit row, in one transaction). No
/// answer, log line or audit row carries the identifier: only its keyed hash.
extension Edge {
    func addPrivacyRoutes(to router: Router<BasicRequestContext>) {
        guard let directory else { return }
        let erasures = ErasureRequests(directory: directory)
        router.post("/v1/privacy/erasures") { request, _ in
            let (tenant, keyID) = try await authenticatedKey(request)
            let identifier = try Self.erasureIdentifier(try await jsonBody(request))
            return try await Self.requestErasure(erasures, tenant: tenant, identifier: identifier, actor: .apiKey(keyID), location: "/v1/privacy/erasures")
        }
        router.get("/v1/privacy/erasures/{erasure}") { request, context in
            let tenant = try await authenticatedTenant(request)
            return try await Self.erasureStatus(erasures, tenant: tenant, context: context)
        }
        guard configuration.adminKey != nil else { return }
        router.post("/admin/tenants/{tenant}/privacy/erasures") { request, context in
            try authorizeAdmin(request)
            let tenant = try tenantID(context)
            _ = try await credentials(of: tenant)
            let identifier = try Self.erasureIdentifier(try await jsonBody(request))
            return try await Self.requestErasure(erasures, tenant: tenant, identifier: identifier, actor: .admin,
                                                 location: "/admin/tenants/\(tenant)/privacy/erasures")
        }
        router.get("/admin/tenants/{tenant}/privacy/erasures/{erasure}") { request, context in
            try authorizeAdmin(request)
            let tenant = try tenantID(context)
            _ = try await credentials(of: tenant)
            return try await Self.erasureStatus(erasures, tenant: tenant, context: context)
        }
    }

    /// The body's names of an identifier, as the API spells them.
    private static let identifierFields: [(name: String, kind: ErasureIdentifier.Kind)] = [("phone", .phone), ("email", .email), ("contact_id", .contact)]

    /// The one identifier the body names (400 naming the field: none, two, or a malformed one).
    static func erasureIdentifier(_ body: JSONObject) throws(Problem) -> ErasureIdentifier {
        var given: [(name: String, kind: ErasureIdentifier.Kind, value: String)] = []
        do throws(MessageDecodingError) {
            if let phone = try body.optionalString("phone") { given.append(("phone", .phone, phone)) }
            if let email = try body.optionalString("email") { given.append(("email", .email, email)) }
            if let contact = try body.optionalString("contact_id") { given.append(("contact_id", .contact, contact)) }
        } catch {
            throw Problem.malformed(error.field, error.reason)
        }
        let names = identifierFields.map(\.name).joined(separator: ", ")
        guard let first = given.first else {
            throw Problem.malformed("body", "must name the caller by exactly one of \(names)")
        }
        guard given.count == 1 else {
            throw Problem.malformed("body.\(given[1].name)", "is given with body.\(first.name): name the caller by exactly one of \(names)")
        }
        do throws(PrivacyRequestError) {
            return try ErasureIdentifier.parse(kind: first.kind, value: first.value, field: "body.\(first.name)")
        } catch {
            throw problem(error)
        }
    }

    private static func requestErasure(_ erasures: ErasureRequests, tenant: Identifier, identifier: ErasureIdentifier, actor: AuditActor,
                                       location: String) async throws -> Response {
        let answer: (status: ErasureStatus, created: Bool)
        do throws(PrivacyRequestError) {
            answer = try await erasures.request(tenant: tenant, identifier: identifier, actor: actor, requestID: RequestID.ofCurrentRequest)
        } catch {
            throw problem(error)
        }
        var response = json(answer.created ? .accepted : .ok, answer.status.json)
        response.headers[.location] = "\(location)/\(answer.status.erasureID)"
        return response
    }

    private static func erasureStatus(_ erasures: ErasureRequests, tenant: Identifier, context: BasicRequestContext) async throws -> Response {
        // Anything but a UUID names no erasure.
        guard let erasure = context.parameters.get("erasure").flatMap(Identifier.init) else { throw notFound("erasure") }
        let status: ErasureStatus?
        do throws(PrivacyRequestError) {
            status = try await erasures.status(tenant: tenant, erasure: erasure)
        } catch {
            throw problem(error)
        }
        // Another tenant's erasure is no erasure of this one.
        guard let status else { throw notFound("erasure") }
        return json(.ok, status.json)
    }

    static func problem(_ error: PrivacyRequestError) -> Problem {
        switch error {
        case .invalid(let field, let reason): Problem.malformed(field, reason)
        case .nothingMatches: Problem(.notFound, "Nothing to erase", detail: error.description)
        case .unknownTenant: Problem.unknownTenant
        case .notMigrated, .unavailable: Problem.unavailable("the database")
        }
    }
}
