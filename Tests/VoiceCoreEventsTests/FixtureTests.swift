import Foundation
import Testing
@testable import VoiceCoreEvents

@Suite("Golden fixtures against the schemas and the Swift types")
struct FixtureTests {
    @Test func everyRegisteredTypeHasASchemaAndAFixture() throws {
        let fixtures = try Fixtures.load("valid")
        let fixtureNames = Set(fixtures.map { "\($0.folder)/\($0.stem)" })
        let types: [any Message.Type] = [
            CallStarted.self, CallAnswered.self, CallEnded.self, TranscriptChunk.self, TranscriptChunkV1.self, IntentDetected.self,
            CallSummarized.self, LeadCreated.self, ContactUpserted.self, InteractionLogged.self, UsageRecorded.self,
            TenantProvisioned.self, TenantSettingsChanged.self, ReportCallProgress.self, ReportTranscriptSegment.self,
            CreateLead.self, UpdateContact.self, ChangeSettings.self, ReportCallerTurn.self, ReceptionistReplied.self,
            AppointmentRequested.self, MessageTaken.self, CallTransferred.self, VoicemailRecorded.self, ReportRecording.self,
            ReportPromptPlayed.self, CallerErased.self,
        ]
        for type in types {
            let name = "\(type.kind == .event ? "events" : "commands")/\(type.schemaName).v\(type.version)"
            #expect(fixtureNames.contains(name), "no fixture for \(name)")
            #expect(type.dataschema == SchemaURI.uri(kind: type.kind, name: type.schemaName, version: type.version))
            let file = Fixtures.repositoryRoot.appendingPathComponent(SchemaURI.file(kind: type.kind, name: type.schemaName, version: type.version))
            #expect(FileManager.default.fileExists(atPath: file.path), "no schema at \(file.path)")
            let schema = try JSONSerialization.jsonObject(with: Data(contentsOf: file)) as? [String: Any]
            #expect(schema?["$id"] as? String == type.dataschema)
            #expect(MessageRegistry.standard.knows(type: type.type, version: type.version))
        }
        #expect(fixtures.count == types.count)
        // A type added to the registry without a schema and a fixture fails here, not in a consumer.
        let listed = Set(types.map { "\($0.type) v\($0.version)" })
        let registered = Set(MessageRegistry.standardTypes.map { "\($0.type) v\($0.version)" })
        #expect(listed == registered, "registered without a schema and fixture: \(registered.subtracting(listed).sorted())")
    }

    @Test func validFixturesPassTheJSONSchemaValidator() async throws {
        let fixtures = try Fixtures.load("valid")
        let temporary = try SchemaValidator.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: temporary) }
        var wireForms: [URL] = []
        for (i, fixture) in fixtures.enumerated() {
            let data = temporary.appendingPathComponent("data-\(i).json")
            try Data(fixture.dataJSON).write(to: data)
            let outcome = try await SchemaValidator.validate(schema: fixture.schemaFile, instances: [data])
            #expect(outcome.exitCode == 0, "\(fixture.url.lastPathComponent): \(outcome.output)")

            // The envelope as the Swift encoder writes it to the stream.
            let decoded = try MessageRegistry.standard.decode(fields: fixture.fields)
            var wire: [String: String] = [:]
            for field in decoded.envelope.fields { wire[field.name] = field.string }
            let url = temporary.appendingPathComponent("envelope-\(i).json")
            try JSONSerialization.data(withJSONObject: wire).write(to: url)
            wireForms.append(url)
        }
        let envelope = try await SchemaValidator.validate(schema: Fixtures.repositoryRoot.appendingPathComponent("schemas/envelope.schema.json"), instances: wireForms)
        #expect(envelope.exitCode == 0, "\(envelope.output)")
    }

    @Test func validFixturesRoundTripThroughTheSwiftTypesUnchanged() throws {
        for fixture in try Fixtures.load("valid") {
            let decoded = try MessageRegistry.standard.decode(fields: fixture.fields)
            guard case .known(let envelope, let message) = decoded else {
                Issue.record("\(fixture.stem) decoded as unknown")
                continue
            }
            // Envelope attributes survive unchanged.
            for (name, value) in fixture.object where name != "data" {
                let field = envelope.fields.first { $0.name == name }
                #expect(field?.string == value as? String, "\(fixture.stem): \(name)")
            }
            if fixture.stem == "call.transcript-chunk.v1" {
                // Old entries decode into the current type (upcast); check the v1 type round-trips itself.
                let old = try MessageCodec.decode(TranscriptChunkV1.self, from: fixture.dataJSON)
                #expect(try Fixtures.jsonObject(MessageCodec.encode(old)) == fixture.data as NSDictionary)
                continue
            }
            // The payload re-encodes to the same JSON, and Foundation's Codable agrees on the value.
            let reencoded = try Fixtures.jsonObject(encode(message))
            #expect(reencoded == fixture.data as NSDictionary, "\(fixture.stem) changed in a round trip")
            let agrees = try foundationAgrees(message, fixture.dataJSON)
            #expect(agrees, "\(fixture.stem): Codable disagrees")
        }
    }

    @Test func invalidFixturesAreRejectedByTheValidatorAndTheSwiftDecoder() async throws {
        let fixtures = try Fixtures.load("invalid")
        #expect(fixtures.count >= 10)
        let temporary = try SchemaValidator.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: temporary) }
        for (i, fixture) in fixtures.enumerated() {
            let expected = fixture.object["expect_field"] as? String ?? "?"
            let url = temporary.appendingPathComponent("invalid-\(i).json")
            try Data(fixture.dataJSON).write(to: url)
            let outcome = try await SchemaValidator.validate(schema: fixture.schemaFile, instances: [url])
            #expect(outcome.exitCode == 1, "the validator accepted \(fixture.url.lastPathComponent): \(outcome.output)")

            #expect {
                try MessageRegistry.standard.decode(fields: fixture.fields)
            } throws: { error in
                guard let error = error as? MessageDecodingError else { return false }
                if error.field != expected { Issue.record("\(fixture.url.lastPathComponent): named \(error.field) (\(error.reason)), expected \(expected)") }
                return error.field == expected && !error.reason.isEmpty
            }
        }
    }

    @Test func theVersionOneTranscriptChunkIsUpcast() throws {
        let fixture = try #require(try Fixtures.load("valid").first { $0.stem == "call.transcript-chunk.v1" })
        let decoded = try MessageRegistry.standard.decode(fields: fixture.fields)
        let chunk = try #require(decoded.message(as: TranscriptChunk.self))
        #expect(chunk.track == .inbound)
        #expect(chunk.isFinal)
        #expect(chunk.startOffsetMs == 12_340)
        #expect(chunk.endOffsetMs == 12_340)
        #expect(chunk.text == "Hi, I'd like to book an appointment.")
        #expect(chunk.language == nil)
        #expect(decoded.envelope.version == 1)
    }

    private func encode<M: Message>(_ message: M) -> [UInt8] { MessageCodec.encode(message) }

    private func foundationAgrees<M: Message>(_ message: M, _ json: [UInt8]) throws -> Bool {
        try JSONDecoder().decode(M.self, from: Data(json)) == message
    }
}
