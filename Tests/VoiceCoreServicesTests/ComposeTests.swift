import Foundation
import Testing
import VoiceCoreExecutors
import VoiceCoreRedis
import VoiceCoreServices
import VoiceCoreTestSupport

/// compose/docker-compose.yml is checked, not run (no Docker engine here): it must be valid
/// under the Compose specification's JSON Schema and run every service.
@Suite("Compose file")
struct ComposeTests {
    static let file = TestServers.root.appendingPathComponent("compose/docker-compose.yml")
    static let clusterFile = TestServers.root.appendingPathComponent("compose/docker-compose.cluster.yml")

    struct Outcome { var status: Int32; var output: String }

    static func python(_ arguments: [String]) async throws -> Outcome {
        try await runBlocking {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = [ProcessInfo.processInfo.environment["VOICECORE_PYTHON"] ?? "python3"] + arguments
            let pipe = Pipe()
            process.standardOutput = pipe
            process.standardError = pipe
            try process.run()
            let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            return Outcome(status: process.terminationStatus, output: output)
        }
    }

    static func schema() throws -> String {
        guard let path = ProcessInfo.processInfo.environment["VOICECORE_COMPOSE_SCHEMA"], FileManager.default.fileExists(atPath: path) else {
            throw TestFailure("VOICECORE_COMPOSE_SCHEMA does not name the Compose specification's schema: run the tests with tools/test (it fetches compose_spec.json)")
        }
        return path
    }

    @Test("valid under the Compose specification's schema; a misspelt key is not")
    func validates() async throws {
        let schema = try Self.schema()
        let valid = try await Self.python(["-m", "check_jsonschema", "--schemafile", schema, Self.file.path, Self.clusterFile.path])
        #expect(valid.status == 0, "\(valid.output)")
        let broken = FileManager.default.temporaryDirectory.appendingPathComponent("compose-\(UUID().uuidString).yml")
        let text = try String(contentsOf: Self.file, encoding: .utf8).replacingOccurrences(of: "    command: [\"voicecore\", \"project\"]", with: "    comand: [\"voicecore\", \"project\"]")
        try text.write(to: broken, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: broken) }
        let invalid = try await Self.python(["-m", "check_jsonschema", "--schemafile", schema, broken.path])
        #expect(invalid.status != 0 && invalid.output.contains("comand"), "\(invalid.output)")
    }

    @Test("every service, the edge, the projector and the migration run as containers of voicecore commands")
    func runsEveryPart() async throws {
        let dump = try await Self.python(["-c", "import json, sys; from ruamel.yaml import YAML; print(json.dumps(YAML(typ='safe').load(open(sys.argv[1]))))", Self.file.path])
        #expect(dump.status == 0, "\(dump.output)")
        let document = try #require(try JSONSerialization.jsonObject(with: Data(dump.output.utf8)) as? [String: Any])
        let services = try #require(document["services"] as? [String: [String: Any]])
        var consumed: Set<String> = []
        var commands: Set<String> = []
        for (name, service) in services where name != "redis" && name != "postgres" {
            let command = try #require(service["command"] as? [String], "\(name) has a command")
            #expect(command.first == "voicecore", "\(name)")
            commands.insert(command[1])
            if command[1] == "consume" { consumed.insert(command[2]) }
            let environment = service["environment"] as? [String: Any] ?? [:]
            #expect(environment["REDIS_URL"] != nil && environment["DATABASE_URL"] != nil, "\(name) knows where Redis and Postgres are")
            if name != "migrate" { #expect(service["healthcheck"] != nil, "\(name) has a health check") }
        }
        #expect(consumed == Set(PlatformServices.all.map(\.name)))
        #expect(commands == ["migrate", "edge", "consume", "project"])
    }

    static func load(_ file: URL) async throws -> [String: [String: Any]] {
        let dump = try await python(["-c", "import json, sys; from ruamel.yaml import YAML; print(json.dumps(YAML(typ='safe').load(open(sys.argv[1]))))", file.path])
        #expect(dump.status == 0, "\(dump.output)")
        let document = try #require(try JSONSerialization.jsonObject(with: Data(dump.output.utf8)) as? [String: Any])
        return try #require(document["services"] as? [String: [String: Any]])
    }

    @Test("the cluster variant: six cluster nodes, and every VoiceCore part pointed at all of them")
    func clusterVariantCoversEveryPart() async throws {
        let base = try await Self.load(Self.file)
        let cluster = try await Self.load(Self.clusterFile)
        let nodes = cluster.filter { ($0.value["command"] as? [String])?.contains("--cluster-enabled") == true }.keys.sorted()
        #expect(nodes == (1...6).map { "redis-\($0)" })
        let parts = Set(base.keys).subtracting(["redis", "postgres"])
        for part in parts {
            let environment = try #require(cluster[part]?["environment"] as? [String: Any], "\(part) is pointed at the cluster")
            let url = try #require(environment["REDIS_URL"] as? String)
            let configuration = try RedisConfiguration(url: url)
            #expect(configuration.clusterMode == .required)
            #expect(configuration.seeds.map(\.description) == nodes.map { "\($0):6379" }, "\(part)")
            let dependencies = try #require(cluster[part]?["depends_on"] as? [String: Any])
            #expect(dependencies["redis-cluster-init"] != nil, "\(part) waits for the cluster")
        }
        let initCommand = (cluster["redis-cluster-init"]?["command"] as? [String])?.joined() ?? ""
        #expect(initCommand.contains("--cluster create") && initCommand.contains("--cluster-replicas 1"))
    }
}
