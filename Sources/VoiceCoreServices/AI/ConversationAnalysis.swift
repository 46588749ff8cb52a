import Foundation
import VoiceCoreEvents
import VoiceCoreTime

/// Contact details a caller gave.
public struct ContactDetails: Sendable, Hashable {
    public var name: String?
    /// E.164.
    public var phone: String?
    public var email: String?

    public init(name: String? = nil, phone: String? = nil, email: String? = nil) {
        self.name = name
        self.phone = phone
        self.email = email
    }

    public var isEmpty: Bool { name == nil && phone == nil && email == nil }
}

/// The offline analysis of what callers say: contact details, sentiment, summary.
public enum ConversationAnalysis {
    // MARK: Contact details

    /// Names introduced as "my name is …", "this is …", "I'm …", "it's …"; phone numbers of 10 to
    /// 15 digits (spoken separators allowed; 10 digits are read as a North American number);
    /// e-mail addresses, written or spoken ("jane at example dot com").
    public static func contactDetails(in utterance: String) -> ContactDetails {
        ContactDetails(name: name(in: utterance), phone: phone(in: utterance), email: email(in: utterance))
    }

    static let introductions: [[String]] = [["my", "name", "is"], ["name's"], ["this", "is"], ["i'm"], ["i", "am"], ["it's"]]
    private static let introductionBytes: [[[UInt8]]] = introductions.map { $0.map { Array($0.utf8) } }

    static func name(in text: String) -> String? {
        switch ASCIIText.withASCII(text, asciiName) {
        case .some(let found): return found
        case .none: return nameInAnyText(text)
        }
    }

    /// ``name(in:)`` over ASCII bytes: words as byte ranges, no string until a name is found.
    private static func asciiName(in bytes: UnsafeBufferPointer<UInt8>) -> String? {
        var words: [Range<Int>] = []
        var index = 0
        while index < bytes.count {
            while index < bytes.count && ASCIIText.isWhitespace(bytes[index]) { index += 1 }
            let start = index
            while index < bytes.count && !ASCIIText.isWhitespace(bytes[index]) { index += 1 }
            if start < index { words.append(start..<index) }
        }
        func trimmed(_ word: Range<Int>) -> Range<Int> {
            var lower = word.lowerBound, upper = word.upperBound
            while lower < upper && ASCIIText.isPunctuation(bytes[lower]) { lower += 1 }
            while upper > lower && ASCIIText.isPunctuation(bytes[upper - 1]) { upper -= 1 }
            return lower..<upper
        }
        func lowered(_ word: Range<Int>, is expected: [UInt8]) -> Bool {
            let word = trimmed(word)
            guard word.count == expected.count else { return false }
            for offset in 0..<word.count where ASCIIText.lowercased(bytes[word.lowerBound + offset]) != expected[offset] { return false }
            return true
        }
        for start in words.indices {
            for intro in introductionBytes where start + intro.count < words.count {
                guard intro.indices.allSatisfy({ lowered(words[start + $0], is: intro[$0]) }) else { continue }
                var parts: [String] = []
                var index = start + intro.count
                while index < words.count, parts.count < 3 {
                    let word = trimmed(words[index])
                    guard word.count > 1, ASCIIText.isUppercase(bytes[word.lowerBound]),
                          bytes[word].allSatisfy({ ASCIIText.isLetter($0) || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: "'") }) else { break }
                    parts.append(String(decoding: UnsafeBufferPointer(rebasing: bytes[word]), as: UTF8.self))
                    if ASCIIText.isPunctuation(bytes[words[index].upperBound - 1]) { break }
                    index += 1
                }
                if !parts.isEmpty { return parts.joined(separator: " ") }
            }
        }
        return nil
    }

    /// ``name(in:)`` over characters: text with any non-ASCII character.
    static func nameInAnyText(_ text: String) -> String? {
        let words = text.split(whereSeparator: { $0.isWhitespace }).map { String($0) }
        let lowered = words.map { $0.lowercased().trimmingCharacters(in: .punctuationCharacters) }
        for start in lowered.indices {
            for intro in introductions where start + intro.count < words.count && Array(lowered[start..<start + intro.count]) == intro {
                var parts: [String] = []
                var index = start + intro.count
                while index < words.count, parts.count < 3 {
                    let word = words[index].trimmingCharacters(in: .punctuationCharacters)
                    guard let first = word.unicodeScalars.first, CharacterSet.uppercaseLetters.contains(first), word.count > 1,
                          word.unicodeScalars.allSatisfy({ CharacterSet.letters.contains($0) || $0 == "-" || $0 == "'" }) else { break }
                    parts.append(word)
                    // A name ends at punctuation: "This is Jane, I'd like…"
                    if words[index].last.map({ $0.isPunctuation }) ?? false { break }
                    index += 1
                }
                if !parts.isEmpty { return parts.joined(separator: " ") }
            }
        }
        return nil
    }

    static func phone(in text: String) -> String? {
        switch ASCIIText.withASCII(text, asciiPhone) {
        case .some(let found): return found
        case .none: return phoneInAnyText(text)
        }
    }

    /// ``phone(in:)`` over ASCII bytes.
    private static func asciiPhone(in bytes: UnsafeBufferPointer<UInt8>) -> String? {
        func isSeparator(_ byte: UInt8) -> Bool {
            byte == UInt8(ascii: " ") || byte == UInt8(ascii: "-") || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "(") || byte == UInt8(ascii: ")")
        }
        var digits: [UInt8] = []
        var plus = false
        var best: String?
        func finish() {
            if (10...15).contains(digits.count), best == nil {
                let number = String(decoding: digits, as: UTF8.self)
                best = !plus && digits.count == 10 ? "+1" + number : "+" + number
            }
            digits.removeAll(keepingCapacity: true)
            plus = false
        }
        for index in 0..<bytes.count {
            let byte = bytes[index]
            if ASCIIText.isDigit(byte) {
                digits.append(byte)
            } else if byte == UInt8(ascii: "+") && digits.isEmpty {
                plus = true
            } else if !digits.isEmpty && isSeparator(byte) {
                // A separator inside a number, unless the next thing is not a digit.
                var next = index + 1
                while next < bytes.count && isSeparator(bytes[next]) { next += 1 }
                if !(next < bytes.count && ASCIIText.isDigit(bytes[next])) { finish() }
            } else if byte == UInt8(ascii: "(") {
                continue
            } else {
                finish()
            }
        }
        finish()
        guard let best, best.utf8.count <= 16, best.utf8.dropFirst().first != UInt8(ascii: "0") else { return nil }
        return best
    }

    /// ``phone(in:)`` over characters: text with any non-ASCII character.
    static func phoneInAnyText(_ text: String) -> String? {
        var digits = ""
        var plus = false
        var best: String?
        func finish() {
            if (10...15).contains(digits.count), best == nil {
                if plus { best = "+" + digits }
                else if digits.count == 10 { best = "+1" + digits }
                else if digits.count == 11, digits.hasPrefix("1") { best = "+" + digits }
                else { best = "+" + digits }
            }
            digits = ""
            plus = false
        }
        let characters = Array(text)
        for (index, character) in characters.enumerated() {
            if character.isASCII, character.isNumber {
                digits.append(character)
            } else if character == "+" && digits.isEmpty {
                plus = true
            } else if !digits.isEmpty && (character == " " || character == "-" || character == "." || character == "(" || character == ")") {
                // A separator inside a number, unless the next thing is not a digit.
                let next = characters[(index + 1)...].first { $0 != " " && $0 != "-" && $0 != "." && $0 != "(" && $0 != ")" }
                if !(next.map { $0.isASCII && $0.isNumber } ?? false) { finish() }
            } else if character == "(" {
                continue
            } else {
                finish()
            }
        }
        finish()
        guard let best, best.count <= 16, best.dropFirst().first != "0" else { return nil }
        return best
    }

    static func email(in text: String) -> String? {
        // Most utterances hold no address: in ASCII text, neither an "@" nor both " at " and " dot ".
        let none = ASCIIText.withASCII(text) { bytes in
            !bytes.contains(UInt8(ascii: "@")) && !(ASCIIText.containsSpacedWord(bytes, "at") && ASCIIText.containsSpacedWord(bytes, "dot"))
        }
        return none == true ? nil : emailInAnyText(text)
    }

    /// ``email(in:)`` without the ASCII shortcut.
    static func emailInAnyText(_ text: String) -> String? {
        var candidate = text
        if !text.contains("@") {
            // Spoken: "jane dot doe at example dot com".
            let lowered = " " + text.lowercased() + " "
            guard lowered.contains(" at "), lowered.contains(" dot ") else { return nil }
            candidate = lowered.replacingOccurrences(of: " dot ", with: ".").replacingOccurrences(of: " at ", with: "@")
        }
        for token in candidate.split(whereSeparator: { $0.isWhitespace || $0 == "," || $0 == ";" || $0 == "<" || $0 == ">" }) {
            let word = token.trimmingCharacters(in: CharacterSet(charactersIn: ".!?:()\"'"))
            let parts = word.split(separator: "@", omittingEmptySubsequences: false)
            guard parts.count == 2, !parts[0].isEmpty, parts[1].contains("."), !parts[1].hasPrefix("."), !parts[1].hasSuffix(".") else { continue }
            let allowed = CharacterSet.alphanumerics.union(CharacterSet(charactersIn: ".+-_"))
            guard word.unicodeScalars.allSatisfy({ allowed.contains($0) || $0 == "@" }), word.unicodeScalars.allSatisfy(\.isASCII) else { continue }
            return word.lowercased()
        }
        return nil
    }

    // MARK: Sentiment

    static let positiveWords: Set<String> = [
        "great", "thanks", "thank", "good", "perfect", "wonderful", "happy", "excellent", "love", "appreciate", "awesome",
        "glad", "helpful", "nice", "fantastic", "pleased", "amazing", "lovely",
    ]
    static let negativeWords: Set<String> = [
        "bad", "terrible", "awful", "angry", "upset", "frustrated", "disappointed", "unhappy", "broken", "wrong", "worst",
        "hate", "annoyed", "complaint", "cancel", "unacceptable", "horrible", "problem", "useless",
    ]

    /// Lexicon sentiment: (positive − negative) / (positive + negative) over the words, from −1 to
    /// 1; above 0.2 positive, below −0.2 negative.
    public static func sentiment(of texts: [String]) -> (CallSummarized.Sentiment, Double) {
        var positive = 0
        var negative = 0
        for text in texts {
            for word in BuiltInIntentDetector.normalize(text).split(separator: " ") {
                if positiveWords.contains(String(word)) { positive += 1 } else if negativeWords.contains(String(word)) { negative += 1 }
            }
        }
        let total = positive + negative
        let score = total == 0 ? 0 : Double(positive - negative) / Double(total)
        return (score > 0.2 ? .positive : score < -0.2 ? .negative : .neutral, (score * 1000).rounded() / 1000)
    }

    // MARK: Summary

    /// The call's summary from its final utterances in order: intent, contact details, whether it
    /// came outside business hours, and up to three key sentences (those with an intent phrase, a
    /// contact detail or a sentiment word).
    public static func summarize(callID: Identifier, utterances: [String], intent: IntentMatch?, contact: ContactDetails,
                                 afterHours: Bool, settings: AISettings, at time: Timestamp) -> CallSummarized {
        let phrases = settings.intents.flatMap(\.phrases).map(BuiltInIntentDetector.padded)
        var keySentences: [String] = []
        for utterance in utterances {
            for sentence in sentences(utterance) where keySentences.count < 3 {
                let normalized = BuiltInIntentDetector.padded(sentence)
                let words = BuiltInIntentDetector.normalize(sentence).split(separator: " ").map(String.init)
                let key = phrases.contains { $0.count > 2 && BuiltInIntentDetector.contains(normalized, $0) } || !contactDetails(in: sentence).isEmpty
                    || words.contains { positiveWords.contains($0) || negativeWords.contains($0) }
                if key && !keySentences.contains(sentence) { keySentences.append(sentence) }
            }
        }
        var parts: [String] = []
        if let intent { parts.append("Caller intent: \(intent.intent.rawValue).") } else { parts.append("No clear intent.") }
        let details = [contact.name, contact.phone, contact.email].compactMap { $0 }
        if !details.isEmpty { parts.append("Contact: \(details.joined(separator: ", ")).") }
        if afterHours { parts.append("Called outside business hours.") }
        if !keySentences.isEmpty { parts.append("Said: " + keySentences.joined(separator: " ")) }
        var summary = parts.joined(separator: " ")
        if summary.count > 1000 { summary = String(summary.prefix(999)) + "…" }
        let (sentiment, score) = sentiment(of: utterances)
        let wordCount = utterances.reduce(0) { $0 + ASCIIText.wordCount($1) }
        return CallSummarized(callID: callID, summary: summary, keySentences: keySentences, sentiment: sentiment, sentimentScore: score,
                              wordCount: wordCount, summarizedAt: time)
    }

    /// Sentences end at `.`, `?` or `!` followed by a space or the end ("example.com" and
    /// "555.123.4567" stay whole).
    static func sentences(_ text: String) -> [String] {
        var result: [String] = []
        var current = ""
        let characters = Array(text)
        for (index, character) in characters.enumerated() {
            current.append(character)
            let atBoundary = index + 1 == characters.count || characters[index + 1].isWhitespace
            if (character == "." || character == "?" || character == "!") && atBoundary {
                let trimmed = current.trimmingCharacters(in: .whitespaces)
                if !trimmed.isEmpty { result.append(trimmed) }
                current = ""
            }
        }
        let rest = current.trimmingCharacters(in: .whitespaces)
        if !rest.isEmpty { result.append(rest) }
        return result
    }

    // MARK: Business hours

    /// Whether the business is open at `time`, in the settings' time zone (an unknown zone is UTC).
    public static func isOpen(_ hours: AISettings.BusinessHours, at time: Timestamp) -> Bool {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: hours.timeZone) ?? TimeZone(identifier: "UTC")!
        let parts = calendar.dateComponents([.weekday, .hour, .minute], from: time.date)
        let days: [AISettings.BusinessHours.Weekday] = [.sun, .mon, .tue, .wed, .thu, .fri, .sat]
        guard let weekday = parts.weekday, let hour = parts.hour, let minute = parts.minute else { return true }
        let now = String(format: "%02d:%02d", hour, minute)
        return hours.openings.contains { $0.day == days[weekday - 1] && $0.opens <= now && now < $0.closes }
    }
}
