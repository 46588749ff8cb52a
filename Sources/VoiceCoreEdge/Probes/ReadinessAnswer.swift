import Foundation
import Hummingbird
import NIOCore
import VoiceCoreBus

/// The `/ready` answer of a process's readiness checks, shared by the edge and ``ProbeServer``.
///
/// Ready: 200 `{"status":"ready","checks":[{"name":"consumer:billing","status":"ready"}, …]}`.
/// Not ready: 503 `application/problem+json` whose `detail` names every check that failed and why,
/// with the same `checks` list (a failing check also has `reason`), so a probe's log says which
/// consumer is behind without another request.
enum ReadinessAnswer {
    static func response(_ results: [(name: String, readiness: Readiness)]) -> Response {
        let checks: [[String: String]] = results.map { result in
            var check = ["name": result.name, "status": result.readiness.isReady ? "ready" : "not ready"]
            check["reason"] = result.readiness.reason
            return check
        }
        let failing = results.filter { !$0.readiness.isReady }
        let body: [String: Any]
        let status: HTTPResponse.Status
        let contentType: String
        if failing.isEmpty {
            status = .ok
            contentType = "application/json"
            body = ["status": "ready", "checks": checks]
        } else {
            status = .serviceUnavailable
            contentType = "application/problem+json"
            body = [
                "type": "about:blank", "title": "Not ready", "status": 503,
                "detail": failing.map { "\($0.name): \($0.readiness.reason ?? "not ready")" }.joined(separator: "; "),
                "checks": checks,
            ]
        }
        // Only strings, numbers, arrays and dictionaries: serialization cannot fail.
        let data = (try? JSONSerialization.data(withJSONObject: body, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data()
        return Response(status: status, headers: [.contentType: contentType], body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }
}
