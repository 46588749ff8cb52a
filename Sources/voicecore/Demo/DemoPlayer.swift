import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import VoiceCoreEdge
import VoiceCoreEvents
import VoiceCorePostgres
import VoiceCoreSimulation
import VoiceCoreTenants
import VoiceCoreTime

/// Plays a realistic call into a running edge as Twilio would, then shows the rows it produced.
struct DemoPlayer {
    let connections: ConnectionOptions
    let edgeURL: String
    let publicBase: String
    /// The tenant's API key, for reading the call back (see ``DemoAPIKey``).
    var apiKey: String? = nil

    func run(tenant: Identifier?) async throws {
        let twilio = try await TwilioTenant.find(tenant, in: try await TenantsCommand.directory(connections))
        let chosen = twilio.id
        let base = edgeURL.hasSuffix("/") ? String(edgeURL.dropLast()) : edgeURL
        let publicRoot = publicBase.hasSuffix("/") ? String(publicBase.dropLast()) : publicBase
        try await ConversationPlayer(tenant: twilio, edgeURL: base, publicBase: publicRoot, connections: connections).run()
        say("")
        let call = TwilioCallSimulation.appointmentCall(tenant: chosen, accountSID: twilio.accountSID, authToken: twilio.authToken,
                                                        publicBase: publicBase, rangAt: Timestamp.now.adding(microseconds: -30_000_000))
        say("Playing a call into \(base) for tenant \(chosen): \(call.from) → \(call.to), Twilio CallSid \(call.callSID)")
        for webhook in call.webhooks {
            let response = try await HTTPClient.shared.execute(webhook.request(to: base), timeout: .seconds(10))
            _ = try await response.body.collect(upTo: 1 << 20)
            let detail = (try? FormBody(parsing: Array(webhook.body.utf8))) ?? FormBody(parameters: [])
            let what = webhook.kind == .transcription
                ? "\(detail["Track"] ?? "") \(detail["Final"] == "true" ? "final" : "partial"): \(Self.transcript(detail["TranscriptionData"]))"
                : (detail["CallStatus"] ?? "")
            say("  POST \(webhook.kind.rawValue) \(what) → \(response.status.code)")
            guard (200..<300).contains(Int(response.status.code)) else {
                throw CommandFailure("the edge answered \(response.status.code) to the \(webhook.kind.rawValue) webhook; is `voicecore up` running with the same VOICECORE_PUBLIC_URL (\(publicBase))?")
            }
        }
        try await showRows(tenant: chosen, callID: call.callID)
        try await showReads(tenant: chosen, callID: call.callID, base: base)
    }

    /// Reads the call back through the tenant API (when the tenant's API key is known) and prints
    /// the curl commands that do the same: the newest calls, this call whole, the live events.
    func showReads(tenant: Identifier, callID: Identifier, base: String) async throws {
        let known = DemoAPIKey.resolve(apiKey)
        let list = "\(base)/v1/calls?limit=5"
        let detail = "\(base)/v1/calls/\(callID)"
        if let known {
            // The list shows the newest calls (others may be newer than this one); the detail is this call.
            for (url, what, expected) in [(list, "the newest calls", "\"items\""), (detail, "the call", callID.description)] {
                var request = HTTPClientRequest(url: url)
                request.headers.add(name: "Authorization", value: "Bearer \(known.key)")
                let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
                let body = String(buffer: try await response.body.collect(upTo: 4 << 20))
                guard response.status.code == 200, body.contains(expected) else {
                    let hint = switch response.status.code {
                    case 401: "the API key from \(known.source) is not accepted: is it tenant \(tenant)'s current key?"
                    case 404 where url == detail: "the API key from \(known.source) belongs to another tenant than \(tenant)"
                    case 200: "the answer does not hold \(what)"
                    default: "is the edge this build's `voicecore up`, with its read API?"
                    }
                    throw CommandFailure("GET \(url.dropFirst(base.count)) (\(what)) answered \(response.status.code): \(hint)\n\(body.prefix(600))")
                }
            }
        }
        // Single quotes keep the shell from reading the key; without one, the variable is expanded.
        let header = known.map { "'Authorization: Bearer \($0.key)'" } ?? "\"Authorization: Bearer $VOICECORE_API_KEY\""
        say("\nRead it back through the tenant API\(known == nil ? "" : " (both answered 200)"):")
        say("  curl -s -H \(header) '\(list)'")
        say("  curl -s -H \(header) '\(detail)'")
        say("  curl -sN -H \(header) '\(base)/v1/events'   # the tenant's events as they happen (Ctrl-C stops)")
        if known == nil {
            say("Set VOICECORE_API_KEY to tenant \(tenant)'s API key first (`voicecore up` printed it when it provisioned the tenant; "
                + "`voicecore tenants rotate \(tenant) --api-key` issues a new one and revokes the old).")
        }
    }

    static func transcript(_ data: String?) -> String {
        guard let data, let object = try? JSONObject.parse(Array(data.utf8)), let text = try? object.string("transcript") else { return "" }
        return "\"\(text)\""
    }

    /// Waits until the call's rows are all projected (at most 30 s), then prints them.
    func showRows(tenant: Identifier, callID: Identifier) async throws {
        let db = try await PostgresConnection.connect(try connections.postgresConfiguration())
        let call = callID.uuid
        let id = tenant.uuid
        let deadline = ContinuousClock.now + .seconds(30)
        say("Waiting for the services and projectors…")
        while true {
            let ready = try await db.query("""
                SELECT (SELECT count(*) FROM call_sessions WHERE call_id = \(call) AND end_status IS NOT NULL)
                     + (SELECT count(*) FROM leads WHERE call_id = \(call))
                     + (SELECT count(*) FROM call_analytics WHERE call_id = \(call) AND sentiment IS NOT NULL AND outcome IS NOT NULL)
                     + (SELECT least(count(*), 3) FROM billing_usage_items WHERE call_id = \(call)) AS ready
                """)
            if try ready[0].decode(Int.self, "ready") >= 6 { break }
            guard ContinuousClock.now < deadline else {
                say("Not every row arrived within 30 s: are the services and projectors running (`voicecore up`, or `voicecore consume …` and `voicecore project`)? Showing what is there.")
                break
            }
            try await Task.sleep(for: .milliseconds(250))
        }
        let tables: [(String, PostgresQuery)] = [
            ("call_sessions", "SELECT status, from_number, to_number, started_at, answered_at, ended_at, duration_seconds, end_status FROM call_sessions WHERE call_id = \(call)"),
            ("transcripts", "SELECT track, sequence, text, confidence FROM transcripts WHERE call_id = \(call) ORDER BY sequence, track"),
            ("leads", "SELECT name, phone, email, intent, source, notes FROM leads WHERE call_id = \(call)"),
            ("call_analytics", "SELECT duration_seconds, outcome, intent, sentiment, sentiment_score, word_count FROM call_analytics WHERE call_id = \(call)"),
            ("business_metrics", "SELECT day, calls, answered, missed, handle_seconds, leads, conversion_rate FROM business_metrics WHERE tenant_id = \(id) ORDER BY day DESC LIMIT 1"),
            ("billing_usage", "SELECT day, meter, quantity, unit FROM billing_usage WHERE tenant_id = \(id) ORDER BY day DESC, meter LIMIT 3"),
        ]
        for (name, query) in tables {
            say("\n\(name)")
            Self.printTable(try await db.query(query))
        }
        await db.close()
    }

    static func printTable(_ rows: PostgresRows) {
        let values = rows.map { row in rows.columns.map { column in row.raw(column).map { String(decoding: $0, as: UTF8.self) } ?? "∅" } }
        let widths = rows.columns.indices.map { index in min(60, max(rows.columns[index].count, values.map { $0[index].count }.max() ?? 0)) }
        func line(_ cells: [String]) -> String {
            zip(cells, widths).map { cell, width in
                let text = cell.count > width ? String(cell.prefix(width - 1)) + "…" : cell
                return text + String(repeating: " ", count: width - text.count)
            }.joined(separator: "  ")
        }
        say("  " + line(rows.columns))
        for row in values { say("  " + line(row)) }
        if values.isEmpty { say("  (no rows)") }
    }
}
