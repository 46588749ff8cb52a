/// Byte-level reading of ASCII text, for the services' per-utterance work (what callers said is
/// almost always ASCII).
///
/// Each class below is the ASCII part of the Unicode class that Swift's `Character` and
/// Foundation's `CharacterSet` use, so code that takes this path on ASCII text and the
/// `Character` path on other text answers the same (tested for every ASCII byte). Reading bytes
/// instead of grapheme clusters, with no `String` per word, made the AI service's work per
/// transcript chunk several times cheaper.
enum ASCIIText {
    /// Runs `body` over the text's UTF-8 when every byte is ASCII; nil otherwise.
    static func withASCII<Result>(_ text: String, _ body: (UnsafeBufferPointer<UInt8>) -> Result) -> Result? {
        var text = text
        return text.withUTF8 { bytes in
            for byte in bytes where byte >= 0x80 { return nil }
            return body(bytes)
        }
    }

    /// Unicode White_Space (`Character.isWhitespace`): tab, line feed, vertical tab, form feed,
    /// carriage return, space.
    @inline(__always)
    static func isWhitespace(_ byte: UInt8) -> Bool {
        byte == 0x20 || (0x09...0x0D).contains(byte)
    }

    /// Unicode general category P* (`Character.isPunctuation`, `CharacterSet.punctuationCharacters`):
    /// `! " # % & ' ( ) * , - . / : ; ? @ [ \ ] _ { }` — not the symbols `$ + < = > ^ ` | ~`.
    @inline(__always)
    static func isPunctuation(_ byte: UInt8) -> Bool {
        byte < 0x80 && punctuation & (1 << UInt128(byte)) != 0
    }

    private static let punctuation: UInt128 = {
        var mask: UInt128 = 0
        for byte in "!\"#%&'()*,-./:;?@[\\]_{}".utf8 { mask |= 1 << UInt128(byte) }
        return mask
    }()

    /// `CharacterSet.letters` in ASCII.
    @inline(__always)
    static func isLetter(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte | 0x20)
    }

    /// `CharacterSet.uppercaseLetters` in ASCII.
    @inline(__always)
    static func isUppercase(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte)
    }

    /// `Character.isNumber` in ASCII.
    @inline(__always)
    static func isDigit(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
    }

    @inline(__always)
    static func lowercased(_ byte: UInt8) -> UInt8 {
        isUppercase(byte) ? byte | 0x20 : byte
    }

    /// The words of a text: runs of characters between white space
    /// (`text.split(whereSeparator: \.isWhitespace).count`).
    static func wordCount(_ text: String) -> Int {
        withASCII(text) { bytes in
            var count = 0
            var inWord = false
            for byte in bytes {
                let space = isWhitespace(byte)
                if !space && !inWord { count += 1 }
                inWord = !space
            }
            return count
        } ?? text.split(whereSeparator: \.isWhitespace).count
    }

    /// Whether `" " + lowercased(text) + " "` contains `" " + word + " "`, where `word` is lower
    /// case and holds no space.
    static func containsSpacedWord(_ bytes: UnsafeBufferPointer<UInt8>, _ word: StaticString) -> Bool {
        let length = word.utf8CodeUnitCount
        guard length > 0, length <= bytes.count else { return false }
        let needle = UnsafeBufferPointer(start: word.utf8Start, count: length)
        var index = 0
        while index + length <= bytes.count {
            if (index == 0 || bytes[index - 1] == 0x20) && (index + length == bytes.count || bytes[index + length] == 0x20) {
                var offset = 0
                while offset < length && lowercased(bytes[index + offset]) == needle[offset] { offset += 1 }
                if offset == length { return true }
            }
            index += 1
        }
        return false
    }
}
