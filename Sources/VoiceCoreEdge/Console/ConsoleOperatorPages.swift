import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import VoiceCoreBus
import VoiceCoreEvents
import VoiceCoreQueries

/// The operator's console (`/app/operator`, signed in with the admin key): every stream with its
/// groups' lag, pending entries and oldest pending age, each projection's gap and age, the edge's
/// request and publish rates; the dead letters with their reasons, inspected and requeued (through
/// a confirmation page, showing what moved and the depth after); every tenant's calls of today.
///
/// The data comes from ``Edge/operatorConsole`` (``ConsoleOperatorBackends``); without it (an
/// edge made without the operator's backends) the pages answer 503 saying so. A part that fails
/// (Redis or Postgres not answering) is said on the page where its table would be, and the page
/// answers 503, so the rest stays readable during an outage.
extension Edge {
    /// The most dead letters one page lists (and one "requeue all" moves).
    static let deadLettersShown = 200

    func addConsoleOperatorPages(to router: Router<BasicRequestContext>) {
        consoleOperatorPage(router, "/app/operator", parameters: ["backlog"]) { page in
            // `backlog=1`: only the groups with entries waiting (a deployment has hundreds of streams).
            let backlogOnly = try page.query.oneOf("backlog", ["1"]) != nil
            let backends = try operatorBackends()
            async let streams = attempt { try await backends.streams.reports(prefix: backends.prefix) }
            async let projections = attempt { try await backends.projections.projectionStatuses() }
            let (streamReports, projectionStatuses) = await (streams, projections)
            var data: [String: Any] = ["scripts": ["operator.js"], "prefix": backends.prefix]
            var failed = false
            switch streamReports {
            case .success(let reports):
                let rows = Self.streamRows(reports)
                let backlog = rows.filter { $0["behind"] as? Bool == true }
                data["streamRows"] = backlogOnly ? backlog : rows
                data["streamCount"] = ConsoleFormat.grouped(reports.count)
                data["backlogCount"] = ConsoleFormat.grouped(backlog.count)
                data["backlogOnly"] = backlogOnly
            case .failure(let error):
                data["streamsError"] = describeFailure(error, of: "Redis")
                failed = true
            }
            switch projectionStatuses {
            case .success(let statuses):
                data["projectionRows"] = statuses.map(Self.projectionRow)
            case .failure(let error):
                data["projectionsError"] = describeFailure(error, of: "Redis or Postgres")
                failed = true
            }
            let rates = metrics.rates.read()
            data["rates"] = ["requests": rates.requests, "publishes": rates.publishes, "monotonicMs": rates.monotonicMilliseconds,
                             "requestsText": ConsoleFormat.grouped(rates.requests), "publishesText": ConsoleFormat.grouped(rates.publishes)]
            return ConsoleView.page("operator-overview", title: "Platform", nav: "operator", session: page.session, data: Self.withOperatorStyles(data),
                                    status: failed ? .serviceUnavailable : .ok)
        }

        // The edge's cumulative counters with a monotonic time: operator.js computes the rates
        // from two readings (a rate computed here would need state per viewer).
        consoleOperatorPage(router, "/app/operator/rates.json", parameters: []) { _ in
            let rates = metrics.rates.read()
            let body = JSONObjectWriter.object { json in
                json.field("requests", rates.requests)
                json.field("publishes", rates.publishes)
                json.field("monotonic_ms", Int(rates.monotonicMilliseconds))
            }
            return Response(status: .ok, headers: [.contentType: MediaType.applicationJson.description, .cacheControl: "no-store",
                                                   .xContentTypeOptions: "nosniff"],
                            body: .init(byteBuffer: ByteBuffer(bytes: body)))
        }

        consoleOperatorPage(router, "/app/operator/dead-letters", parameters: []) { page in
            let backends = try operatorBackends()
            var data: [String: Any] = [:]
            var failed = false
            do {
                let streams = try await backends.deadLetters.list(prefix: backends.prefix).sorted { $0.stream < $1.stream }
                data["deadLetterRows"] = streams.map { stream, length -> [String: Any] in
                    let parts = Self.deadLetterParts(stream)
                    return ["stream": stream, "origin": parts?.origin ?? "", "group": parts?.group ?? "", "depth": length,
                            "depthText": ConsoleFormat.grouped(length), "path": Self.deadLetterPath(stream), "hasEntries": length > 0]
                }
                data["total"] = ConsoleFormat.grouped(streams.reduce(0) { $0 + $1.length })
                data["hasRows"] = !streams.isEmpty
            } catch {
                data["deadLettersError"] = describeFailure(error, of: "Redis")
                failed = true
            }
            return ConsoleView.page("operator-dead-letters", title: "Dead letters", nav: "dead-letters", session: page.session, data: Self.withOperatorStyles(data),
                                    status: failed ? .serviceUnavailable : .ok)
        }

        consoleOperatorPage(router, "/app/operator/dead-letters/{stream}", parameters: []) { page in
            let backends = try operatorBackends()
            let stream = try deadLetterStream(page, backends)
            let depth = try await deadLetterDepth(stream, backends)
            let entries = try await backends.deadLetters.show(stream, count: Self.deadLettersShown)
            var data = Self.deadLetterPageData(stream)
            data["depth"] = depth
            data["depthText"] = ConsoleFormat.grouped(depth)
            data["entries"] = entries.map(Self.deadLetterEntry)
            data["hasEntries"] = !entries.isEmpty
            data["shownAll"] = entries.count >= depth
            data["shown"] = entries.count
            data["shownText"] = Self.entries(entries.count)
            return ConsoleView.page("operator-dead-letter", title: "Dead letters of \(stream)", nav: "dead-letters", session: page.session, data: Self.withOperatorStyles(data))
        }

        // Step 1 of a requeue: what would move, and a form that moves it.
        consoleOperatorForm(router, "/app/operator/dead-letters/{stream}/requeue") { page, form in
            let backends = try operatorBackends()
            let stream = try deadLetterStream(page, backends)
            let selection = try Self.requeueSelection(form)
            let entries = try await backends.deadLetters.show(stream, count: Self.deadLettersShown)
            let chosen = selection.map { ids in entries.filter { ids.contains($0.id) } } ?? entries
            var data = Self.deadLetterPageData(stream)
            data["all"] = selection == nil
            data["entries"] = chosen.map(Self.deadLetterEntry)
            data["count"] = chosen.count
            data["countText"] = Self.entries(chosen.count)
            data["hasEntries"] = !chosen.isEmpty
            // Ids asked for but gone already (requeued by someone else, purged) are said, not hidden.
            let missing = (selection ?? []).filter { id in !entries.contains { $0.id == id } }
            data["missing"] = missing.map { ["id": $0.description] }
            data["hasMissing"] = !missing.isEmpty
            return ConsoleView.page("operator-confirm-requeue", title: "Requeue dead letters?", nav: "dead-letters", session: page.session, data: Self.withOperatorStyles(data))
        }

        // Step 2: the requeue itself, and what it did. The confirmation names each entry it showed,
        // so an entry dead-lettered in between is not moved unseen.
        consoleOperatorForm(router, "/app/operator/dead-letters/{stream}/requeue/confirmed") { page, form in
            let backends = try operatorBackends()
            let stream = try deadLetterStream(page, backends)
            guard form.value("all") == nil else { throw Problem.malformed("all", "is not taken here: confirm the entries by their ids") }
            let selection = try Self.requeueSelection(form)
            let before = try await deadLetterDepth(stream, backends)
            let outcome = try await Self.requeue(selection, from: stream, deadLetters: backends.deadLetters)
            let after = try await deadLetterDepth(stream, backends)
            logger.notice("dead letters requeued from the console", metadata: [
                "stream": "\(stream)", "requeued": "\(outcome.requeued.count)", "refused": "\(outcome.refused.count)",
                "missing": "\(outcome.missing.count)"])
            var data = Self.deadLetterPageData(stream)
            data["requeued"] = outcome.requeued.map { ["id": $0.id.description, "group": $0.group, "retryStream": $0.retryStream] }
            data["requeuedCount"] = outcome.requeued.count
            data["requeuedText"] = Self.entries(outcome.requeued.count)
            data["hasRequeued"] = !outcome.requeued.isEmpty
            data["refused"] = outcome.refused.map { ["id": $0.id.description, "reason": $0.reason] }
            data["hasRefused"] = !outcome.refused.isEmpty
            data["missing"] = outcome.missing.map { ["id": $0.description] }
            data["hasMissing"] = !outcome.missing.isEmpty
            data["depthBefore"] = before
            data["depthAfter"] = after
            return ConsoleView.page("operator-requeue-result", title: "Requeued", nav: "dead-letters", session: page.session, data: Self.withOperatorStyles(data))
        }

        consoleOperatorPage(router, "/app/operator/tenants", parameters: []) { page in
            let backends = try operatorBackends()
            let body = try await backends.reads.readAsPlatform { db in try OperatorQueries.tenantsToday(db) }
            guard let object = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any] else {
                throw Problem(.serviceUnavailable, "Temporarily unavailable", detail: "the tenants could not be read; retry later")
            }
            let tenants = (object["tenants"] as? [[String: Any]]) ?? []
            let total = (object["total"] as? Int) ?? tenants.count
            let data: [String: Any] = [
                "tenantRows": tenants.map { tenant -> [String: Any] in
                    var row = tenant
                    for key in ["calls_today", "answered_today", "in_progress"] {
                        row[key + "_text"] = ConsoleFormat.grouped((tenant[key] as? Int) ?? 0)
                    }
                    return row
                },
                "total": total, "listed": tenants.count, "truncated": tenants.count < total,
                "callsToday": ConsoleFormat.grouped((object["calls_today"] as? Int) ?? 0),
            ]
            return ConsoleView.page("operator-tenants", title: "Tenants", nav: "tenants", session: page.session, data: Self.withOperatorStyles(data))
        }
    }

    // MARK: Steps

    /// The operator's backends, or a 503 page saying this edge has none.
    private func operatorBackends() throws(Problem) -> ConsoleOperatorBackends {
        guard let operatorConsole else {
            throw Problem(.serviceUnavailable, "Not available", detail: "this edge was started without the operator's data sources")
        }
        return operatorConsole
    }

    /// The dead-letter stream of the path: a key under the deployment's prefix named
    /// `<stream>:dlq:<group>`; anything else is a 404 page (never a key of another kind read).
    private func deadLetterStream(_ page: ConsolePageRequest, _ backends: ConsoleOperatorBackends) throws(Problem) -> String {
        guard let raw = page.context.parameters.get("stream"), let stream = raw.removingPercentEncoding,
              stream.hasPrefix(backends.prefix + ":"), Self.deadLetterParts(stream) != nil,
              !stream.unicodeScalars.contains(where: { $0.properties.generalCategory == .control })
        else { throw Problem(.notFound, "Not found", detail: "dead-letter stream") }
        return stream
    }

    /// How many entries the dead-letter stream holds; a 404 page when there is no such stream.
    private func deadLetterDepth(_ stream: String, _ backends: ConsoleOperatorBackends) async throws -> Int {
        do {
            return try await backends.streams.report(stream).length
        } catch let error as RedisError where error.kind == .server {
            throw Problem(.notFound, "Not found", detail: "dead-letter stream \(stream)")
        }
    }

    private func describeFailure(_ error: any Error, of what: String) -> String {
        logger.warning("operator console read failed", metadata: ["error": "\(error)"])
        if let error = error as? ReadUnavailable { return "Not available now: \(error.reason)." }
        return "\(what) did not answer (\(error)). Retry in a moment."
    }

    private func attempt<Value: Sendable>(_ body: () async throws -> Value) async -> Result<Value, any Error> {
        do {
            return .success(try await body())
        } catch {
            return .failure(error)
        }
    }

    // MARK: Requeueing

    /// What one requeue did.
    struct RequeueOutcome: Sendable {
        struct Moved: Sendable {
            var id: StreamEntryID
            var group: String
            var retryStream: String
        }

        var requeued: [Moved] = []
        var refused: [(id: StreamEntryID, reason: String)] = []
        /// Ids asked for that were not in the stream (requeued or purged already).
        var missing: [StreamEntryID] = []
    }

    /// The entries a requeue form names: its `id` fields, or every entry with `all=1` (nil).
    /// - Throws: a 400 page for a form naming neither, or an id that is not an entry id.
    static func requeueSelection(_ form: ConsoleForm) throws(Problem) -> [StreamEntryID]? {
        if form.value("all") == "1" { return nil }
        let texts = form.values("id")
        guard !texts.isEmpty else { throw Problem.malformed("id", "names no entry: choose an entry to requeue, or requeue all") }
        guard texts.count <= deadLettersShown else { throw Problem.malformed("id", "names more than \(deadLettersShown) entries") }
        var ids: [StreamEntryID] = []
        for text in texts {
            guard let id = StreamEntryID(text) else { throw Problem.malformed("id", "is not a stream entry id (like 1700000000000-0)") }
            if !ids.contains(id) { ids.append(id) }
        }
        return ids
    }

    /// Requeues `ids` (nil: the oldest ``deadLettersShown``) with
    /// ``DeadLetters/requeue(_:ids:maxRequeues:force:)``, which refuses the whole batch for one
    /// entry it will not move (not a dead letter, requeued too often) and moves nothing then: a
    /// refused entry is set aside with its reason and the rest requeued, so one poison entry does
    /// not hold back the others.
    static func requeue(_ ids: [StreamEntryID]?, from stream: String, deadLetters: DeadLetters) async throws -> RequeueOutcome {
        let present = try await deadLetters.show(stream, count: deadLettersShown)
        var outcome = RequeueOutcome()
        var wanted = ids ?? present.map(\.id)
        outcome.missing = wanted.filter { id in !present.contains { $0.id == id } }
        wanted.removeAll { outcome.missing.contains($0) }
        while !wanted.isEmpty {
            do {
                let moved = try await deadLetters.requeue(stream, ids: wanted)
                // The new ids come back in stream order, one per entry still there; an entry gone
                // meanwhile (another operator) leaves a shorter list.
                let entries = present.filter { wanted.contains($0.id) }
                for (index, entry) in entries.enumerated() where index < moved.count {
                    let origin = entry["dlq.origin_stream"] ?? "", group = entry["dlq.group"] ?? ""
                    outcome.requeued.append(.init(id: entry.id, group: group, retryStream: "\(origin):retry:\(group)"))
                }
                break
            } catch let refusal as DeadLetters.RequeueRefused {
                outcome.refused.append((refusal.entry, refusal.reason))
                wanted.removeAll { $0 == refusal.entry }
            }
        }
        return outcome
    }

    // MARK: Display

    /// `data` with the operator pages' stylesheet.
    static func withOperatorStyles(_ data: [String: Any]) -> [String: Any] {
        data.merging(["styles": ["operator.css"]]) { $1 }
    }

    static func streamRows(_ reports: [StreamAdmin.StreamReport]) -> [[String: Any]] {
        var rows: [[String: Any]] = []
        for report in reports {
            let kind = report.stream.contains(":dlq:") ? "dead letters" : report.stream.contains(":retry:") ? "requeued" : ""
            let base: [String: Any] = ["stream": report.stream, "length": report.length, "lengthText": ConsoleFormat.grouped(report.length), "kind": kind]
            if report.groups.isEmpty {
                rows.append(base.merging(["group": "", "noGroup": true]) { $1 })
                continue
            }
            for group in report.groups {
                var row = base
                row["group"] = group.name
                row["lag"] = group.lag.map(ConsoleFormat.grouped) ?? "unknown"
                row["pending"] = ConsoleFormat.grouped(group.pending)
                row["oldestPending"] = group.oldestPendingIdleMs.map { Self.age(seconds: Double($0) / 1000) } ?? "—"
                row["behind"] = (group.lag ?? 0) > 0 || group.pending > 0
                rows.append(row)
            }
        }
        return rows
    }

    static func projectionRow(_ status: ConsoleProjectionStatus) -> [String: Any] {
        ["projection": status.projection, "gap": status.gap, "gapText": (status.gapIsLowerBound ? "≥ " : "") + ConsoleFormat.grouped(status.gap),
         "age": status.oldestUnprojectedSeconds.map { Self.age(seconds: $0) } ?? "—", "failures": ConsoleFormat.grouped(status.failures),
         "behind": status.gap > 0, "failing": status.failures > 0]
    }

    /// `<origin>:dlq:<group>` split at its last `:dlq:`; nil for any other name.
    static func deadLetterParts(_ stream: String) -> (origin: String, group: String)? {
        guard let range = stream.range(of: ":dlq:", options: .backwards) else { return nil }
        let origin = String(stream[..<range.lowerBound]), group = String(stream[range.upperBound...])
        guard !origin.isEmpty, !group.isEmpty else { return nil }
        return (origin, group)
    }

    /// The console path of a dead-letter stream (its name percent-encoded as one path segment).
    static func deadLetterPath(_ stream: String) -> String {
        var allowed = CharacterSet.alphanumerics.intersection(CharacterSet(charactersIn: Unicode.Scalar(0)...Unicode.Scalar(127)))
        allowed.insert(charactersIn: "-._~:")
        return "/app/operator/dead-letters/" + (stream.addingPercentEncoding(withAllowedCharacters: allowed) ?? "")
    }

    static func deadLetterPageData(_ stream: String) -> [String: Any] {
        let parts = deadLetterParts(stream)
        return ["stream": stream, "origin": parts?.origin ?? "", "group": parts?.group ?? "", "path": deadLetterPath(stream)]
    }

    /// One dead letter for a template: what `voicecore dlq show` prints, and every field as text.
    static func deadLetterEntry(_ entry: StreamEntry) -> [String: Any] {
        var row: [String: Any] = ["id": entry.id.description]
        let known: [(key: String, field: String)] = [
            ("reason", "dlq.reason"), ("error", "dlq.error"), ("origin", "dlq.origin_stream"), ("originID", "dlq.origin_id"), ("group", "dlq.group"),
            ("attempts", "dlq.attempts"), ("time", "dlq.time"), ("type", "type"), ("eventID", "id"), ("requeues", DeadLetters.requeueCountField),
        ]
        for (key, field) in known {
            if let value = entry[field] { row[key] = value }
        }
        row["fields"] = (entry.fields ?? []).map { field -> [String: Any] in
            // Bytes that are not UTF-8 show as replacement characters: this is for reading.
            var value = String(decoding: field.value, as: UTF8.self)
            if value.count > 4_000 { value = String(value.prefix(4_000)) + " … (\(field.value.count) bytes)" }
            return ["name": field.name, "value": value]
        }
        return row
    }

    /// "1 entry", "3 entries".
    static func entries(_ count: Int) -> String {
        count == 1 ? "1 entry" : "\(ConsoleFormat.grouped(count)) entries"
    }

    /// An age as the operator's pages write it: "850 ms", "42 s", "3 min 12 s", "2 h 05 min", "3 d 4 h".
    static func age(seconds: Double) -> String {
        guard seconds.isFinite, seconds >= 0 else { return "—" }
        if seconds < 1 { return "\(Int((seconds * 1000).rounded())) ms" }
        let whole = Int(seconds.rounded(.down))
        if whole < 86_400 { return ConsoleFormat.duration(seconds: whole) }
        return "\(whole / 86_400) d \(whole % 86_400 / 3600) h"
    }
}
