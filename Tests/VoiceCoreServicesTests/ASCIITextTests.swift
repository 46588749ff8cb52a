import Foundation
import Testing
import VoiceCoreEvents
@testable import VoiceCoreServices
import VoiceCoreSimulation

/// The AI service reads ASCII utterances byte by byte and any other text by `Character`; both
/// paths must answer the same.
@Suite("ASCII text paths")
struct ASCIITextTests {
    @Test("each byte class is the ASCII part of the Unicode class the Character paths use")
    func byteClasses() {
        for value in UInt8(0)..<0x80 {
            let scalar = Unicode.Scalar(value)
            let character = Character(scalar)
            #expect(ASCIIText.isWhitespace(value) == character.isWhitespace, "white space: \(value)")
            #expect(ASCIIText.isPunctuation(value) == character.isPunctuation, "Character.isPunctuation: \(value)")
            #expect(ASCIIText.isPunctuation(value) == CharacterSet.punctuationCharacters.contains(scalar), "punctuationCharacters: \(value)")
            #expect(ASCIIText.isLetter(value) == CharacterSet.letters.contains(scalar), "letters: \(value)")
            #expect(ASCIIText.isUppercase(value) == CharacterSet.uppercaseLetters.contains(scalar), "uppercaseLetters: \(value)")
            #expect(ASCIIText.isDigit(value) == (character.isASCII && character.isNumber), "digit: \(value)")
            #expect(ASCIIText.lowercased(value) == Array(String(character).lowercased().utf8)[0], "lower case: \(value)")
        }
        #expect(!ASCIIText.isPunctuation(0xA1), "bytes beyond ASCII are never ASCII punctuation")
    }

    /// Utterances made of the pieces each analysis looks for, in every case, glued by white space,
    /// separators and punctuation (a carriage return and line feed among them).
    static func utterances(count: Int, seed: UInt64) -> [String] {
        let pieces = [
            "my", "My", "MY", "name", "Name", "is", "IS", "name's", "Name's", "this", "This", "i'm", "I'm", "I", "i", "am", "AM", "it's", "It's",
            "Jane", "JANE", "jane", "O'Neil", "Mary-Kate", "Al", "X", "Lopez.", "Tom,", "(Tom)", "\"Ann\"", "Lee!", "Bo$", "Zed~", "_Kim_", "'Sam'",
            "415", "555", "0199", "555-0199", "(415)", "+44", "+1", "20", "7946", "0958", "1", "0", "0123456789", "12345678901234567", "4155550199",
            "jane", "at", "AT", "At", "dot", "DOT", "com", "example", "jane@example.com", "Tom.Baker@Example.com", "x@y", "@", "a.b@c.d.", "<a@b.co>",
            "book", "appointment", "Pricing", "how", "much", "please", "thanks", "-", ".", "(", ")", "+", "!", "?", ",", ";", ":", "'", "\"", "$", "~",
        ]
        let glue = [" ", " ", " ", "  ", "\t", "\n", "\r\n", "", "-", ".", ", ", " (", ") ", " - ", "..", "@", " at ", " dot "]
        var random = SplitMix64(seed: seed)
        return (0..<count).map { _ in
            var text = ""
            for index in 0..<Int.random(in: 0...14, using: &random) {
                if index > 0 { text += glue.randomElement(using: &random)! }
                text += pieces.randomElement(using: &random)!
            }
            return text
        }
    }

    @Test("contact details and word counts of ASCII utterances are what the Character paths find")
    func contactDetailsAgree() {
        let fixed = [
            "Hi, this is Maria Lopez. Call me at (415) 555-0199 please.", "my name is Tom and my email is Tom.Baker@Example.com",
            "it's jane dot doe at example dot org, or +44 20 7946 0958", "I need 3 chairs for 12 people on May 5", "This is\r\nJane", "I'm\tAl-Bo",
        ]
        var found = 0
        for text in fixed + Self.utterances(count: 20_000, seed: 7) {
            let name = ConversationAnalysis.name(in: text), phone = ConversationAnalysis.phone(in: text), email = ConversationAnalysis.email(in: text)
            #expect(name == ConversationAnalysis.nameInAnyText(text), "name in \(text.debugDescription)")
            #expect(phone == ConversationAnalysis.phoneInAnyText(text), "phone in \(text.debugDescription)")
            #expect(email == ConversationAnalysis.emailInAnyText(text), "email in \(text.debugDescription)")
            #expect(ASCIIText.wordCount(text) == text.split(whereSeparator: \.isWhitespace).count, "words in \(text.debugDescription)")
            if name != nil || phone != nil || email != nil { found += 1 }
        }
        #expect(found > 2_000, "the generated utterances exercise the finds, not only their absence")
    }

    @Test("non-ASCII text takes the Character path")
    func nonASCII() {
        #expect(ConversationAnalysis.name(in: "Hola, my name is Zoë Núñez.") == "Zoë Núñez")
        #expect(ConversationAnalysis.phone(in: "call me on ４１５ or 415 555 0199 — thanks") == "+14155550199")
        #expect(ConversationAnalysis.email(in: "Zoë: zoe dot n at example dot com") == "zoe.n@example.com")
        #expect(ConversationAnalysis.email(in: "café at example dot com") == nil, "an address that is not ASCII is refused")
        #expect(ASCIIText.wordCount("señor\u{00A0}García llamó") == 3, "a no-break space separates words")
    }

    @Test("tenant phrases match in place exactly where the padded phrase matches")
    func phrasesAgree() {
        let phrases = AISettings.builtIn.intents.flatMap(\.phrases) + [
            "Book A", " help", "help ", "x", "a  b", "caf\u{e9}", "it's", "can't wait", "", " ", "--", "e-mail", "555", "how much?", "HOW MUCH",
        ]
        var matched = 0
        for text in Self.utterances(count: 3_000, seed: 11) + ["I want to BOOK A table", "help!", "a b", "café au lait", "e mail me"] {
            let padded = BuiltInIntentDetector.padded(text)
            for phrase in phrases {
                let needle = BuiltInIntentDetector.padded(phrase)
                let expected = needle.count > 2 && BuiltInIntentDetector.contains(padded, needle)
                #expect(BuiltInIntentDetector.containsPhrase(padded, phrase) == expected, "\(phrase.debugDescription) in \(text.debugDescription)")
                if expected { matched += 1 }
            }
        }
        #expect(matched > 500, "phrases are found, not only missed")
    }
}
