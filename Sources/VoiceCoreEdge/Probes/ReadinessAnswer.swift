import HTTPTypes
import Hummingbird
import NIOCore
import VoiceCoreBus
import VoiceCoreEvents

/// The `/ready` answer of a process's readiness checks, shared by the edge and ``ProbeServer``.
///
/// Ready: 200 `{"status":"ready","checks":[{"name":"consumer:billing","status":"ready"}, …]}`.
/// Not ready: 503 `application/problem+json` whose `detail` names every check that failed and why,
/// with the same `checks` list (a failing check also has `reason`), so a probe's log says which
/// consumer is behind without another request.
enum ReadinessAnswer {
    static func response(_ results: [(name: String, readiness: Readiness)]) -> Response {
        let answer = answer(results)
        return Response(status: answer.status, headers: [.contentType: answer.mediaType.description], body: .init(byteBuffer: ByteBuffer(bytes: answer.body)))
    }

    static func answer(_ results: [(name: String, readiness: Readiness)]) -> (status: HTTPResponse.Status, mediaType: MediaType, body: [UInt8]) {
        let checks = results.map { Check(name: $0.name, status: $0.readiness.isReady ? "ready" : "not ready", reason: $0.readiness.reason) }
        let failing = results.filter { !$0.readiness.isReady }
        // Keys in sorted order, as the answer always had them.
        guard !failing.isEmpty else {
            let body = JSONObjectWriter.object { json in
                json.field("checks", checks)
                json.field("status", "ready")
            }
            return (.ok, .applicationJson, body)
        }
        let body = JSONObjectWriter.object { json in
            json.field("checks", checks)
            json.field("detail", failing.map { "\($0.name): \($0.readiness.reason ?? "not ready")" }.joined(separator: "; "))
            json.field("status", 503)
            json.field("title", "Not ready")
            json.field("type", "about:blank")
        }
        return (.serviceUnavailable, .applicationProblemJSON, body)
    }

    /// One check in the answer's `checks` list.
    struct Check: JSONObjectCodable {
        var name: String
        var status: String
        /// Why the check fails (absent when it passes).
        var reason: String?

        init(name: String, status: String, reason: String?) {
            self.name = name
            self.status = status
            self.reason = reason
        }

        init(json object: JSONObject) throws(MessageDecodingError) {
            name = try object.string("name")
            reason = try object.optionalString("reason")
            status = try object.string("status")
        }

        func writeJSON(to object: inout JSONObjectWriter) {
            object.field("name", name)
            object.field("reason", reason)
            object.field("status", status)
        }
    }
}
