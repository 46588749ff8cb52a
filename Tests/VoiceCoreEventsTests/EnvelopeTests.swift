import Foundation
import Testing
import VoiceCoreSimulation
import VoiceCoreTime
@testable import VoiceCoreEvents

@Suite("Envelope, registry, partitioning and ids")
struct EnvelopeTests {
    let tenant = Identifier("0193a1b2-7c4d-7e5f-8a9b-0c1d2e3f4a5b")!

    private func vectors() throws -> [String: Any] {
        let url = Fixtures.directory.appendingPathComponent("vectors.json")
        return try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any] ?? [:]
    }

    /// FIPS 180 SHA-1 at the padding's edges (one or two tail blocks), against Python's hashlib.
    @Test func sha1MatchesAtEveryPaddingBoundary() {
        let cases: [(Int, String)] = [
            (0, "da39a3ee5e6b4b0d3255bfef95601890afd80709"),
            (3, "a9993e364706816aba3e25717850c26c9cd0d89d"),
            (55, "c1c8bbdc22796e28c0e15163d20899b65621d65a"),
            (56, "c2db330f6083854c99d4b5bfb6e8f29f201be699"),
            (63, "03f09f5b158a7a8cdad920bddc29b81c18a551f5"),
            (64, "0098ba824b5c16427bd7a1122a5a442a25ec644d"),
            (119, "ee971065aaa017e0632a8ca6c77bb3bf8b1dfc56"),
            (120, "f34c1488385346a55709ba056ddd08280dd4c6d6"),
            (1000, "291e9a6c66994949b57ba5e650361e98fc36b1ba"),
        ]
        for (length, expected) in cases {
            let message: [UInt8] = length == 3 ? Array("abc".utf8) : Array(repeating: UInt8(ascii: "a"), count: length)
            #expect(SHA1.hex(message) == expected, "length \(length)")
        }
    }

    @Test func schemaVersionIsTheLastSegmentsNumber() {
        #expect(SchemaURI.version(of: SchemaURI.uri(kind: .event, name: "call.started", version: 1)) == 1)
        #expect(SchemaURI.version(of: "https://schemas.voicecore.dev/events/call.ended/v12") == 12)
        #expect(SchemaURI.version(of: "https://schemas.voicecore.dev/v2/events/call.ended/v3") == 3)
        for refused in ["https://schemas.voicecore.dev/events/call.ended/v", "https://schemas.voicecore.dev/events/call.ended/x2",
                        "v3", "https://schemas.voicecore.dev/events/call.ended/v3/", "…/v-1", "…/v+1", "…/v1.5", "…/v١", "…/v99999999999999999999", ""] {
            #expect(SchemaURI.version(of: refused) == nil, "\(refused)")
        }
        // An envelope without a version in its schema is version 1.
        let envelope = EventEnvelope(source: "/test", type: "call.started", subject: "s", dataschema: "https://example.com/schema",
                                     tenantID: tenant, correlationID: tenant, data: Array("{}".utf8))
        #expect(envelope.version == 1)
    }

    @Test func partitionFunctionMatchesTheVectors() throws {
        let vectors = try vectors()
        for vector in vectors["fnv1a32"] as? [[String: Any]] ?? [] {
            #expect(StreamNaming.fnv1a32(Array((vector["input"] as? String ?? "").utf8)) == UInt32(vector["hash"] as? Int ?? -1))
        }
        let partitions = vectors["partitions"] as? [[String: Any]] ?? []
        #expect(partitions.count >= 10)
        for vector in partitions {
            let naming = StreamNaming(partitions: vector["partitions"] as? Int ?? 1)
            let tenant = try #require(Identifier(vector["tenantid"] as? String ?? ""))
            let subject = vector["subject"] as? String ?? ""
            #expect(naming.partition(tenant: tenant, subject: subject) == vector["partition"] as? Int)
            #expect(naming.stream(for: .calls, kind: .event, tenant: tenant, subject: subject) == vector["stream"] as? String)
            #expect(naming.stream(for: .calls, kind: .command, tenant: tenant, subject: subject) == vector["command_stream"] as? String)
        }
    }

    @Test func callAndUsageIDsMatchPythonsUUID5() throws {
        let vectors = try vectors()
        for vector in vectors["call_ids"] as? [[String: Any]] ?? [] {
            let provider = try #require(TelephonyProvider(rawValue: vector["provider"] as? String ?? ""))
            let id = CallID.derive(tenant: try #require(Identifier(vector["tenantid"] as? String ?? "")), provider: provider, providerCallID: vector["provider_call_id"] as? String ?? "")
            #expect(id.description == vector["call_id"] as? String)
        }
        for vector in vectors["usage_ids"] as? [[String: Any]] ?? [] {
            let meter = try #require(UsageRecorded.Meter(rawValue: vector["meter"] as? String ?? ""))
            let id = UsageRecorded.usageID(sourceEventID: try #require(Identifier(vector["source_event_id"] as? String ?? "")), meter: meter)
            #expect(id.description == vector["usage_id"] as? String)
        }
    }

    /// RFC 9562's example (appendix A.4) and names that end in the first or second hash block,
    /// against Python's `uuid.uuid5`.
    @Test func v5MatchesRFC9562AndPython() throws {
        let dns = try #require(Identifier("6ba7b810-9dad-11d1-80b4-00c04fd430c8"))
        #expect(Identifier.v5(namespace: dns, name: "www.example.com").description == "2ed6657d-e927-568b-95e1-2665a8aea6a2")
        #expect(Identifier.v5(namespace: tenant, name: "").description == "adb2752b-1600-5ce5-8fa8-61cc3f7e322f")
        let long = "twilio/CA" + String(repeating: "0123456789abcdef", count: 4) + "/é"
        #expect(Identifier.v5(namespace: tenant, name: long).description == "673d75d7-3ac1-528d-b543-ea60be50649e")
    }

    @Test func streamNamesShareAHashTagPerPartition() {
        let naming = StreamNaming(partitions: 16)
        #expect(naming.stream(.calls, kind: .event, partition: 7) == "vc:{p07}:calls")
        #expect(naming.stream(.crm, kind: .command, partition: 12) == "vc:{p12}:crm:commands")
        #expect(StreamNaming(partitions: 200).stream(.billing, kind: .event, partition: 123) == "vc:{p123}:billing")
        #expect(naming.streams(.calls, kind: .event).count == 16)
        // A call's commands and events are different streams with the same hash tag (one partition,
        // one Redis Cluster slot), because both have the call id as subject.
        let call = CallID.derive(tenant: tenant, provider: .twilio, providerCallID: "CA1")
        let events = naming.stream(for: .calls, kind: .event, tenant: tenant, subject: call.description)
        let commands = naming.stream(for: .calls, kind: .command, tenant: tenant, subject: call.description)
        func hashTag(_ key: String) -> Substring? {
            guard let open = key.firstIndex(of: "{"), let close = key.firstIndex(of: "}") else { return nil }
            return key[open...close]
        }
        #expect(events != commands)
        #expect(hashTag(events) != nil)
        #expect(hashTag(events) == hashTag(commands))
    }

    @Test func uuidV7IsVersionedAndStrictlyOrdered() {
        var previous = Identifier.v7()
        for _ in 0..<20_000 {
            let next = Identifier.v7()
            #expect(previous < next)
            previous = next
        }
        let now = Timestamp.now
        let id = Identifier.v7(at: now)
        #expect(id.description.count == 36)
        #expect(Array(id.description)[14] == "7")
        #expect("89ab".contains(Array(id.description)[19]))
        #expect(abs(id.v7Milliseconds - now.millisecondsSinceEpoch) <= 1)
        #expect(Identifier(id.description.uppercased()) == id)
        #expect(Identifier("not-a-uuid") == nil)
    }

    /// Ids are written and parsed eight digits at a time: every byte value in every position must
    /// come out as Foundation writes it, and one wrong character anywhere must be refused.
    @Test func uuidTextMatchesFoundationAndRefusesEveryBadCharacter() {
        var random = SystemRandomNumberGenerator()
        for round in 0..<2_000 {
            var bytes = (0..<16).map { _ in UInt8.random(in: 0...255, using: &random) }
            if round < 256 { bytes = Array(repeating: UInt8(round), count: 16) }  // every byte value everywhere
            let uuid = UUID(uuid: (bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7],
                                   bytes[8], bytes[9], bytes[10], bytes[11], bytes[12], bytes[13], bytes[14], bytes[15]))
            let id = Identifier(uuid)
            #expect(id.description == uuid.uuidString.lowercased())
            #expect(id.utf8 == Array(uuid.uuidString.lowercased().utf8))
            #expect(Identifier(uuid.uuidString) == id)
            #expect(Identifier(utf8: Array(uuid.uuidString.lowercased().utf8)) == id)
        }
        let text = Array("0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b".utf8)
        #expect(Identifier(utf8: text) != nil)
        let hyphens: Set = [8, 13, 18, 23]
        for position in 0..<36 where !hyphens.contains(position) {
            for bad in [UInt8(ascii: "g"), UInt8(ascii: "G"), UInt8(ascii: "/"), UInt8(ascii: ":"), UInt8(ascii: "@"), UInt8(ascii: "`"),
                        UInt8(ascii: "-"), UInt8(ascii: " "), 0, 0x7F, 0x80, 0xC1, 0xE6, 0xFF] {
                var broken = text
                broken[position] = bad
                #expect(Identifier(utf8: broken) == nil, "byte \(bad) at \(position)")
            }
        }
        for position in hyphens {
            var broken = text
            broken[position] = UInt8(ascii: "0")
            #expect(Identifier(utf8: broken) == nil)
        }
        #expect(Identifier(utf8: Array(text.dropLast())) == nil)
    }

    @Test func envelopeFieldsRoundTrip() throws {
        let call = CallID.derive(tenant: tenant, provider: .twilio, providerCallID: "CA1")
        let started = CallStarted(callID: call, provider: .twilio, providerCallID: "CA1", direction: .inbound, from: "+14155550123",
                                  to: "+18005551212", startedAt: Timestamp(microsecondsSinceEpoch: 1_795_549_560_000_001))
        let cause = Identifier.v7()
        let envelope = EventEnvelope(started, tenant: tenant, source: "/services/calls", correlationID: cause, causationID: cause)
        #expect(envelope.fields.map(\.name) == ["specversion", "id", "source", "type", "time", "subject", "dataschema", "datacontenttype", "tenantid", "correlationid", "causationid", "data"])
        #expect(envelope.subject == call.description)
        let decoded = try MessageRegistry.standard.decode(fields: envelope.fields, as: CallStarted.self)
        #expect(decoded.0 == envelope)
        #expect(decoded.1 == started)
        // Another producer's order, and a field the contract does not have yet, read the same
        // (the decoder's fast path expects this library's order; the general path takes any).
        let reordered = envelope.fields.reversed() + [EnvelopeField("priority", "high")]
        #expect(try EventEnvelope(fields: Array(reordered)) == envelope)
        let withoutCausation = EventEnvelope(started, tenant: tenant, source: "/services/calls", correlationID: cause)
        #expect(try EventEnvelope(fields: withoutCausation.fields) == withoutCausation)
        #expect(try EventEnvelope(fields: withoutCausation.fields.shuffled()) == withoutCausation)
    }

    @Test func unknownTypesAndVersionsDecodeAsUnknownWithTheirFields() throws {
        var fields = EventEnvelope(source: "/team/x", type: "acme.thing.happened", subject: "s", dataschema: "https://acme.example/thing/v1",
                                   tenantID: tenant, correlationID: .v7(), data: Array("{\"a\":1}".utf8)).fields
        guard case .unknown(let envelope, let reason) = try MessageRegistry.standard.decode(fields: fields) else {
            Issue.record("an unknown type must decode as unknown")
            return
        }
        #expect(envelope.type == "acme.thing.happened")
        #expect(envelope.data == Array("{\"a\":1}".utf8))
        #expect(reason.contains("unknown type"))

        fields = EventEnvelope(source: "/x", type: CallStarted.type, subject: "s", dataschema: "https://schemas.voicecore.dev/events/call.started/v9",
                               tenantID: tenant, correlationID: .v7(), data: Array("{}".utf8)).fields
        guard case .unknown(_, let versionReason) = try MessageRegistry.standard.decode(fields: fields) else {
            Issue.record("a newer version must decode as unknown")
            return
        }
        #expect(versionReason.contains("unknown version 9"))
    }

    @Test(arguments: [
        ("time", "yesterday", "time"), ("tenantid", "tenant-1", "tenantid"), ("specversion", "0.3", "specversion"),
        ("datacontenttype", "text/plain", "datacontenttype"), ("id", "", "id"),
    ])
    func badEnvelopeAttributesAreNamed(name: String, value: String, expected: String) throws {
        let chunk = TranscriptChunk(callID: .v7(), sequence: 0, track: .inbound, text: "hi", isFinal: true, confidence: 1, startOffsetMs: 0, endOffsetMs: 10)
        var fields = EventEnvelope(chunk, tenant: tenant, source: "/services/calls").fields
        fields = fields.map { $0.name == name ? EnvelopeField(name, value) : $0 }
        #expect {
            try MessageRegistry.standard.decode(fields: fields)
        } throws: { ($0 as? MessageDecodingError)?.field == expected }
        let missing = EventEnvelope(chunk, tenant: tenant, source: "/services/calls").fields.filter { $0.name != "correlationid" }
        #expect {
            try EventEnvelope(fields: missing)
        } throws: { ($0 as? MessageDecodingError)?.field == "correlationid" }
    }

    @Test(arguments: ["{\"call_id\":1,}", "{\"text\":\"\u{1}\"}", "[1,2]", "{\"a\":\"\\ud800\"}", "{\"a\":01}", "{\"a\":1} x", ""])
    func malformedJSONIsRejectedAsData(_ json: String) {
        #expect {
            try MessageCodec.decode(TranscriptChunk.self, from: Array(json.utf8))
        } throws: { ($0 as? MessageDecodingError)?.field == "data" }
    }

    @Test func invalidUTF8IsRejected() {
        let bytes: [UInt8] = Array("{\"text\":\"".utf8) + [0xff, 0xfe] + Array("\"}".utf8)
        #expect {
            try MessageCodec.decode(TranscriptChunk.self, from: bytes)
        } throws: { ($0 as? MessageDecodingError)?.reason.contains("UTF-8") == true }
    }

    @Test func stringsWithEscapesRoundTrip() throws {
        let text = "quote \" backslash \\ newline \n tab \t control \u{7} emoji 📞 accent é"
        let chunk = TranscriptChunk(callID: .v7(), sequence: 1, track: .outbound, text: text, isFinal: false, confidence: 0.5, startOffsetMs: 1, endOffsetMs: 2, language: "fr-FR")
        let json = MessageCodec.encode(chunk)
        #expect(try MessageCodec.decode(TranscriptChunk.self, from: json) == chunk)
        // Foundation reads our output the same way.
        #expect(try JSONDecoder().decode(TranscriptChunk.self, from: Data(json)) == chunk)
        // Escaped unicode from other producers decodes too.
        let escaped = Array("{\"call_id\":\"\(chunk.callID)\",\"sequence\":1,\"track\":\"outbound\",\"text\":\"\\u00e9\\ud83d\\udcde\",\"is_final\":false,\"confidence\":5e-1,\"start_offset_ms\":1,\"end_offset_ms\":2.0}".utf8)
        let decoded = try MessageCodec.decode(TranscriptChunk.self, from: escaped)
        #expect(decoded.text == "é📞")
        #expect(decoded.confidence == 0.5)
        #expect(decoded.endOffsetMs == 2)
    }

    /// The writer fills the returned array's reserved storage and moves to its own buffer when an
    /// object outgrows it: payloads from a few bytes to far beyond the reserve, with escapes
    /// straddling the move, must come back exactly (and the writer's nested objects keep commas right).
    @Test func payloadsOfEverySizeSurviveTheWritersGrowth() throws {
        for length in [0, 1, 100, 200, 250, 255, 256, 257, 300, 511, 512, 513, 1_000, 4_000, 9_999] {
            let text = String((0..<length).map { i -> Character in i % 97 == 5 ? "\"" : (i % 89 == 3 ? "\n" : (i % 13 == 0 ? "é" : "a")) })
            let chunk = TranscriptChunk(callID: .v7(), sequence: length, track: .outbound, text: text, isFinal: false, confidence: 0.125,
                                        startOffsetMs: 0, endOffsetMs: length, language: length % 2 == 0 ? nil : "fr-CA")
            let json = MessageCodec.encode(chunk)
            #expect(try MessageCodec.decode(TranscriptChunk.self, from: json) == chunk, "text of \(length) characters")
        }
        let small = JSONObjectWriter.object { $0.field("status", "ok") }
        #expect(String(decoding: small, as: UTF8.self) == #"{"status":"ok"}"#)
        let long = String(repeating: "x", count: 300)
        let grown = JSONObjectWriter.object { $0.field("a", long); $0.field("b", [long, "y"]); $0.field("c", ["k": long]) }
        #expect(String(decoding: grown, as: UTF8.self) == #"{"a":"\#(long)","b":["\#(long)","y"],"c":{"k":"\#(long)"}}"#)
        let settings = TenantSettingsChanged(
            tenantID: .v7(),
            settings: AISettings(greeting: "Hello", personality: nil,
                                 intents: [AISettings.IntentPhrases(intent: .sales, phrases: ["buy", "price"]),
                                           AISettings.IntentPhrases(intent: .support, phrases: ["help"])],
                                 businessHours: AISettings.BusinessHours(timeZone: "America/New_York",
                                                                         openings: [.init(day: .mon, opens: "09:00", closes: "17:00"),
                                                                                    .init(day: .tue, opens: "09:00", closes: "12:00")])),
            changedAt: Timestamp(microsecondsSinceEpoch: 1_795_549_560_123_456))
        #expect(try MessageCodec.decode(TenantSettingsChanged.self, from: MessageCodec.encode(settings)) == settings)
    }

    /// Each field is looked up once, from a cursor, in any member order: an escaped key still
    /// matches, absent and null optionals are nil, a present optional of the wrong type is an error
    /// naming it, and a missing required field names itself.
    @Test func fieldsAreFoundInAnyOrderWithEscapedKeysAndNullOptionals() throws {
        let json = Array(#"{"n":7,"la\u006Eguage":"fr","te\u0078t":"hi","skipped":null,"z":[1],"count":"3"}"#.utf8)
        let object = try JSONObject.parse(json)
        #expect(try object.optionalString("language") == "fr")
        #expect(try object.string("text") == "hi")
        #expect(try object.int("n") == 7)  // before the cursor: found by wrapping around
        #expect(try object.optionalString("skipped") == nil)
        #expect(try object.optionalInt("absent") == nil)
        let wrongType = #expect(throws: MessageDecodingError.self) { try object.optionalInt("count") }
        #expect(wrongType?.field == "data.count")
        let missing = #expect(throws: MessageDecodingError.self) { try object.string("absent") }
        #expect(missing?.description == "data.absent is required")
    }

    /// The scanner skips plain ASCII eight bytes at a time: a quote, backslash, control character
    /// or non-ASCII byte at any offset (both sides of each 8-byte boundary) is still seen.
    @Test func stringScanningSeesEverySpecialByteAtEveryOffset() throws {
        for offset in 0..<20 {
            let pad = String(repeating: "a", count: offset), tail = String(repeating: "b", count: 11)
            // Each as written in JSON, and as read.
            for (special, expected) in [("\\\"", "\""), ("\\\\", "\\"), ("\\n", "\n"), ("é", "é"), ("📞", "📞"), ("\\u0041", "A")] {
                let json = Array("{\"text\":\"\(pad)\(special)\(tail)\",\"n\":1}".utf8)
                let object = try JSONObject.parse(json)
                #expect(try object.string("text") == pad + expected + tail, "offset \(offset), \(special)")
                #expect(try object.int("n") == 1)
            }
            // A raw control character or invalid UTF-8 inside the string is refused wherever it is.
            for bad in [[UInt8(0x01)], [UInt8(0x1F)], [UInt8(0xC3)], [UInt8(0xFF)]] {
                let json = Array("{\"text\":\"\(pad)".utf8) + bad + Array("\(tail)\"}".utf8)
                #expect(throws: MessageDecodingError.self, "offset \(offset), byte \(bad)") { try JSONObject.parse(json) }
            }
        }
    }

    /// Short decimals are parsed without strtod (Clinger's fast path); the result must be the
    /// same double, bit for bit, as Swift's own parser gives, and long or exponent forms still parse.
    @Test func decimalsParseToTheSameDoubleAsSwift() throws {
        var random = SplitMix64(seed: 7)
        var texts = ["0", "-0", "0.5", "0.1", "0.93", "1.7976931348623157", "123456789012345", "1234567890123456789",
                     "0.000001", "0.00000000000000000000001", "1e5", "2.5E-3", "-12.75", "9007199254740993", "0.30000000000000004"]
        for _ in 0..<5_000 {
            let value = Double(random.next() % 10_000_000) / Double([1, 10, 100, 1_000, 10_000, 1_000_000, 1e9, 1e12][Int(random.next() % 8)])
            texts.append(value.description)
            texts.append(String(format: "%.\(random.next() % 17)f", value))
        }
        for text in texts where Double(text) != nil {
            let object = try JSONObject.parse(Array("{\"v\":\(text)}".utf8))
            #expect(try object.double("v").bitPattern == Double(text)!.bitPattern, "\(text)")
        }
    }

    /// Doubles of up to six decimals are written as such, without a String (the same text as
    /// Swift's shortest form); every finite double, short or not, reads back bit for bit.
    @Test func doublesAreWrittenShortestAndReadBackExactly() throws {
        func written(_ value: Double) -> String {
            let json = String(decoding: JSONObjectWriter.object { $0.field("v", value) }, as: UTF8.self)
            return String(json.dropFirst(5).dropLast())
        }
        var random = SplitMix64(seed: 11)
        var values: [Double] = [0.93, -0.5, 0.125, 0.000001, -0.000001, 0.1 + 0.2, 1.0 / 3.0, 999_999_999.999999, 1_000_000_000.5,
                                0.0001, 123_456.7, -42.000001, .pi, 1e-7, 5e-324, .greatestFiniteMagnitude, -0.0, 3, 1e15 + 0.5]
        for _ in 0..<3_000 {
            let scale = [10.0, 100, 1_000, 10_000, 100_000, 1_000_000][Int(random.next() % 6)]
            let sign: Double = random.next() % 2 == 0 ? 1 : -1
            values.append(sign * Double(random.next() % 2_000_000_000_000) / scale)
            values.append(Double(bitPattern: random.next()))
        }
        for value in values where value.isFinite {
            let text = written(value)
            #expect(Double(text)?.bitPattern == (value == 0 ? 0.0 : value).bitPattern, "\(value) written as \(text)")
            #expect(text.first != "+" && !text.hasSuffix(".") && !text.contains(".0e"), "\(text)")
            // Where Swift writes a plain decimal, the writer writes the same digits.
            if value != value.rounded(), abs(value) >= 0.0001, abs(value) < 1e9, !value.description.contains("e") {
                #expect(text == value.description, "\(value)")
            }
        }
        #expect(written(0.93) == "0.93")
        #expect(written(-0.5) == "-0.5")
        #expect(written(0.000001) == "0.000001")
        #expect(written(.nan) == "null")
    }

    @Test func validationNamesTheField() throws {
        let bad = CallEnded(callID: .v7(), endedAt: .now, status: .completed, durationSeconds: -1, answered: true)
        #expect {
            try MessageCodec.decode(CallEnded.self, from: MessageCodec.encode(bad))
        } throws: { ($0 as? MessageDecodingError)?.field == "data.duration_seconds" }
        let usage = UsageRecorded(meter: .callMinutes, quantity: 2, sourceEventID: .v7(), sourceEventType: CallEnded.type, occurredAt: .now)
        var forged = usage
        forged.usageID = .v7()
        #expect {
            try MessageCodec.decode(UsageRecorded.self, from: MessageCodec.encode(forged))
        } throws: { ($0 as? MessageDecodingError)?.field == "data.usage_id" }
        #expect(try MessageCodec.decode(UsageRecorded.self, from: MessageCodec.encode(usage)) == usage)
    }
}
