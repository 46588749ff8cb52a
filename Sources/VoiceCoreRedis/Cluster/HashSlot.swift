/// Redis Cluster's key → hash slot function and the key positions of the commands VoiceCore sends.
///
/// A key's slot is `CRC16(key) mod 16384` (CRC16-CCITT/XMODEM, as in the Redis Cluster
/// specification), computed over the key's hash tag instead when the key contains `{…}` with at
/// least one byte between the first `{` and the next `}`. VoiceCore's stream keys carry the
/// partition as their tag (`vc:{p07}:calls`), so every key of one partition — its streams, their
/// dead-letter streams, leases and deduplication keys — lives in one slot.
public enum HashSlot {
    /// The number of hash slots of a Redis Cluster.
    public static let count = 16_384

    /// The slot of `key`.
    public static func of<Bytes: Collection<UInt8>>(_ key: Bytes) -> Int {
        Int(crc16(hashPart(of: Array(key))) % UInt16(count))
    }

    /// The slot of a text key.
    public static func of(_ key: String) -> Int { of(Array(key.utf8)) }

    /// The bytes that are hashed: the hash tag when there is a non-empty one, else the whole key.
    static func hashPart(of key: [UInt8]) -> ArraySlice<UInt8> {
        guard let open = key.firstIndex(of: UInt8(ascii: "{")),
              let close = key[(open + 1)...].firstIndex(of: UInt8(ascii: "}")),
              close > open + 1 else { return key[...] }
        return key[(open + 1)..<close]
    }

    /// CRC16-CCITT (XMODEM): polynomial 0x1021, initial value 0, no reflection.
    public static func crc16<Bytes: Collection<UInt8>>(_ bytes: Bytes) -> UInt16 {
        var crc: UInt16 = 0
        for byte in bytes {
            crc = (crc << 8) ^ table[Int(((crc >> 8) ^ UInt16(byte)) & 0xff)]
        }
        return crc
    }

    private static let table: [UInt16] = (0..<256).map { index -> UInt16 in
        var crc = UInt16(index) << 8
        for _ in 0..<8 { crc = crc & 0x8000 != 0 ? (crc << 1) ^ 0x1021 : crc << 1 }
        return crc
    }
}

/// Where the keys of a command are, for routing it to the node that owns them.
public enum CommandKeys {
    /// The keys of `command` as bytes, or an empty list for a command without keys (`PING`,
    /// `INFO`, `SCAN`, `WAIT`, …), which any node may answer.
    public static func of(_ command: RESPCommand) -> [[UInt8]] {
        let args = command.arguments
        guard let first = args.first else { return [] }
        let name = bytes(first).map { $0 >= 97 && $0 <= 122 ? $0 - 32 : $0 }
        switch String(decoding: name, as: UTF8.self) {
        case "PING", "INFO", "SCRIPT", "CLUSTER", "WAIT", "SCAN", "CLIENT", "AUTH", "SELECT", "ECHO", "TIME",
             "DBSIZE", "FLUSHALL", "FLUSHDB", "CONFIG", "COMMAND", "READONLY", "READWRITE", "ASKING", "MULTI",
             "EXEC", "DISCARD", "ROLE", "LASTSAVE", "BGREWRITEAOF", "BGSAVE", "SAVE", "SHUTDOWN", "DEBUG",
             "HELLO", "RESET", "QUIT", "SLOWLOG", "LATENCY", "MONITOR", "FUNCTION", "ACL", "RANDOMKEY":
            return []
        case "EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "FCALL_RO":
            guard args.count >= 3, let count = Int(String(decoding: bytes(args[2]), as: UTF8.self)), count >= 0,
                  args.count >= 3 + count else { return [] }
            return args[3..<(3 + count)].map(bytes)
        case "XREAD", "XREADGROUP":
            guard let streams = args.firstIndex(where: { String(decoding: bytes($0), as: UTF8.self).uppercased() == "STREAMS" }) else { return [] }
            let rest = args[(streams + 1)...]
            return rest.prefix(rest.count / 2).map(bytes)
        case "DEL", "UNLINK", "EXISTS", "MGET", "TOUCH", "WATCH":
            return args.dropFirst().map(bytes)
        case "MSET", "MSETNX":
            return stride(from: 1, to: args.count, by: 2).map { bytes(args[$0]) }
        case "XINFO", "XGROUP", "OBJECT", "MEMORY":
            return args.count > 2 ? [bytes(args[2])] : []
        default:
            return args.count > 1 ? [bytes(args[1])] : []
        }
    }

    /// The one slot every key of `command` hashes to; `nil` for a command without keys.
    /// - Throws: ``RedisError/Kind/crossSlot`` naming the keys and their slots, before anything
    ///   is sent, when the keys hash to different slots.
    public static func slot(of command: RESPCommand) throws -> Int? {
        let keys = of(command)
        guard let first = keys.first else { return nil }
        let slot = HashSlot.of(first)
        for key in keys.dropFirst() where HashSlot.of(key) != slot {
            let listed = keys.prefix(8).map { "\(String(decoding: $0, as: UTF8.self)) (slot \(HashSlot.of($0)))" }.joined(separator: ", ")
            throw RedisError(kind: .crossSlot, message: "the keys of '\(command)' hash to different cluster slots: \(listed)\(keys.count > 8 ? ", …" : ""). A command's keys must share one slot: give them one {hash tag}")
        }
        return slot
    }

    static func bytes(_ argument: RESPArgument) -> [UInt8] {
        switch argument {
        case .string(let s): return Array(s.utf8)
        case .bytes(let b): return b
        case .integer(let i): return Array(String(i).utf8)
        }
    }
}
