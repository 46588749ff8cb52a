import Testing
@testable import VoiceCoreRedis

/// The parts of the cluster client that need no server; the client against a real cluster is
/// tested in VoiceCoreBusTests/ClusterTests.
@Suite("Redis Cluster: URLs, hash slots, command keys, redirects")
struct ClusterRoutingTests {
    @Test func clusterURLsListTheirSeeds() throws {
        let cluster = try RedisConfiguration(url: "redis-cluster://:pw@10.0.0.1:7000,10.0.0.2:7001,[::1]:7002")
        #expect(cluster.clusterMode == .required)
        #expect(cluster.seeds == [.tcp(host: "10.0.0.1", port: 7000), .tcp(host: "10.0.0.2", port: 7001), .tcp(host: "::1", port: 7002)])
        #expect(cluster.endpoint == .tcp(host: "10.0.0.1", port: 7000))
        #expect(cluster.password == "pw")
        #expect(cluster.description == "redis-cluster://:***@10.0.0.1:7000,10.0.0.2:7001,[::1]:7002")

        let either = try RedisConfiguration(url: "redis://a:1,b:2")
        #expect(either.clusterMode == .automatic)
        #expect(either.seeds.count == 2)

        #expect(throws: RedisError.self) { try RedisConfiguration(url: "redis-cluster://a:1,b:2/3") }
        #expect(throws: RedisError.self) { try RedisConfiguration(url: "redis-cluster://a:1,,b:2") }
        let single = try RedisConfiguration(url: "redis://h:6380/4")
        #expect(single.seeds == [.tcp(host: "h", port: 6380)] && single.clusterMode == .automatic && single.database == 4)
    }

    @Test func hashSlotsFollowTheSpecification() {
        // The specification's CRC16 check value and examples.
        #expect(HashSlot.crc16(Array("123456789".utf8)) == 0x31C3)
        #expect(HashSlot.of("123456789") == 0x31C3 % 16384)
        #expect(HashSlot.of("{user1000}.following") == HashSlot.of("{user1000}.followers"))
        #expect(HashSlot.of("{user1000}.following") == HashSlot.of("user1000"))
        // An empty tag does not count: the whole key is hashed.
        #expect(HashSlot.of("foo{}{bar}") == Int(HashSlot.crc16(Array("foo{}{bar}".utf8)) % 16384))
        #expect(HashSlot.of("foo{{bar}}zap") == HashSlot.of("{bar"))
        // Every key of a partition shares the partition's slot.
        let stream = "vc:{p07}:calls"
        for key in ["vc:{p07}:calls:commands", "\(stream):dlq:billing", "\(stream):lease:crm", "\(stream):dedup:t:k", "vc:{p07}:billing"] {
            #expect(HashSlot.of(key) == HashSlot.of(stream), "\(key)")
        }
    }

    @Test func commandKeysAreFoundWhereEachCommandHasThem() throws {
        #expect(CommandKeys.of(RESPCommand("PING")).isEmpty)
        #expect(CommandKeys.of(RESPCommand("XADD", "s", "*", "a", "1")) == [Array("s".utf8)])
        #expect(CommandKeys.of(RESPCommand("EVALSHA", "abc", 2, "k1", "k2", "arg")) == [Array("k1".utf8), Array("k2".utf8)])
        #expect(CommandKeys.of(RESPCommand("XREADGROUP", "GROUP", "g", "c", "COUNT", 10, "STREAMS", "a", "b", ">", ">")) == [Array("a".utf8), Array("b".utf8)])
        #expect(CommandKeys.of(RESPCommand("XGROUP", "CREATE", "s", "g", "$")) == [Array("s".utf8)])
        #expect(CommandKeys.of(RESPCommand("XINFO", "GROUPS", "s")) == [Array("s".utf8)])
        #expect(CommandKeys.of(RESPCommand("DEL", "a", "b")) == [Array("a".utf8), Array("b".utf8)])
        #expect(try CommandKeys.slot(of: RESPCommand("DEL", "{t}a", "{t}b")) == HashSlot.of("t"))
        let error = #expect(throws: RedisError.self) { try CommandKeys.slot(of: RESPCommand("DEL", "a", "b")) }
        #expect(error?.kind == .crossSlot)
        #expect(error?.message.contains("a (slot \(HashSlot.of("a")))") == true)
    }

    @Test func redirectsAreRead() {
        let here = RedisConfiguration.Endpoint.tcp(host: "10.0.0.9", port: 7000)
        #expect(ClusterRedirect("MOVED 3999 127.0.0.1:6381", current: here) == .moved(slot: 3999, to: .tcp(host: "127.0.0.1", port: 6381)))
        #expect(ClusterRedirect("ASK 3999 :6381", current: here) == .ask(slot: 3999, to: .tcp(host: "10.0.0.9", port: 6381)))
        #expect(ClusterRedirect("TRYAGAIN Multiple keys request during rehashing of slot", current: here) == .retry)
        #expect(ClusterRedirect("CLUSTERDOWN The cluster is down", current: here) == .retry)
        #expect(ClusterRedirect("ERR unknown command", current: here) == nil)
    }

    @Test func clusterSlotsRepliesBecomeASlotMap() throws {
        func node(_ host: String, _ port: Int) -> RESPValue { .array([.bulkString(Array(host.utf8)), .integer(Int64(port)), .bulkString(Array("id".utf8))]) }
        let reply = RESPValue.array([
            .array([.integer(0), .integer(5460), node("127.0.0.1", 7001), node("127.0.0.1", 7004)]),
            .array([.integer(5461), .integer(10922), node("", 7002)]),
            .array([.integer(10923), .integer(16383), node("127.0.0.1", 7003)]),
        ])
        let topology = try ClusterTopology(slotsReply: reply, askedAt: .tcp(host: "127.0.0.1", port: 7002))
        #expect(topology.coveredSlots == 16384)
        #expect(topology.master(of: 0) == .tcp(host: "127.0.0.1", port: 7001))
        #expect(topology.master(of: 5461) == .tcp(host: "127.0.0.1", port: 7002))
        #expect(topology.master(of: 16383) == .tcp(host: "127.0.0.1", port: 7003))
        #expect(topology.replicas[.tcp(host: "127.0.0.1", port: 7001)] == [.tcp(host: "127.0.0.1", port: 7004)])
        var moved = topology
        moved.move(slot: 0, to: .tcp(host: "127.0.0.1", port: 7003))
        #expect(moved.master(of: 0) == .tcp(host: "127.0.0.1", port: 7003))
    }
}
