/// Splits a SQL script into statements at top-level semicolons, respecting quotes ('…', "…"),
/// dollar-quoted bodies ($$…$$, $tag$…$tag$), line comments (--) and nested block comments.
/// Each statement comes with the line it starts on (1-based, its first non-blank character).
import Foundation

enum SQLStatements {
    struct Statement: Equatable {
        var text: String
        var line: Int
    }

    static func split(_ sql: String) -> [Statement] {
        let chars = Array(sql.unicodeScalars)
        var statements: [Statement] = []
        var current = String.UnicodeScalarView()
        var line = 1
        var startLine: Int?
        var i = 0

        func flush() {
            let text = String(current).trimmingCharacters(in: .whitespacesAndNewlines)
            if !text.isEmpty { statements.append(Statement(text: text, line: startLine ?? line)) }
            current = String.UnicodeScalarView()
            startLine = nil
        }
        /// Skips `count` characters of a comment, counting its lines.
        func skip(_ count: Int) {
            for k in 0..<count where i + k < chars.count && chars[i + k] == "\n" { line += 1 }
            i += count
        }
        func take(_ count: Int) {
            for k in 0..<count where i + k < chars.count {
                let c = chars[i + k]
                if startLine == nil && !c.properties.isWhitespace { startLine = line }
                if c == "\n" { line += 1 }
                current.append(c)
            }
            i += count
        }
        func starts(_ text: String, at index: Int) -> Bool {
            let scalars = Array(text.unicodeScalars)
            guard index + scalars.count <= chars.count else { return false }
            return Array(chars[index..<(index + scalars.count)]) == scalars
        }

        while i < chars.count {
            let c = chars[i]
            if c == ";" {
                i += 1
                flush()
            } else if c == "'" || c == "\"" {
                take(1)
                while i < chars.count {
                    if chars[i] == c {
                        if i + 1 < chars.count && chars[i + 1] == c { take(2); continue }
                        take(1)
                        break
                    }
                    take(1)
                }
            } else if starts("--", at: i) {
                // Comments are left out of statements (a block comment becomes a space, so tokens
                // around it stay apart); the newline after a line comment is kept.
                while i < chars.count && chars[i] != "\n" { skip(1) }
            } else if starts("/*", at: i) {
                var depth = 0
                repeat {
                    if starts("/*", at: i) { depth += 1; skip(2) } else if starts("*/", at: i) { depth -= 1; skip(2) } else { skip(1) }
                } while depth > 0 && i < chars.count
                current.append(" ")
            } else if c == "$", let tag = dollarTag(chars, at: i) {
                take(tag.count)
                while i < chars.count && !starts(tag, at: i) { take(1) }
                take(tag.count)
            } else {
                take(1)
            }
        }
        flush()
        return statements
    }

    /// `$$` or `$tag$` at `index`, if one starts there.
    private static func dollarTag(_ chars: [Unicode.Scalar], at index: Int) -> String? {
        var j = index + 1
        while j < chars.count, chars[j] == "_" || chars[j].properties.isAlphabetic || (j > index + 1 && chars[j].properties.numericType != nil) { j += 1 }
        guard j < chars.count, chars[j] == "$" else { return nil }
        return String(String.UnicodeScalarView(chars[index...j]))
    }
}
