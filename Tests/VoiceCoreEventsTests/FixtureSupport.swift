import Foundation
import Testing
import VoiceCoreExecutors
@testable import VoiceCoreEvents

/// The golden fixtures under `Fixtures/`: CloudEvents in structured form (`data` as a JSON object).
enum Fixtures {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")
    static let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    struct Fixture {
        var url: URL
        var object: [String: Any]
        /// `events` or `commands`.
        var folder: String
        var stem: String

        var data: [String: Any] { object["data"] as? [String: Any] ?? [:] }
        var dataJSON: [UInt8] { Array((try? JSONSerialization.data(withJSONObject: data, options: [.sortedKeys])) ?? Data()) }

        /// The stream fields an entry with this content has on the wire.
        var fields: [EnvelopeField] {
            var fields: [EnvelopeField] = []
            for key in ["specversion", "id", "source", "type", "time", "subject", "dataschema", "datacontenttype", "tenantid", "correlationid", "causationid"] {
                if let value = object[key] as? String { fields.append(EnvelopeField(key, value)) }
            }
            fields.append(EnvelopeField(name: "data", value: dataJSON))
            return fields
        }

        var schemaFile: URL {
            Fixtures.repositoryRoot.appendingPathComponent("schemas/\(folder)/\(stem).schema.json")
        }
    }

    static func load(_ subdirectory: String) throws -> [Fixture] {
        let root = directory.appendingPathComponent(subdirectory)
        guard let enumerator = FileManager.default.enumerator(at: root, includingPropertiesForKeys: nil) else { return [] }
        var fixtures: [Fixture] = []
        for case let url as URL in enumerator where url.pathExtension == "json" {
            let object = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any] ?? [:]
            var folder = url.deletingLastPathComponent().lastPathComponent
            var stem = url.deletingPathExtension().lastPathComponent
            if subdirectory == "invalid" {
                // Invalid fixtures name their schema through their dataschema.
                let schema = object["dataschema"] as? String ?? ""
                let parts = schema.split(separator: "/")
                folder = String(parts[parts.count - 3])
                stem = "\(parts[parts.count - 2]).\(parts[parts.count - 1])"
            }
            fixtures.append(Fixture(url: url, object: object, folder: folder, stem: stem))
        }
        return fixtures.sorted { $0.url.path < $1.url.path }
    }

    static func jsonObject(_ bytes: [UInt8]) throws -> NSDictionary {
        try JSONSerialization.jsonObject(with: Data(bytes)) as? NSDictionary ?? [:]
    }
}

/// Runs the JSON Schema validator from PyPI (`check-jsonschema`), installed by `tools/test`.
enum SchemaValidator {
    struct Outcome {
        var exitCode: Int32
        var output: String
    }

    /// Runs on a thread of its own (`runBlocking`): waiting for the validator must not hold one of
    /// the cooperative pool's threads while timing-sensitive tests run in parallel.
    static func validate(schema: URL, instances: [URL]) async throws -> Outcome {
        let outcome = try await runBlocking { try run(schema: schema, instances: instances) }
        if outcome.output.contains("No module named check_jsonschema") {
            Issue.record("check-jsonschema is not installed: run the tests with `tools/test`, or `python3 -m pip install check-jsonschema`")
        }
        return outcome
    }

    private static func run(schema: URL, instances: [URL]) throws -> Outcome {
        let process = Process()
        // tools/test points VOICECORE_PYTHON at a venv holding check-jsonschema.
        let python = ProcessInfo.processInfo.environment["VOICECORE_PYTHON"] ?? "python3"
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [python, "-m", "check_jsonschema", "--schemafile", schema.path] + instances.map(\.path)
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return Outcome(exitCode: process.terminationStatus, output: output)
    }

    static func temporaryDirectory() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("voicecore-schema-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }
}
