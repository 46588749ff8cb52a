import Testing
@testable import VoiceCoreRedis

@Suite("Redis configuration and encoding")
struct ConfigurationTests {
    @Test func parsesTCPURLWithCredentialsAndDatabase() throws {
        let configuration = try RedisConfiguration(url: "redis://alice:s%40cret@cache.internal:6380/3")
        #expect(configuration.endpoint == .tcp(host: "cache.internal", port: 6380))
        #expect(configuration.username == "alice")
        #expect(configuration.password == "s@cret")
        #expect(configuration.database == 3)
    }

    @Test func parsesPasswordOnlyAndDefaults() throws {
        let configuration = try RedisConfiguration(url: "redis://:hunter2@localhost")
        #expect(configuration.endpoint == .tcp(host: "localhost", port: 6379))
        #expect(configuration.username == nil)
        #expect(configuration.password == "hunter2")
        #expect(configuration.database == 0)
    }

    @Test func parsesUnixSocketURL() throws {
        let configuration = try RedisConfiguration(url: "unix:///run/redis/redis.sock?db=2&password=pw")
        #expect(configuration.endpoint == .unix(path: "/run/redis/redis.sock"))
        #expect(configuration.database == 2)
        #expect(configuration.password == "pw")
    }

    @Test func descriptionNeverShowsThePassword() throws {
        let configuration = try RedisConfiguration(url: "redis://alice:topsecret@host:1/2")
        #expect(!configuration.description.contains("topsecret"))
        #expect(configuration.description == "redis://alice:***@host:1/2")
    }

    @Test(arguments: ["http://host", "redis://host:0", "redis://host:notaport", "redis://host/x", "rediss://host", "unix://relative"])
    func rejectsInvalidURLsWithAReason(_ url: String) {
        #expect {
            try RedisConfiguration(url: url)
        } throws: { error in
            guard let error = error as? RedisError else { return false }
            return error.kind == .invalidConfiguration && error.message.contains("invalid Redis URL")
        }
    }

    @Test func encodesBinarySafeArgumentsAsRESP() {
        var encoder = RESPEncoder()
        encoder.append(RESPCommand("SET", .bytes([0, 13, 10, 255]), .integer(42)))
        let expected: [UInt8] = Array("*3\r\n$3\r\nSET\r\n$4\r\n".utf8) + [0, 13, 10, 255] + Array("\r\n$2\r\n42\r\n".utf8)
        #expect(encoder.buffer == expected)
    }

    @Test func commandDescriptionHidesLaterArguments() {
        let auth = RESPCommand("AUTH", "user", "password123")
        #expect(!auth.description.contains("password123"))
    }

    @Test func entryIDsParseAndOrder() throws {
        let a = try #require(StreamEntryID("1700000000000-5"))
        let b = try #require(StreamEntryID(ascii: Array("1700000000000-12".utf8)))
        #expect(a < b)
        #expect(StreamEntryID("17") == StreamEntryID(milliseconds: 17, sequence: 0))
        #expect(StreamEntryID("1-2-3") == nil)
        #expect(StreamEntryID(ascii: Array("-5".utf8)) == nil)
        #expect(StreamEntryID(ascii: Array("99999999999999999999-0".utf8)) == nil)
        #expect(a.successor == StreamEntryID(milliseconds: 1_700_000_000_000, sequence: 6))
    }

}
