import Testing
@testable import VoiceCoreRedis

@Suite("Replies read from bytes by hiredis' reader")
struct ReplyParserTests {
    private func feed(_ parser: RESPReplyParser, _ text: String) throws {
        try Array(text.utf8).withUnsafeBytes { try parser.feed($0) }
    }

    @Test func everyKindOfReplyComesOutWholeWhereverTheBytesAreSplit() throws {
        let wire = "+OK\r\n-NOSCRIPT No matching script\r\n:-42\r\n$5\r\nhe\r\no\r\n$-1\r\n*2\r\n:1\r\n$14\r\n1-1 01a2-event\r\n*0\r\n*3\r\n*1\r\n$0\r\n\r\n*-1\r\n+x\r\n"
        let expected: [RESPValue] = [
            .simpleString("OK"), .error("NOSCRIPT No matching script"), .integer(-42), .bulkString(Array("he\r\no".utf8)), .null,
            .array([.integer(1), .bulkString(Array("1-1 01a2-event".utf8))]), .array([]),
            .array([.array([.bulkString([])]), .null, .simpleString("x")]),
        ]
        // One byte at a time: a reply is only handed out once complete.
        let parser = RESPReplyParser()
        var replies: [RESPValue] = []
        for byte in wire.utf8 {
            try [byte].withUnsafeBytes { try parser.feed($0) }
            while let reply = try parser.next() { replies.append(reply) }
        }
        #expect(replies == expected)
        // All at once.
        let whole = RESPReplyParser()
        try feed(whole, wire)
        var all: [RESPValue] = []
        while let reply = try whole.next() { all.append(reply) }
        #expect(all == expected)
        #expect(try whole.next() == nil)
    }

    @Test func bytesThatAreNotRESPAreRefused() throws {
        let parser = RESPReplyParser()
        try feed(parser, "+OK\r\n?what\r\n")
        #expect(try parser.next() == .simpleString("OK"))
        #expect(throws: RedisError.self) { _ = try parser.next() }
    }
}
