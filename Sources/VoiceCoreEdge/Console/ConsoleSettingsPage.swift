import Foundation
import HTTPTypes
import Hummingbird
import Logging
import VoiceCoreEvents
import VoiceCoreTenants

/// The tenant's settings in the console (`/app/settings`): the receptionist's greeting, persona,
/// business hours, FAQ, intents' phrases, forwarding number, conversation mode and retention, and
/// the outbound webhooks.
///
/// Saving builds ``AISettings`` from the form and goes through ``Edge/publishSettings(_:of:keyID:deduplicationKey:metricSource:)``,
/// the very function behind `PUT /v1/settings`: the same validation, the same `ChangeSettings`
/// for the tenants service. A refused value re-renders the form with 422, the message next to
/// its field, and nothing published. The page reads the settings from the tenant directory (what
/// the tenants service stored); after a save it waits a moment for the service to store them, so
/// the page that follows shows them.
extension Edge {
    /// How long a save waits for the tenants service to store the settings before it shows the
    /// page anyway (the change is published; it takes effect when the service applies it).
    static let settingsAppliedWait: Duration = .seconds(3)
    /// Empty FAQ rows the form offers for new questions.
    static let blankFAQRows = 2

    func addConsoleSettingsPages(to router: Router<BasicRequestContext>) {
        guard let directory else { return }
        consoleTenantPage(router, "/app/settings", parameters: ["saved", "disabled"]) { page, tenant in
            let query = try ConsoleQuery(page.request, allowed: ["saved", "disabled"])
            let profile = try await tenantProfile(tenant, directory: directory)
            var data = settingsData(form: SettingsForm(profile.aiSettings ?? defaultSettings(timeZone: profile.timeZone)), profile: profile)
            if query.echo(["saved"])["saved"] != nil { data["saved"] = true }
            if query.echo(["disabled"])["disabled"] != nil { data["webhookDisabled"] = true }
            return ConsoleView.page("settings", title: "Settings", nav: "settings", session: page.session, data: data)
        }

        consoleTenantForm(router, "/app/settings") { page, tenant, form in
            var settingsForm = SettingsForm(form)
            let settings: AISettings
            do {
                settings = try settingsForm.settings()
                _ = try await publishSettings(settings, of: tenant, keyID: page.session.keyID ?? "console", deduplicationKey: nil, metricSource: "console")
            } catch let error as MessageDecodingError {
                settingsForm.attach(error)
                let profile = try await tenantProfile(tenant, directory: directory)
                return ConsoleView.page("settings", title: "Settings", nav: "settings", session: page.session,
                                        data: settingsData(form: settingsForm, profile: profile), status: .unprocessableContent)
            }
            // The tenants service stores them and then announces them; the page after the
            // redirect reads the directory, so give the service a moment.
            let deadline = ContinuousClock.now + Self.settingsAppliedWait
            var applied = false
            while !applied, ContinuousClock.now < deadline {
                applied = try await directory.profile(of: tenant)?.aiSettings == settings
                if !applied { try await Task.sleep(for: .milliseconds(50)) }
            }
            // This edge knows of the change now: its next call need not wait for the event feed
            // (which tells every other edge, and this one of changes made elsewhere).
            if applied { tenants.forget(tenant) }
            return ConsoleView.redirect(to: "/app/settings?saved=1")
        }

        consoleTenantForm(router, "/app/settings/webhooks") { page, tenant, form in
            let url = (form.value("url") ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
            let format = OutboundWebhook.Format(rawValue: form.value("format") ?? "") ?? .json
            let events = form.values("events")
            var errors: [String: String] = [:]
            var added: OutboundWebhook?
            if events.isEmpty {
                errors["webhook_events"] = "Choose at least one event to deliver."
            } else {
                do {
                    added = try await directory.addWebhook(to: tenant, url: url, format: format, eventTypes: events)
                } catch TenantError.invalid(let field, let reason) {
                    errors[field == "url" ? "webhook_url" : "webhook_events"] = ConsoleQuery.sentence((field == "url" ? "The URL " : "The events ") + reason)
                }
            }
            let profile = try await tenantProfile(tenant, directory: directory)
            var data = settingsData(form: SettingsForm(profile.aiSettings ?? defaultSettings(timeZone: profile.timeZone)), profile: profile)
            if let added {
                data["newWebhook"] = ["secret": String(decoding: added.signingSecret, as: UTF8.self)]
            } else {
                data["errors"] = errors
                data["webhookForm"] = ["url": url]
                data["webhookFormats"] = Self.options(OutboundWebhook.Format.allCases.map(\.rawValue), selected: format.rawValue, label: { $0 })
                data["webhookEvents"] = TenantDirectory.webhookEventTypes.map { ["value": $0, "selected": events.contains($0)] }
            }
            return ConsoleView.page("settings", title: "Settings", nav: "settings", session: page.session, data: data,
                                    status: added == nil ? .unprocessableContent : .ok)
        }

        consoleTenantForm(router, "/app/settings/webhooks/{webhook}/disable") { page, tenant, _ in
            guard let webhook = page.identifier("webhook"), try await directory.disableWebhook(webhook, of: tenant) else {
                return ConsoleView.notFound(session: page.session, what: "webhook")
            }
            return ConsoleView.redirect(to: "/app/settings?disabled=1")
        }
    }

    /// The tenant's profile (settings and active webhooks) from the directory; 503 page when it
    /// cannot be read.
    private func tenantProfile(_ tenant: Identifier, directory: TenantDirectory) async throws -> TenantProfile {
        let profile: TenantProfile?
        do {
            profile = try await directory.profile(of: tenant)
        } catch {
            logger.warning("tenant directory unreachable", metadata: ["error": "\(error)"])
            throw Problem.unavailable("the tenant directory")
        }
        guard let profile else { throw Problem.unknownTenant }
        return profile
    }

    /// What a tenant that never saved settings has: the built-in settings, with the greeting the
    /// edge says for it and the tenant's own time zone.
    private func defaultSettings(timeZone: String) -> AISettings {
        var settings = AISettings.builtIn
        settings.greeting = configuration.greeting
        settings.businessHours.timeZone = timeZone
        return settings
    }

    /// The settings template's data: the form, its errors, the webhooks.
    private func settingsData(form: SettingsForm, profile: TenantProfile) -> [String: Any] {
        return [
            "form": form.templateData,
            "errors": form.errors,
            "hasErrors": form.hasErrors,
            "conversationModes": Self.options(AISettings.ConversationMode.allCases.map(\.rawValue), selected: form.conversation,
                                              label: { $0 == "gather" ? "Gather (speech and keys over webhooks)" : "ConversationRelay (streamed speech)" }),
            "webhooks": profile.webhooks.map { webhook -> [String: Any] in
                ["id": webhook.id.description, "url": Self.displayedURL(webhook.url), "format": webhook.format.rawValue,
                 "events": webhook.eventTypes.joined(separator: ", ")]
            },
            "webhookFormats": Self.options(OutboundWebhook.Format.allCases.map(\.rawValue), selected: "json", label: { $0 }),
            "webhookEvents": TenantDirectory.webhookEventTypes.map { ["value": $0, "selected": true] },
        ]
    }

    /// A webhook's URL as the page shows it: scheme, host and port, the path hidden (a Slack
    /// webhook's path is its credential; the console's pages are seen over shoulders).
    static func displayedURL(_ url: String) -> String {
        guard let components = URLComponents(string: url), let scheme = components.scheme, let host = components.host else { return "(unreadable URL)" }
        let port = components.port.map { ":\($0)" } ?? ""
        let hasPath = !(components.path.isEmpty || components.path == "/") || components.query != nil
        return "\(scheme)://\(host)\(port)" + (hasPath ? "/…" : "/")
    }
}

/// The settings form: what it shows, what it posts, and the validation errors placed on its
/// fields. A form value is kept as typed, so a refused form comes back as the tenant left it.
struct SettingsForm {
    struct Day {
        var day: AISettings.BusinessHours.Weekday
        var open: Bool
        var opens: String
        var closes: String
    }

    struct FAQRow {
        var question: String
        var answer: String
        var keywords: String
    }

    var greeting: String
    var personality: String
    var forwardingNumber: String
    var conversation: String
    var timeZone: String
    var days: [Day]
    var faq: [FAQRow]
    /// Phrases per intent, one per line.
    var intents: [(intent: Intent, phrases: String)]
    /// Days kept, as typed (empty: the default), by the retention field's name.
    var retention: [String: String]

    /// Errors by field id (`greeting`, `time_zone`, `faq`, `settings` for one that has no field).
    var errors: [String: String] = [:]
    var dayErrors: [AISettings.BusinessHours.Weekday: String] = [:]
    /// By FAQ row and part (`question`, `answer`, `keywords`).
    var faqErrors: [Int: [String: String]] = [:]
    var intentErrors: [Intent: String] = [:]

    var hasErrors: Bool { !errors.isEmpty || !dayErrors.isEmpty || !faqErrors.isEmpty || !intentErrors.isEmpty }

    /// Which row of the form each FAQ entry and intent of ``settings()`` came from, to place the
    /// validation's `faq[i]` and `intents[i]` on their fields.
    private var faqRowOfEntry: [Int] = []
    private var intentOfEntry: [Intent] = []

    static let dayNames: [AISettings.BusinessHours.Weekday: String] = [
        .mon: "Monday", .tue: "Tuesday", .wed: "Wednesday", .thu: "Thursday", .fri: "Friday", .sat: "Saturday", .sun: "Sunday",
    ]

    /// The form filled with `settings`.
    init(_ settings: AISettings) {
        greeting = settings.greeting
        personality = settings.personality ?? ""
        forwardingNumber = settings.forwardingNumber ?? ""
        conversation = (settings.conversation ?? .gather).rawValue
        timeZone = settings.businessHours.timeZone
        days = AISettings.BusinessHours.Weekday.allCases.map { day in
            let opening = settings.businessHours.openings.first { $0.day == day }
            return Day(day: day, open: opening != nil, opens: opening?.opens ?? "09:00", closes: opening?.closes ?? "17:00")
        }
        faq = settings.faq.map { FAQRow(question: $0.question, answer: $0.answer, keywords: $0.keywords.joined(separator: ", ")) }
        intents = Intent.allCases.map { intent in
            (intent, settings.intents.filter { $0.intent == intent }.flatMap(\.phrases).joined(separator: "\n"))
        }
        let policy = settings.retention ?? RetentionPolicy()
        retention = ["transcripts_days": policy.transcriptsDays, "recordings_days": policy.recordingsDays, "calls_days": policy.callsDays]
            .mapValues { $0.map(String.init) ?? "" }
    }

    /// The form as posted.
    init(_ form: ConsoleForm) {
        func text(_ name: String) -> String { Self.lines(form.value(name) ?? "") }
        greeting = text("greeting")
        personality = text("personality")
        forwardingNumber = text("forwarding_number")
        conversation = text("conversation")
        timeZone = text("time_zone")
        days = AISettings.BusinessHours.Weekday.allCases.map { day in
            Day(day: day, open: form.value("open_\(day.rawValue)") != nil,
                opens: text("opens_\(day.rawValue)"), closes: text("closes_\(day.rawValue)"))
        }
        var faq: [FAQRow] = []
        var index = 0
        while index <= 100, form.value("faq_\(index)_question") != nil || form.value("faq_\(index)_answer") != nil {
            faq.append(FAQRow(question: text("faq_\(index)_question"), answer: text("faq_\(index)_answer"), keywords: text("faq_\(index)_keywords")))
            index += 1
        }
        self.faq = faq
        intents = Intent.allCases.map { ($0, text("intent_\($0.rawValue)")) }
        retention = Dictionary(uniqueKeysWithValues: Self.retentionFields.map { ($0.name, text("retention_\($0.name)")) })
    }

    /// The retention fields: name (as in `retention`), label, the platform's default.
    static let retentionFields: [(name: String, label: String, defaultDays: Int)] = [
        ("transcripts_days", "Transcripts", RetentionPolicy.defaultTranscriptsDays),
        ("recordings_days", "Recordings", RetentionPolicy.defaultRecordingsDays),
        ("calls_days", "Calls", RetentionPolicy.defaultCallsDays),
    ]

    /// The retention the form says; nil when every field is empty (the defaults), so settings
    /// saved without retention compare equal to what the directory stores.
    private func retentionPolicy() throws(MessageDecodingError) -> RetentionPolicy? {
        var days: [String: Int] = [:]
        for field in Self.retentionFields {
            let text = retention[field.name] ?? ""
            guard !text.isEmpty else { continue }
            guard let value = Int(text) else {
                throw MessageDecodingError(field: "data.settings.retention.\(field.name)", reason: "must be a whole number of days")
            }
            days[field.name] = value
        }
        let policy = RetentionPolicy(transcriptsDays: days["transcripts_days"], recordingsDays: days["recordings_days"], callsDays: days["calls_days"])
        return policy.isEmpty ? nil : policy
    }

    /// Text without the `\r` browsers send with line breaks, and without spaces around it.
    private static func lines(_ text: String) -> String {
        text.replacingOccurrences(of: "\r\n", with: "\n").replacingOccurrences(of: "\r", with: "\n")
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// The settings the form says (not yet validated: ``Edge/publishSettings`` does that).
    /// - Throws: `MessageDecodingError` for what the form itself cannot express (an unknown
    ///   conversation mode), named like the validation's fields.
    mutating func settings() throws(MessageDecodingError) -> AISettings {
        guard let mode = AISettings.ConversationMode(rawValue: conversation.isEmpty ? "gather" : conversation) else {
            throw MessageDecodingError(field: "data.settings.conversation", reason: "must be gather or relay")
        }
        var entries: [AISettings.FAQEntry] = []
        faqRowOfEntry = []
        for (row, item) in faq.enumerated() where !(item.question.isEmpty && item.answer.isEmpty && item.keywords.isEmpty) {
            let keywords = item.keywords.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            entries.append(AISettings.FAQEntry(question: item.question, answer: item.answer, keywords: keywords))
            faqRowOfEntry.append(row)
        }
        var phrases: [AISettings.IntentPhrases] = []
        intentOfEntry = []
        for (intent, text) in intents {
            let list = text.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            guard !list.isEmpty else { continue }
            phrases.append(AISettings.IntentPhrases(intent: intent, phrases: list))
            intentOfEntry.append(intent)
        }
        let openings = days.filter(\.open).map { AISettings.BusinessHours.Opening(day: $0.day, opens: $0.opens, closes: $0.closes) }
        return AISettings(greeting: greeting, personality: personality.isEmpty ? nil : personality, intents: phrases,
                          businessHours: AISettings.BusinessHours(timeZone: timeZone, openings: openings), faq: entries,
                          forwardingNumber: forwardingNumber.isEmpty ? nil : forwardingNumber, conversation: mode, retention: try retentionPolicy())
    }

    /// Places a validation error on the field it names (`data.settings.greeting`,
    /// `data.settings.faq[2].answer`, …); one the form has no field for goes on top.
    mutating func attach(_ error: MessageDecodingError) {
        var path = error.field
        for prefix in ["data.settings.", "body.settings.", "body.", "settings."] where path.hasPrefix(prefix) {
            path = String(path.dropFirst(prefix.count))
            break
        }
        func message(_ label: String) -> String { ConsoleQuery.sentence("\(label) \(error.reason)") }
        func index(after name: String) -> Int? {
            guard path.hasPrefix(name + "["), let close = path.firstIndex(of: "]") else { return nil }
            return Int(path[path.index(path.startIndex, offsetBy: name.count + 1)..<close])
        }
        if path == "greeting" {
            errors["greeting"] = message("The greeting")
        } else if path == "personality" {
            errors["personality"] = message("The persona")
        } else if path == "forwarding_number" {
            errors["forwarding_number"] = message("The forwarding number")
        } else if path == "business_hours.time_zone" {
            errors["time_zone"] = message("The time zone")
        } else if path == "conversation" {
            errors["settings"] = message("The conversation mode")
        } else if path.hasPrefix("retention."), let field = Self.retentionFields.first(where: { path == "retention.\($0.name)" }) {
            errors["retention_\(field.name)"] = message("\(field.label) retention")
        } else if path.hasPrefix("retention") {
            errors["settings"] = message("Retention")
        } else if let entry = index(after: "business_hours.openings") {
            let openings = days.filter(\.open)
            if entry < openings.count {
                let part = path.hasSuffix(".closes") ? "The closing time" : "The opening time"
                dayErrors[openings[entry].day] = message(part)
            } else {
                errors["settings"] = message("Business hours")
            }
        } else if let entry = index(after: "faq") {
            let row = entry < faqRowOfEntry.count ? faqRowOfEntry[entry] : 0
            let part = path.contains(".answer") ? "answer" : path.contains(".keywords") ? "keywords" : "question"
            let label = ["question": "The question", "answer": "The answer", "keywords": "A keyword"][part] ?? "This"
            faqErrors[row, default: [:]][part] = message(label)
        } else if path == "faq" {
            errors["faq"] = message("The FAQ")
        } else if let entry = index(after: "intents") {
            if entry < intentOfEntry.count {
                intentErrors[intentOfEntry[entry]] = message("A phrase")
            } else {
                errors["settings"] = message("The intents")
            }
        } else {
            errors["settings"] = ConsoleQuery.sentence("\(error.field) \(error.reason)")
        }
    }

    /// The template's `form`: every field, FAQ rows plus blank ones, errors on rows.
    var templateData: [String: Any] {
        var faqRows = faq
        faqRows.append(contentsOf: Array(repeating: FAQRow(question: "", answer: "", keywords: ""), count: Edge.blankFAQRows))
        return [
            "greeting": greeting,
            "personality": personality,
            "forwardingNumber": forwardingNumber,
            "timeZone": timeZone,
            "days": days.map { day -> [String: Any] in
                var row: [String: Any] = ["day": day.day.rawValue, "name": Self.dayNames[day.day] ?? day.day.rawValue,
                                          "open": day.open, "opens": day.opens, "closes": day.closes]
                if let error = dayErrors[day.day] { row["error"] = error }
                return row
            },
            "faq": faqRows.enumerated().map { index, item -> [String: Any] in
                var row: [String: Any] = ["index": String(index), "number": String(index + 1),
                                          "question": item.question, "answer": item.answer, "keywords": item.keywords]
                for (part, error) in faqErrors[index] ?? [:] { row[part + "Error"] = error }
                return row
            },
            "intents": intents.map { intent, phrases -> [String: Any] in
                var row: [String: Any] = ["intent": intent.rawValue, "label": intent.rawValue.capitalized, "phrases": phrases]
                if let error = intentErrors[intent] { row["error"] = error }
                return row
            },
            "retention": Self.retentionFields.map { field -> [String: Any] in
                var row: [String: Any] = ["name": field.name, "label": field.label, "days": retention[field.name] ?? "",
                                          "defaultDays": String(field.defaultDays)]
                if let error = errors["retention_\(field.name)"] { row["error"] = error }
                return row
            },
        ]
    }
}
