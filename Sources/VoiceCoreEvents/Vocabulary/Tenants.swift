import VoiceCoreTime

/// A tenant's billing plan.
public enum Plan: String, Sendable, Hashable, Codable, CaseIterable {
    case starter, growth, enterprise
}

/// How the receptionist behaves for a tenant: its greeting, the intents it listens for and when
/// the business is open.
public struct AISettings: Sendable, Hashable, Codable, JSONObjectCodable {
    /// One intent and the phrases that signal it.
    public struct IntentPhrases: Sendable, Hashable, Codable, JSONObjectCodable {
        public var intent: Intent
        public var phrases: [String]

        public init(intent: Intent, phrases: [String]) {
            self.intent = intent
            self.phrases = phrases
        }
    }

    public struct BusinessHours: Sendable, Hashable, Codable, JSONObjectCodable {
        public enum Weekday: String, Sendable, Hashable, Codable, CaseIterable {
            case mon, tue, wed, thu, fri, sat, sun
        }

        public struct Opening: Sendable, Hashable, Codable, JSONObjectCodable {
            public var day: Weekday
            /// `HH:MM`, local time.
            public var opens: String
            public var closes: String

            public init(day: Weekday, opens: String, closes: String) {
                self.day = day
                self.opens = opens
                self.closes = closes
            }
        }

        /// IANA time zone, e.g. `America/New_York`.
        public var timeZone: String
        public var openings: [Opening]

        public init(timeZone: String, openings: [Opening]) {
            self.timeZone = timeZone
            self.openings = openings
        }

        enum CodingKeys: String, CodingKey {
            case timeZone = "time_zone", openings
        }
    }

    /// A question callers ask and the answer the receptionist gives.
    public struct FAQEntry: Sendable, Hashable, Codable, JSONObjectCodable {
        public var question: String
        public var answer: String
        /// Words or phrases that point at this question; empty: the question's own words.
        public var keywords: [String]

        public init(question: String, answer: String, keywords: [String] = []) {
            self.question = question
            self.answer = answer
            self.keywords = keywords
        }
    }

    /// How a Twilio call converses (Telnyx calls use Call Control).
    public enum ConversationMode: String, Sendable, Hashable, Codable, CaseIterable {
        /// Classic TwiML `<Gather>`: pure webhooks, works on every account.
        case gather
        /// `<Connect><ConversationRelay>`: the provider streams recognised speech over a WebSocket.
        case relay
    }

    public var greeting: String
    /// A short description of the receptionist's manner ("warm and brief").
    public var personality: String?
    public var intents: [IntentPhrases]
    public var businessHours: BusinessHours
    /// Questions the receptionist can answer.
    public var faq: [FAQEntry]
    /// E.164 number calls are transferred to during business hours; nil: never transfer (take a message).
    public var forwardingNumber: String?
    /// How Twilio calls converse; nil is ``ConversationMode/gather``.
    public var conversation: ConversationMode?
    /// How long calls, transcripts and recordings are kept; nil: every default of ``RetentionPolicy``.
    public var retention: RetentionPolicy?

    public init(greeting: String, personality: String? = nil, intents: [IntentPhrases], businessHours: BusinessHours, faq: [FAQEntry] = [],
                forwardingNumber: String? = nil, conversation: ConversationMode? = nil, retention: RetentionPolicy? = nil) {
        self.greeting = greeting
        self.personality = personality
        self.intents = intents
        self.businessHours = businessHours
        self.faq = faq
        self.forwardingNumber = forwardingNumber
        self.conversation = conversation
        self.retention = retention
    }

    func validate(_ prefix: String) throws(MessageDecodingError) {
        if greeting.isEmpty { throw .invalid("\(prefix).greeting", "must not be empty") }
        try Storable.check(greeting, "\(prefix).greeting", as: .freeText)
        try Storable.check(personality, "\(prefix).personality", as: .freeText)
        for (i, intent) in intents.enumerated() {
            if intent.phrases.isEmpty || intent.phrases.contains(where: \.isEmpty) {
                throw .invalid("\(prefix).intents[\(i)].phrases", "must hold at least one non-empty phrase")
            }
            for (j, phrase) in intent.phrases.enumerated() { try Storable.check(phrase, "\(prefix).intents[\(i)].phrases[\(j)]", as: .line) }
        }
        if businessHours.timeZone.isEmpty { throw .invalid("\(prefix).business_hours.time_zone", "must not be empty") }
        try Storable.check(businessHours.timeZone, "\(prefix).business_hours.time_zone", as: .line)
        for (i, opening) in businessHours.openings.enumerated() {
            let path = "\(prefix).business_hours.openings[\(i)]"
            try Check.clockTime(opening.opens, path: "\(path).opens")
            try Check.clockTime(opening.closes, path: "\(path).closes")
            if opening.closes <= opening.opens { throw .invalid("\(path).closes", "must be after opens") }
        }
        if faq.count > 100 { throw .invalid("\(prefix).faq", "must hold at most 100 entries") }
        for (i, entry) in faq.enumerated() {
            let path = "\(prefix).faq[\(i)]"
            if entry.question.isEmpty { throw .invalid("\(path).question", "must not be empty") }
            try Storable.check(entry.question, "\(path).question", as: .line)
            if entry.answer.isEmpty { throw .invalid("\(path).answer", "must not be empty") }
            try Storable.check(entry.answer, "\(path).answer", as: .freeText, maxLength: ConversationLimits.replyLength)
            for (j, keyword) in entry.keywords.enumerated() {
                if keyword.isEmpty { throw .invalid("\(path).keywords[\(j)]", "must not be empty") }
                try Storable.check(keyword, "\(path).keywords[\(j)]", as: .line)
            }
        }
        if let forwardingNumber {
            do {
                try Check.e164(forwardingNumber, "forwarding_number")
            } catch {
                throw .invalid("\(prefix).forwarding_number", "must be an E.164 phone number like +14155550123")
            }
        }
        try retention?.validate("\(prefix).retention")
    }

    enum CodingKeys: String, CodingKey {
        case greeting, personality, intents, businessHours = "business_hours", faq, forwardingNumber = "forwarding_number", conversation, retention
    }
}

extension AISettings {
    /// What a tenant that never changed its settings gets (the AI service detects intents with
    /// it; the console shows it as the starting point of the settings form).
    public static let builtIn = AISettings(
        greeting: "Thanks for calling. How can I help you today?",
        personality: "warm and brief",
        intents: [
            .init(intent: .appointment, phrases: ["appointment", "book a", "schedule", "reschedule", "come in", "available on", "availability"]),
            .init(intent: .sales, phrases: ["price", "pricing", "quote", "how much", "buy", "purchase", "interested in", "sign up"]),
            .init(intent: .support, phrases: ["not working", "broken", "help with", "problem with", "issue with", "error", "stopped working"]),
            .init(intent: .billing, phrases: ["invoice", "my bill", "charged", "charge", "refund", "payment"]),
            .init(intent: .complaint, phrases: ["complaint", "unhappy", "terrible", "disappointed", "speak to a manager", "unacceptable"]),
        ],
        businessHours: .init(timeZone: "UTC", openings: [.mon, .tue, .wed, .thu, .fri].map { .init(day: $0, opens: "09:00", closes: "17:00") }))
}

/// A tenant was created.
public struct TenantProvisioned: Message {
    public static let type = "voicecore.tenant.provisioned"
    public static let version = 1
    public static let dataschema = "https://schemas.voicecore.dev/events/tenant.provisioned/v1"
    public static let category = StreamCategory.tenants

    public var tenantID: Identifier
    public var name: String
    public var plan: Plan
    public var timeZone: String
    public var provisionedAt: Timestamp

    public init(tenantID: Identifier, name: String, plan: Plan, timeZone: String, provisionedAt: Timestamp) {
        self.tenantID = tenantID
        self.name = name
        self.plan = plan
        self.timeZone = timeZone
        self.provisionedAt = provisionedAt
    }

    public var subject: String { tenantID.description }

    public func validate() throws(MessageDecodingError) {
        try Check.notEmpty(name, "name")
        try Storable.check(name, "data.name", as: .line)
        try Check.notEmpty(timeZone, "time_zone")
        try Storable.check(timeZone, "data.time_zone", as: .line)
    }

    enum CodingKeys: String, CodingKey {
        case tenantID = "tenant_id", name, plan, timeZone = "time_zone", provisionedAt = "provisioned_at"
    }
}

/// A tenant's AI settings changed; `settings` is the complete new state.
public struct TenantSettingsChanged: Message {
    public static let type = "voicecore.tenant.settings-changed"
    public static let version = 1
    public static let dataschema = "https://schemas.voicecore.dev/events/tenant.settings-changed/v1"
    public static let category = StreamCategory.tenants

    public var tenantID: Identifier
    public var settings: AISettings
    public var changedAt: Timestamp

    public init(tenantID: Identifier, settings: AISettings, changedAt: Timestamp) {
        self.tenantID = tenantID
        self.settings = settings
        self.changedAt = changedAt
    }

    public var subject: String { tenantID.description }

    public func validate() throws(MessageDecodingError) {
        try settings.validate("data.settings")
    }

    enum CodingKeys: String, CodingKey {
        case tenantID = "tenant_id", settings, changedAt = "changed_at"
    }
}

// MARK: JSON

extension AISettings {
    public func writeJSON(to o: inout JSONObjectWriter) {
        o.field("greeting", greeting); o.field("personality", personality); o.field("intents", intents); o.field("business_hours", businessHours)
        // Written only when set: settings stored before these fields existed read back unchanged.
        if !faq.isEmpty { o.field("faq", faq) }
        o.field("forwarding_number", forwardingNumber)
        if let conversation { o.field("conversation", conversation) }
        if let retention, !retention.isEmpty { o.field("retention", retention) }
    }

    public init(json o: JSONObject) throws(MessageDecodingError) {
        self.init(greeting: try o.string("greeting"), personality: try o.optionalString("personality"),
                  intents: try o.objects(IntentPhrases.self, "intents"), businessHours: try o.object(BusinessHours.self, "business_hours"),
                  faq: try o.optionalObjects(FAQEntry.self, "faq") ?? [], forwardingNumber: try o.optionalString("forwarding_number"),
                  conversation: try o.optionalEnumeration(ConversationMode.self, "conversation"),
                  retention: try o.optionalObject(RetentionPolicy.self, "retention"))
    }
}

// Codable reads settings written before `faq` and `keywords` existed (or with them left out, as the
// JSON writer does when they are empty) the way `init(json:)` does: as empty lists.
extension AISettings {
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(greeting: try c.decode(String.self, forKey: .greeting), personality: try c.decodeIfPresent(String.self, forKey: .personality),
                  intents: try c.decode([IntentPhrases].self, forKey: .intents), businessHours: try c.decode(BusinessHours.self, forKey: .businessHours),
                  faq: try c.decodeIfPresent([FAQEntry].self, forKey: .faq) ?? [],
                  forwardingNumber: try c.decodeIfPresent(String.self, forKey: .forwardingNumber),
                  conversation: try c.decodeIfPresent(ConversationMode.self, forKey: .conversation),
                  retention: try c.decodeIfPresent(RetentionPolicy.self, forKey: .retention))
    }
}

extension AISettings.FAQEntry {
    enum CodingKeys: String, CodingKey {
        case question, answer, keywords
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(question: try c.decode(String.self, forKey: .question), answer: try c.decode(String.self, forKey: .answer),
                  keywords: try c.decodeIfPresent([String].self, forKey: .keywords) ?? [])
    }

    public func writeJSON(to o: inout JSONObjectWriter) {
        o.field("question", question); o.field("answer", answer)
        if !keywords.isEmpty { o.field("keywords", keywords) }
    }

    public init(json o: JSONObject) throws(MessageDecodingError) {
        self.init(question: try o.string("question"), answer: try o.string("answer"), keywords: try o.optionalStrings("keywords") ?? [])
    }
}

extension AISettings.IntentPhrases {
    public func writeJSON(to o: inout JSONObjectWriter) {
        o.field("intent", intent); o.field("phrases", phrases)
    }

    public init(json o: JSONObject) throws(MessageDecodingError) {
        self.init(intent: try o.enumeration(Intent.self, "intent"), phrases: try o.strings("phrases"))
    }
}

extension AISettings.BusinessHours {
    public func writeJSON(to o: inout JSONObjectWriter) {
        o.field("time_zone", timeZone); o.field("openings", openings)
    }

    public init(json o: JSONObject) throws(MessageDecodingError) {
        self.init(timeZone: try o.string("time_zone"), openings: try o.objects(Opening.self, "openings"))
    }
}

extension AISettings.BusinessHours.Opening {
    public func writeJSON(to o: inout JSONObjectWriter) {
        o.field("day", day); o.field("opens", opens); o.field("closes", closes)
    }

    public init(json o: JSONObject) throws(MessageDecodingError) {
        self.init(day: try o.enumeration(AISettings.BusinessHours.Weekday.self, "day"), opens: try o.string("opens"), closes: try o.string("closes"))
    }
}

extension TenantProvisioned {
    public func writeJSON(to o: inout JSONObjectWriter) {
        o.field("tenant_id", tenantID); o.field("name", name); o.field("plan", plan); o.field("time_zone", timeZone); o.field("provisioned_at", provisionedAt)
    }

    public init(json o: JSONObject) throws(MessageDecodingError) {
        self.init(tenantID: try o.identifier("tenant_id"), name: try o.string("name"), plan: try o.enumeration(Plan.self, "plan"),
                  timeZone: try o.string("time_zone"), provisionedAt: try o.timestamp("provisioned_at"))
    }
}

extension TenantSettingsChanged {
    public func writeJSON(to o: inout JSONObjectWriter) {
        o.field("tenant_id", tenantID); o.field("settings", settings); o.field("changed_at", changedAt)
    }

    public init(json o: JSONObject) throws(MessageDecodingError) {
        self.init(tenantID: try o.identifier("tenant_id"), settings: try o.object(AISettings.self, "settings"), changedAt: try o.timestamp("changed_at"))
    }
}
