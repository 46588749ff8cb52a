import Foundation
import VoiceCorePostgres

/// The opaque `cursor` of a paginated list: the keyset of the last item of a page (for example
/// its time and id), so the next page starts strictly after it whatever was inserted meanwhile.
///
/// Clients treat it as opaque text. It is base64url of `<list>` and the key values, separated by
/// U+001F, so a cursor of one list (`calls`) is refused by another (`leads`), and any text that is
/// not a cursor decodes to `nil` (the edge answers 400 naming `cursor`).
public struct PageCursor: Sendable, Hashable {
    /// Which list the cursor belongs to, e.g. `calls`.
    public let list: String
    /// The keyset values, in the list's order.
    public let values: [String]

    public init(list: String, values: [String]) {
        self.list = list
        self.values = values
    }

    private static let separator: Character = "\u{1F}"

    /// The cursor's text.
    public var encoded: String {
        let text = ([list] + values).joined(separator: String(Self.separator))
        return Data(text.utf8).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    /// Reads a cursor of `list` with `count` values; nil when the text is not one.
    public init?(_ text: String, list: String, count: Int) {
        guard !text.isEmpty, text.count <= 1024,
              text.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }) else { return nil }
        var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while base64.count % 4 != 0 { base64 += "=" }
        guard let data = Data(base64Encoded: base64), let decoded = String(data: data, encoding: .utf8) else { return nil }
        let parts = decoded.split(separator: Self.separator, omittingEmptySubsequences: false).map(String.init)
        guard parts.count == count + 1, parts[0] == list else { return nil }
        self.list = list
        self.values = Array(parts.dropFirst())
    }
}

/// A page of a list as JSON: `{"items": [...], "next_cursor": "…" | null}`, the items being JSON
/// objects as Postgres built them (`json_build_object`), passed through unparsed.
public struct Page: Sendable {
    public var items: [[UInt8]]
    public var nextCursor: PageCursor?

    public init(items: [[UInt8]], nextCursor: PageCursor?) {
        self.items = items
        self.nextCursor = nextCursor
    }

    /// The page's JSON text.
    public var json: [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(items.reduce(40) { $0 + $1.count + 1 })
        bytes.append(contentsOf: #"{"items":["#.utf8)
        for (index, item) in items.enumerated() {
            if index > 0 { bytes.append(UInt8(ascii: ",")) }
            bytes.append(contentsOf: item)
        }
        bytes.append(contentsOf: #"],"next_cursor":"#.utf8)
        if let nextCursor {
            bytes.append(UInt8(ascii: "\""))
            bytes.append(contentsOf: nextCursor.encoded.utf8)
            bytes.append(UInt8(ascii: "\""))
        } else {
            bytes.append(contentsOf: "null".utf8)
        }
        bytes.append(UInt8(ascii: "}"))
        return bytes
    }
}

extension Page {
    /// The page of `rows` a list statement returned when asked for `limit + 1` rows (the row
    /// beyond the page says that a next page exists): the first `limit` rows' `item` column, and
    /// when more follow, a cursor of `list` holding the keyset of the page's last row.
    /// - Throws: ``PostgresError`` (decoding) for a NULL item, or what `keyset` throws.
    public init(rows: PostgresRows, limit: Int, list: String, keyset: (PostgresRow) throws -> [String]) throws {
        var items: [[UInt8]] = []
        items.reserveCapacity(min(rows.count, limit))
        for row in rows.prefix(limit) {
            guard let item = row.raw("item") else { throw PostgresError(code: .decoding, message: "a \(list) item is NULL") }
            items.append(item)
        }
        self.init(items: items, nextCursor: rows.count > limit ? PageCursor(list: list, values: try keyset(rows[limit - 1])) : nil)
    }
}
