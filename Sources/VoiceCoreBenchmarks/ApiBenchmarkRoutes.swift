import Foundation
import VoiceCoreExecutors
import VoiceCoreQueries

/// One measured read route: the wrk script that calls it over HTTP (a random tenant's key, a
/// random call of that tenant) and the pgbench script that runs its SQL as the edge does.
///
/// The pgbench script sends what ``TenantReads`` and ``CallQueries`` send, in the same round
/// trips: `BEGIN`, `SET TRANSACTION READ ONLY`, `SET LOCAL ROLE voicecore_tenant`, the
/// `set_config` of `app.tenant_id` and `statement_timeout`, (for the list) `SET LOCAL
/// plan_cache_mode`, and the route's statement, in one pipeline; then `COMMIT`. The statement is
/// ``CallQueries``' own text with its parameters in place: pgbench's variables are numbers, so the
/// tenant and call ids are built from the drawn numbers in SQL (``ApiBenchmarkData/tenantSQL(_:)``),
/// bound as parameters with `-M prepared`; the list's absent filters are NULL, its keyset the
/// first page's, its row count `limit + 1`, as the edge binds them for `?limit=50`.
struct ApiRoute: Sendable {
    var name: String
    var title: String
    var luaScript: URL
    var pgbenchScript: URL
    var lua: String
    var pgbench: String

    /// The statement timeout `TenantReads` sets by default (what `voicecore up` runs with unless told otherwise).
    static let statementTimeout = "2000ms"

    func write() throws {
        try lua.write(to: luaScript, atomically: false, encoding: .utf8)
        try pgbench.write(to: pgbenchScript, atomically: false, encoding: .utf8)
    }

    /// `GET /v1/calls?limit=50` of a random tenant.
    static func list(work: URL, tenants: [ApiBenchmark.BenchTenant], data: ApiBenchmarkData, limit: Int = 50) -> ApiRoute {
        let lua = luaPrelude(tenants) + """
            request = function()
              local t = math.random(#keys)
              return wrk.format("GET", "/v1/calls?limit=\(limit)", {["Authorization"] = "Bearer " .. keys[t]})
            end
            """
        let tenant = "(\(ApiBenchmarkData.tenantSQL(":t")))::uuid"
        let statement = substitute(CallQueries.listSQL, [
            1: tenant, 2: "NULL", 3: "NULL", 4: "NULL", 5: "NULL", 6: "NULL", 7: "NULL",
            8: "'infinity'", 9: "'ffffffff-ffff-ffff-ffff-ffffffffffff'", 10: String(limit + 1),
        ])
        let pgbench = """
            \\set t random(0, \(tenants.count - 1))
            \(scoped(tenant: ":t", statements: ["SET LOCAL plan_cache_mode = force_custom_plan", statement]))
            """
        return ApiRoute(name: "list", title: "GET /v1/calls (page of \(limit))", luaScript: work.appendingPathComponent("list.lua"),
                        pgbenchScript: work.appendingPathComponent("list.sql"), lua: lua, pgbench: pgbench)
    }

    /// `GET /v1/calls/{id}` of a random call of a random tenant.
    static func detail(work: URL, tenants: [ApiBenchmark.BenchTenant], data: ApiBenchmarkData) -> ApiRoute {
        let calls = tenants.map { "\"" + String(format: "%08x", ApiBenchmarkData.callHigh + UInt32($0.index)) + "\"" }.joined(separator: ", ")
        let lua = luaPrelude(tenants) + """
            local calls = {\(calls)}
            request = function()
              local t = math.random(#keys)
              local n = math.random(0, \(data.callsOfEveryTenant - 1))
              return wrk.format("GET", string.format("/v1/calls/%s-0000-7000-8000-%012x", calls[t], n), {["Authorization"] = "Bearer " .. keys[t]})
            end
            """
        let statement = substitute(CallQueries.detailSQL, [
            1: "(\(ApiBenchmarkData.tenantSQL(":t")))::uuid", 2: "(\(ApiBenchmarkData.callSQL(tenant: ":t", number: ":n")))::uuid",
        ])
        let pgbench = """
            \\set t random(0, \(tenants.count - 1))
            \\set n random(0, \(data.callsOfEveryTenant - 1))
            \(scoped(tenant: ":t", statements: [statement]))
            """
        return ApiRoute(name: "detail", title: "GET /v1/calls/{id}", luaScript: work.appendingPathComponent("detail.lua"),
                        pgbenchScript: work.appendingPathComponent("detail.sql"), lua: lua, pgbench: pgbench)
    }

    /// The tenant-scoped transaction around `statements`, as pgbench script text.
    static func scoped(tenant: String, statements: [String]) -> String {
        ([
            "\\startpipeline",
            "BEGIN;",
            "SET TRANSACTION READ ONLY;",
            "SET LOCAL ROLE voicecore_tenant;",
            "SELECT set_config('app.tenant_id', \(ApiBenchmarkData.tenantSQL(tenant)), true), set_config('statement_timeout', '\(statementTimeout)', true);",
        ] + statements.map { $0 + ";" } + [
            "\\endpipeline",
            "COMMIT;",
        ]).joined(separator: "\n") + "\n"
    }

    /// wrk's per-thread setup: the tenants' keys, a random seed per thread.
    static func luaPrelude(_ tenants: [ApiBenchmark.BenchTenant]) -> String {
        let keys = tenants.map { "\"" + $0.apiKey.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\"" }
        return """
            local keys = {\(keys.joined(separator: ", "))}
            local counter = 0
            setup = function(thread) thread:set("id", counter); counter = counter + 1 end
            init = function(args) math.randomseed(os.time() * 1000 + id) end

            """
    }

    /// `sql` with each `$n` replaced by `values[n]` (all of them at once, so `$10` is not `$1` and a `0`).
    static func substitute(_ sql: String, _ values: [Int: String]) -> String {
        sql.replacing(/\$(\d+)/) { match in Int(match.1).flatMap { values[$0] } ?? String(match.0) }
    }
}

/// A blocking HTTP/1.1 GET on 127.0.0.1 (`Connection: close`), run on a thread of its own: the
/// benchmark checks each route's answer before measuring it.
enum HTTPProbe {
    struct Answer: Sendable {
        var status: Int
        var body: String
    }

    static func get(port: Int, path: String, apiKey: String) async throws -> Answer {
        try await runBlocking("vc-http-probe") {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            guard fd >= 0 else { throw BenchmarkFailure("no socket") }
            defer { close(fd) }
            var timeout = timeval(tv_sec: 10, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = in_port_t(UInt16(port).bigEndian)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
            }
            guard connected else { throw BenchmarkFailure("could not connect to 127.0.0.1:\(port)") }
            let request = Array("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nAuthorization: Bearer \(apiKey)\r\nConnection: close\r\n\r\n".utf8)
            guard request.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, 0) }) == request.count else { throw BenchmarkFailure("could not send the request") }
            var response: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 65_536)
            while true {
                let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                if count <= 0 { break }
                response += buffer[0..<count]
            }
            let text = String(decoding: response, as: UTF8.self)
            // "HTTP/1.1 200 OK"
            let status = text.split(separator: " ", maxSplits: 2).dropFirst().first.flatMap { Int($0) } ?? 0
            let body = text.range(of: "\r\n\r\n").map { String(text[$0.upperBound...]) } ?? ""
            return Answer(status: status, body: body)
        }
    }
}
