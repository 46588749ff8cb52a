import Foundation
import Testing
@testable import VoiceCoreEvents
import VoiceCoreTime

/// Erasure of archived payloads, over every type the registry knows: each type's golden fixture,
/// with a distinctive marker in every string field that accepts one (and in every optional string
/// field of its schema the fixture leaves out), erased, must keep no marker outside the fields
/// listed here as not personal, and must still decode, validate and pass its JSON Schema. A type
/// added with a personal field that its erasure forgets fails here.
@Suite("Erasing personal data from archived and streamed payloads")
struct PersonalDataErasureTests {
    /// Fields that identify things, not people: provider ids (useless without the tenant's provider
    /// credentials), a language tag, the event type a usage line was derived from.
    static let notPersonalFields: Set<String> = [
        "provider_call_id", "provider_account_id", "transcription_id", "recording_id", "language", "source_event_type",
    ]
    /// The tenant's own data (the business's name, zone and receptionist settings), not a caller's.
    static let tenantFields: [String: Set<String>] = [
        TenantProvisioned.type: ["name", "time_zone"],
        TenantSettingsChanged.type: ["settings"],
        ChangeSettings.type: ["settings"],
    ]
    /// Types that carry nothing personal: erasure leaves them alone (returns nil) in every scope.
    static let typesWithoutPersonalData: Set<String> = [
        CallAnswered.type, CallEnded.type, UsageRecorded.type, TenantProvisioned.type, TenantSettingsChanged.type, ChangeSettings.type,
        ReportPromptPlayed.type, CallerErased.type,
    ]
    /// What transcript retention erases: the words said on a call, by type and top-level field.
    static let wordsSaid: [String: Set<String>] = [
        TranscriptChunk.type: ["text"],
        ReportTranscriptSegment.type: ["text"],
        ReportCallerTurn.type: ["text", "digits"],
        ReceptionistReplied.type: ["heard", "text", "slots"],
        CallSummarized.type: ["summary", "key_sentences"],
        IntentDetected.type: ["matched_phrase"],
        MessageTaken.type: ["message"],
    ]

    @Test func aCallersErasureLeavesNoMarkerOutsideTheFieldsThatAreNotPersonal() throws {
        for sample in try MarkedSample.all() {
            let erased = try MessageRegistry.standard.erasePersonalData(type: sample.type.type, version: sample.type.version, data: sample.data, scope: .caller)
            let kept = Self.tenantFields[sample.type.type] ?? []
            if Self.typesWithoutPersonalData.contains(sample.type.type) {
                #expect(erased == nil, "\(sample.name) has no personal data, but erasure changed it")
                #expect(!(sample.type is any PersonalData.Type), "\(sample.name) is listed as without personal data")
            } else {
                #expect(erased != nil, "\(sample.name): erasure changed nothing (a type with personal fields must conform to PersonalData)")
            }
            let text = String(decoding: erased?.data ?? sample.data, as: UTF8.self)
            for marker in sample.markers where text.contains(marker.value) {
                let allowed = Self.notPersonalFields.contains(marker.field) || kept.contains(marker.field)
                #expect(allowed, "\(sample.name): \(marker.path) (\(marker.value)) survived a caller's erasure")
            }
            if let erased { try expectDecodes(erased, sample) }
        }
    }

    @Test func transcriptRetentionErasesOnlyTheWordsSaid() throws {
        var erasedTypes: Set<String> = []
        for sample in try MarkedSample.all() {
            let erased = try MessageRegistry.standard.erasePersonalData(type: sample.type.type, version: sample.type.version, data: sample.data, scope: .transcripts)
            let words = Self.wordsSaid[sample.type.type] ?? []
            let text = String(decoding: erased?.data ?? sample.data, as: UTF8.self)
            for marker in sample.markers {
                if words.contains(marker.field) {
                    #expect(!text.contains(marker.value), "\(sample.name): \(marker.path) survived transcript retention")
                } else {
                    // Numbers, names, e-mail addresses, recordings stay: only the words go.
                    #expect(text.contains(marker.value), "\(sample.name): \(marker.path) was erased by transcript retention")
                }
            }
            if let erased {
                erasedTypes.insert(sample.type.type)
                try expectDecodes(erased, sample)
            }
        }
        #expect(erasedTypes == Set(Self.wordsSaid.keys))
    }

    @Test func recordingRetentionErasesOnlyRecordingURLs() throws {
        var erasedTypes: Set<String> = []
        for sample in try MarkedSample.all() {
            let erased = try MessageRegistry.standard.erasePersonalData(type: sample.type.type, version: sample.type.version, data: sample.data, scope: .recordings)
            let text = String(decoding: erased?.data ?? sample.data, as: UTF8.self)
            for marker in sample.markers {
                #expect(text.contains(marker.value) == (marker.field != "recording_url"), "\(sample.name): \(marker.path) under recording retention")
            }
            if let erased {
                erasedTypes.insert(sample.type.type)
                try expectDecodes(erased, sample)
            }
        }
        #expect(erasedTypes == [VoicemailRecorded.type, ReportRecording.type])
    }

    @Test func erasedPayloadsPassTheirJSONSchemas() async throws {
        let temporary = try SchemaValidator.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: temporary) }
        for sample in try MarkedSample.all() {
            for scope in ErasureScope.allCases {
                guard let erased = try MessageRegistry.standard.erasePersonalData(type: sample.type.type, version: sample.type.version, data: sample.data, scope: scope) else { continue }
                let url = temporary.appendingPathComponent("\(sample.name)-\(scope).json")
                try Data(erased.data).write(to: url)
                let schema = Fixtures.repositoryRoot.appendingPathComponent(SchemaURI.file(kind: sample.type.kind, name: sample.type.schemaName, version: erased.version))
                let outcome = try await SchemaValidator.validate(schema: schema, instances: [url])
                #expect(outcome.exitCode == 0, "\(sample.name) erased (\(scope)) fails its schema: \(outcome.output)")
            }
        }
    }

    @Test func placeholdersAreTheDocumentedOnes() throws {
        let call = Identifier.v7()
        let started = CallStarted(callID: call, provider: .twilio, providerCallID: "CA1", direction: .inbound, from: "+14155550123", to: "+14155550199", startedAt: .now)
            .erasingPersonalData(.caller)
        #expect(started.from == "+999" && started.to == "+999")
        let lead = LeadCreated(leadID: .v7(), phone: "+14155550123", email: "zoe@example.com", intent: .sales, source: .call, notes: "Tuesday", createdAt: .now)
            .erasingPersonalData(.caller)
        #expect(lead.name == "[erased]" && lead.phone == nil && lead.email == nil && lead.notes == "[erased]")
        let turn = ReportCallerTurn(callID: call, provider: .twilio, providerCallID: "CA1", turn: 2, text: "", digits: "1234", channel: .gather,
                                    from: "+14155550123", occurredAt: .now).erasingPersonalData(.transcripts)
        // Saying nothing stays nothing; the number stays under transcript retention.
        #expect(turn.text == "" && turn.digits == nil && turn.from == "+14155550123")
        let progress = ReportCallProgress(callID: call, provider: .twilio, providerCallID: "CA1", status: .ringing, sequence: 0, occurredAt: .now,
                                          direction: .inbound, from: "+14155550123", to: "+14155550199", providerFields: ["CallerName": "Zoe"])
            .erasingPersonalData(.caller)
        #expect(progress.providerFields.isEmpty && progress.from == Erased.phone)
    }

    @Test func anOldVersionComesBackErasedAtTheCurrentVersion() throws {
        let fixture = try #require(try Fixtures.load("valid").first { $0.stem == "call.transcript-chunk.v1" })
        let erased = try #require(try MessageRegistry.standard.erasePersonalData(type: TranscriptChunk.type, version: 1, data: fixture.dataJSON, scope: .caller))
        #expect(erased.version == TranscriptChunk.version)
        let chunk = try MessageCodec.decode(TranscriptChunk.self, from: erased.data)
        #expect(chunk.text == Erased.text && chunk.startOffsetMs == 12_340)
    }

    @Test func unknownTypesAndInvalidPayloadsAreToldApart() throws {
        #expect(try MessageRegistry.standard.erasePersonalData(type: "voicecore.call.unheard-of", version: 1, data: Array("{}".utf8), scope: .caller) == nil)
        #expect(throws: MessageDecodingError.self) {
            try MessageRegistry.standard.erasePersonalData(type: CallStarted.type, version: 1, data: Array("{\"call_id\":1}".utf8), scope: .caller)
        }
    }

    private func expectDecodes(_ erased: (data: [UInt8], version: Int), _ sample: MarkedSample) throws {
        let message = try MessageRegistry.standard.decodePayload(type: sample.type.type, version: erased.version, data: erased.data)
        #expect(message != nil, "\(sample.name): the erased payload does not decode at v\(erased.version)")
        try message?.validate()
    }
}

/// A registered type's golden fixture with a distinctive value in every string field that takes one.
struct MarkedSample {
    struct Marker {
        /// The path in the payload: `text`, `slots.name`, `key_sentences[1]`, `settings.faq[0].answer`.
        var path: String
        var value: String
        /// The top-level field the marker is in.
        var field: String { String(path.prefix { $0 != "." && $0 != "[" }) }
    }

    var type: any Message.Type
    var data: [UInt8]
    var markers: [Marker]
    var name: String { "\(type.schemaName).v\(type.version)" }

    /// One sample per registered type and version.
    static func all() throws -> [MarkedSample] {
        let fixtures = try Fixtures.load("valid")
        var samples: [MarkedSample] = []
        for type in MessageRegistry.standardTypes {
            let stem = "\(type.schemaName).v\(type.version)"
            let fixture = try #require(fixtures.first { $0.folder == (type.kind == .event ? "events" : "commands") && $0.stem == stem }, "no fixture for \(stem)")
            samples.append(try mark(type, fixture))
        }
        return samples
    }

    private static func mark(_ type: any Message.Type, _ fixture: Fixtures.Fixture) throws -> MarkedSample {
        var marker = Marking(type: type)
        var document = fixture.data
        // Optional string fields the fixture leaves out get a marker too (when it is accepted there).
        let schema = try JSONSerialization.jsonObject(with: Data(contentsOf: fixture.schemaFile)) as? [String: Any] ?? [:]
        for (name, property) in schema["properties"] as? [String: Any] ?? [:] where document[name] == nil {
            let property = property as? [String: Any] ?? [:]
            if property["type"] as? String == "object" {
                document = marker.tryAdd(name, ["note": ""], to: document)
            } else if property["type"] as? String == "array" {
                document = marker.tryAdd(name, [""], to: document)
            } else if property["type"] as? String == "string" || property["$ref"] as? String == "#/$defs/e164" {
                document = marker.tryAdd(name, "", to: document)
            }
        }
        document = marker.markStrings(in: document)
        return MarkedSample(type: type, data: marker.encode(document), markers: marker.markers)
    }

    /// Replaces string leaves one at a time with the first marker (text, phone number, e-mail
    /// address, keypad digits) the whole payload still decodes with.
    private struct Marking {
        var type: any Message.Type
        var markers: [Marker] = []
        var next = 1

        init(type: any Message.Type) { self.type = type }

        func encode(_ document: [String: Any]) -> [UInt8] {
            Array((try? JSONSerialization.data(withJSONObject: document, options: [.sortedKeys])) ?? Data())
        }

        func decodes(_ document: [String: Any]) -> Bool {
            (try? MessageRegistry.standard.decodePayload(type: type.type, version: type.version, data: encode(document))) != nil
        }

        mutating func candidates() -> [String] {
            let n = String(format: "%04d", next)
            next += 1
            return ["Mkr\(n)q", "+1555000\(n)", "mkr\(n)q@example.org", "*#\(n)#*"]
        }

        /// Adds `name` when a marked value of that shape decodes; else leaves the document as it was.
        mutating func tryAdd(_ name: String, _ shape: Any, to document: [String: Any]) -> [String: Any] {
            var candidate = document
            candidate[name] = shape
            let before = markers.count
            let marked = markStrings(in: candidate, only: name)
            let added = markers.count > before && decodes(marked)
            // The pass over every field marks it again and records that marker.
            markers.removeSubrange(before...)
            return added ? marked : document
        }

        /// Marks every string leaf of the payload (of its field `only`, when given).
        mutating func markStrings(in document: [String: Any], only: String? = nil) -> [String: Any] {
            var root = document
            for key in document.keys.sorted() where only == nil || key == only {
                root = mark(value: document[key] as Any, at: [.key(key)], root: root)
            }
            return root
        }

        enum Step { case key(String), index(Int) }

        static func describe(_ steps: [Step]) -> String {
            var out = ""
            for step in steps {
                switch step {
                case .key(let key): out += out.isEmpty ? key : ".\(key)"
                case .index(let i): out += "[\(i)]"
                }
            }
            return out
        }

        mutating func mark(value: Any, at steps: [Step], root: [String: Any]) -> [String: Any] {
            var root = root
            switch value {
            case is String:
                for candidate in candidates() {
                    let attempt = Self.setting(candidate, at: steps[...], in: root) as? [String: Any] ?? root
                    if decodes(attempt) {
                        markers.append(Marker(path: Self.describe(steps), value: candidate))
                        return attempt
                    }
                }
            case let object as [String: Any]:
                for key in object.keys.sorted() { root = mark(value: object[key] as Any, at: steps + [.key(key)], root: root) }
            case let array as [Any]:
                for (i, element) in array.enumerated() { root = mark(value: element, at: steps + [.index(i)], root: root) }
            default:
                break
            }
            return root
        }

        static func setting(_ value: Any, at steps: ArraySlice<Step>, in container: Any) -> Any {
            guard let step = steps.first else { return value }
            switch step {
            case .key(let key):
                var object = container as? [String: Any] ?? [:]
                object[key] = setting(value, at: steps.dropFirst(), in: object[key] as Any)
                return object
            case .index(let i):
                var array = container as? [Any] ?? []
                guard i < array.count else { return array }
                array[i] = setting(value, at: steps.dropFirst(), in: array[i])
                return array
            }
        }
    }
}
