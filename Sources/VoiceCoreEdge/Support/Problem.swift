import Foundation
import HTTPTypes
import Hummingbird
import VoiceCoreBus
import VoiceCoreEvents
import VoiceCoreExecutors

/// An error answer as RFC 9457 problem details (`application/problem+json`).
///
/// Every refusal of the edge is one of these, with a status that says what to do: 400 malformed
/// (in a webhook also a value the platform cannot store, see ``Storable``), 401 no or bad API
/// key, 403 bad signature (no detail: a forger learns nothing), 404 unknown tenant or route, 413
/// body too large, 415 wrong content type, 422 a required or invalid field (in the tenant and
/// admin APIs also one the platform cannot store), 429 rate limited, 503 a dependency (Redis,
/// Postgres) is unreachable — retry after `Retry-After`. A client error is never a 503. Nothing is
/// published for a refused request.
public struct Problem: HTTPResponseError, Sendable {
    public var status: HTTPResponse.Status
    public var title: String
    public var detail: String?
    /// The request field at fault, when one is (`data.phone`, `CallSid`).
    public var field: String?
    public var headers: HTTPFields

    public init(_ status: HTTPResponse.Status, _ title: String, detail: String? = nil, field: String? = nil, headers: HTTPFields = [:]) {
        self.status = status
        self.title = title
        self.detail = detail
        self.field = field
        self.headers = headers
    }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        let body = JSONObjectWriter.object { json in
            json.field("type", "about:blank")
            json.field("title", title)
            json.field("status", status.code)
            json.field("detail", detail)
            json.field("field", field)
        }
        var headers = self.headers
        headers[.contentType] = MediaType.applicationProblemJSON.description
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: body)))
    }

    // MARK: The edge's refusals

    static let forbidden = Problem(.forbidden, "Forbidden")
    static let unknownTenant = Problem(.notFound, "Unknown tenant", detail: "no tenant with this id")
    static let unauthorized = Problem(.unauthorized, "Unauthorized", detail: "send a valid API key as `Authorization: Bearer vck_…`",
                                      headers: [.wwwAuthenticate: "Bearer"])

    static func unavailable(_ what: String) -> Problem {
        Problem(.serviceUnavailable, "Temporarily unavailable", detail: "\(what) is unreachable; retry later", headers: [.retryAfter: "5"])
    }

    static func unsupportedMediaType(_ expected: String) -> Problem {
        Problem(.unsupportedMediaType, "Unsupported media type", detail: "send \(expected)")
    }

    static func tooLarge(_ limit: Int) -> Problem {
        Problem(.contentTooLarge, "Content too large", detail: "the body exceeds \(limit) bytes")
    }

    static func malformed(_ field: String, _ reason: String) -> Problem {
        Problem(.badRequest, "Malformed request", detail: "\(field) \(reason)", field: field)
    }

    static func invalid(_ field: String, _ reason: String) -> Problem {
        Problem(.unprocessableContent, "Invalid request", detail: "\(field) \(reason)", field: field)
    }

    /// A provider's webhook field the platform cannot store (``Storable``): 400, naming the field.
    /// A provider that sends one has a bug or is forged past its signature; retrying will not help.
    static func unstorable(_ error: MessageDecodingError) -> Problem {
        malformed(error.field, error.reason)
    }

    /// The answer to an error that is not already an answer. A dependency refusing a value
    /// (`DependencyFailure.refusesInput`: Postgres SQLSTATE class 22, 23 or 54 — out of range,
    /// bad encoding, a constraint, a limit) is the request's fault: 422, never an outage.
    /// Anything else means a dependency failed: 503.
    static func answering(_ error: any Error) -> Problem {
        if error.isRefusedInput {
            return Problem(.unprocessableContent, "Invalid request", detail: "a value in the request cannot be stored")
        }
        return unavailable("a dependency")
    }

    /// A field of a well-formed body that is missing or unacceptable: 422. (Malformed JSON is
    /// refused as 400 when the body is parsed, before any field is read.)
    static func decoding(_ error: MessageDecodingError) -> Problem {
        invalid(error.field, error.reason)
    }
}
