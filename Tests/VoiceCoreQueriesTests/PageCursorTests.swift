import Testing
import VoiceCoreQueries

@Suite("Page cursors")
struct PageCursorTests {
    @Test func aCursorReadsBackOnlyAsACursorOfItsOwnList() throws {
        let cursor = PageCursor(list: "calls", values: ["2026-12-07T10:00:00.000001Z", "0193a6c4-8a7e-7cc0-b3f3-3b0b6f2b2f10"])
        let text = cursor.encoded
        #expect(text.allSatisfy { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" }, "URL-safe without escaping")
        #expect(PageCursor(text, list: "calls", count: 2) == cursor)
        #expect(PageCursor(text, list: "leads", count: 2) == nil, "another list's cursor is refused")
        #expect(PageCursor(text, list: "calls", count: 3) == nil)
        for garbage in ["", "!!", "bm90IGEgY3Vyc29y", String(repeating: "A", count: 2000), "Y2FsbHM"] {
            #expect(PageCursor(garbage, list: "calls", count: 2) == nil, "\(garbage.prefix(20))")
        }
    }

    @Test func aPageIsItsItemsAndTheNextCursor() {
        let page = Page(items: [Array(#"{"a":1}"#.utf8), Array(#"{"a":2}"#.utf8)], nextCursor: PageCursor(list: "x", values: ["1"]))
        let text = String(decoding: page.json, as: UTF8.self)
        #expect(text == #"{"items":[{"a":1},{"a":2}],"next_cursor":"\#(PageCursor(list: "x", values: ["1"]).encoded)"}"#)
        #expect(String(decoding: Page(items: [], nextCursor: nil).json, as: UTF8.self) == #"{"items":[],"next_cursor":null}"#)
    }
}
