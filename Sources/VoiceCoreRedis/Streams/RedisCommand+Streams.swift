// Typed stream commands. Each returns a `RedisCommand` whose reply decodes into Swift types.

extension RedisCommand where Response == StreamEntryID {
    /// `XADD key [MAXLEN|MINID ~ n] *|id field value…` → the new entry's id.
    public static func xadd(_ key: String, id: StreamEntryID? = nil, trim: StreamTrim? = nil, fields: [StreamField]) -> Self {
        var args: [RESPArgument] = ["XADD", .string(key)]
        args.reserveCapacity(4 + fields.count * 2 + 5)
        if let trim { args += trim.arguments }
        args.append(id.map { .string($0.description) } ?? "*")
        for field in fields {
            args.append(.string(field.name))
            args.append(.bytes(field.value))
        }
        return RedisCommand(RESPCommand(args)) { try StreamEntryID.decode($0, "XADD") }
    }

    /// `XADD` with text fields given as pairs.
    public static func xadd(_ key: String, id: StreamEntryID? = nil, trim: StreamTrim? = nil, fields: [(String, String)]) -> Self {
        xadd(key, id: id, trim: trim, fields: fields.map { StreamField($0.0, $0.1) })
    }
}

extension RedisCommand where Response == [StreamReadResult] {
    /// `XREADGROUP GROUP group consumer [COUNT n] [BLOCK ms] [NOACK] STREAMS key… id…`.
    ///
    /// Returns an empty list when `block` passes with nothing to read. The connection's socket
    /// timeout is extended by `block` for this call.
    public static func xreadgroup(
        group: String, consumer: String, streams: [(key: String, position: GroupReadPosition)],
        count: Int? = nil, block: Duration? = nil, noAck: Bool = false
    ) -> Self {
        var args: [RESPArgument] = ["XREADGROUP", "GROUP", .string(group), .string(consumer)]
        if let count { args += ["COUNT", .integer(count)] }
        if let block { args += ["BLOCK", .integer(Int(block.milliseconds))] }
        if noAck { args.append("NOACK") }
        args.append("STREAMS")
        args += streams.map { .string($0.key) }
        args += streams.map { $0.position.argument }
        return RedisCommand(RESPCommand(args), blockingTimeout: block, decodeReply: { try $0.streamRead("XREADGROUP") }) { try decodeStreamRead($0, "XREADGROUP") }
    }

    /// `XREAD [COUNT n] [BLOCK ms] STREAMS key… id…` (ids: entries after them; `$` is not offered
    /// because it races: read the last id with XINFO first).
    public static func xread(streams: [(key: String, after: StreamEntryID)], count: Int? = nil, block: Duration? = nil) -> Self {
        var args: [RESPArgument] = ["XREAD"]
        if let count { args += ["COUNT", .integer(count)] }
        if let block { args += ["BLOCK", .integer(Int(block.milliseconds))] }
        args.append("STREAMS")
        args += streams.map { .string($0.key) }
        args += streams.map { .string($0.after.description) }
        return RedisCommand(RESPCommand(args), blockingTimeout: block, decodeReply: { try $0.streamRead("XREAD") }) { try decodeStreamRead($0, "XREAD") }
    }
}

private func decodeStreamRead(_ value: RESPValue, _ what: String) throws -> [StreamReadResult] {
    switch value {
    case .null:
        return []
    case .array(let streams):
        return try streams.map { item in
            guard case .array(let pair) = item, pair.count == 2, let key = pair[0].string else {
                throw RedisError.unexpected(what, item)
            }
            return StreamReadResult(stream: key, entries: try StreamEntry.decodeList(pair[1], what))
        }
    default:
        throw RedisError.unexpected(what, value)
    }
}

extension RedisCommand where Response == [StreamEntry] {
    /// `XRANGE key start end [COUNT n]`; `nil` bounds mean `-` and `+`.
    public static func xrange(_ key: String, from start: StreamEntryID? = nil, to end: StreamEntryID? = nil, count: Int? = nil) -> Self {
        var args: [RESPArgument] = ["XRANGE", .string(key), .string(start?.description ?? "-"), .string(end?.description ?? "+")]
        if let count { args += ["COUNT", .integer(count)] }
        return RedisCommand(RESPCommand(args), decodeReply: { try $0.streamEntries("XRANGE") }) { try StreamEntry.decodeList($0, "XRANGE") }
    }

    /// `XREVRANGE key end start [COUNT n]`: newest first.
    public static func xrevrange(_ key: String, from end: StreamEntryID? = nil, to start: StreamEntryID? = nil, count: Int? = nil) -> Self {
        var args: [RESPArgument] = ["XREVRANGE", .string(key), .string(end?.description ?? "+"), .string(start?.description ?? "-")]
        if let count { args += ["COUNT", .integer(count)] }
        return RedisCommand(RESPCommand(args), decodeReply: { try $0.streamEntries("XREVRANGE") }) { try StreamEntry.decodeList($0, "XREVRANGE") }
    }

    /// `XCLAIM key group consumer min-idle id… [IDLE ms] [RETRYCOUNT n] [FORCE]` → the claimed
    /// entries (a deleted entry is dropped from the pending list by Redis and not returned).
    public static func xclaim(
        _ key: String, group: String, consumer: String, minIdle: Duration, ids: [StreamEntryID],
        idle: Duration? = nil, retryCount: Int? = nil, force: Bool = false
    ) -> Self {
        var args: [RESPArgument] = ["XCLAIM", .string(key), .string(group), .string(consumer), .integer(Int(minIdle.milliseconds))]
        args += ids.map { .string($0.description) }
        if let idle { args += ["IDLE", .integer(Int(idle.milliseconds))] }
        if let retryCount { args += ["RETRYCOUNT", .integer(retryCount)] }
        if force { args.append("FORCE") }
        return RedisCommand(RESPCommand(args)) { value in
            // Redis < 7 returned nil elements for deleted entries; skip them.
            guard case .array(let items) = value else { throw RedisError.unexpected("XCLAIM", value) }
            return try items.filter { !$0.isNull }.map { try StreamEntry.decode($0, "XCLAIM") }
        }
    }
}

extension RedisCommand where Response == Int {
    /// `XACK key group id…` → how many were acknowledged.
    public static func xack(_ key: String, group: String, ids: [StreamEntryID]) -> Self {
        RedisCommand(RESPCommand(["XACK", .string(key), .string(group)] + ids.map { .string($0.description) })) { try $0.int.orThrow("XACK", $0) }
    }

    /// `XLEN key`.
    public static func xlen(_ key: String) -> Self {
        RedisCommand(RESPCommand("XLEN", .string(key))) { try $0.int.orThrow("XLEN", $0) }
    }

    /// `XDEL key id…` → how many were deleted.
    public static func xdel(_ key: String, ids: [StreamEntryID]) -> Self {
        RedisCommand(RESPCommand(["XDEL", .string(key)] + ids.map { .string($0.description) })) { try $0.int.orThrow("XDEL", $0) }
    }

    /// `XTRIM key MAXLEN|MINID [~] n [LIMIT l]` → how many entries were evicted.
    public static func xtrim(_ key: String, _ trim: StreamTrim) -> Self {
        RedisCommand(RESPCommand(["XTRIM", .string(key)] + trim.arguments)) { try $0.int.orThrow("XTRIM", $0) }
    }

    /// `XGROUP DESTROY key group` → 1 if the group existed.
    public static func xgroupDestroy(_ key: String, group: String) -> Self {
        RedisCommand(RESPCommand("XGROUP", "DESTROY", .string(key), .string(group))) { try $0.int.orThrow("XGROUP DESTROY", $0) }
    }

    /// `XGROUP DELCONSUMER key group consumer` → how many pending entries the consumer had.
    public static func xgroupDelConsumer(_ key: String, group: String, consumer: String) -> Self {
        RedisCommand(RESPCommand("XGROUP", "DELCONSUMER", .string(key), .string(group), .string(consumer))) { try $0.int.orThrow("XGROUP DELCONSUMER", $0) }
    }
}

extension RedisCommand where Response == Void {
    /// `XGROUP CREATE key group id [MKSTREAM] [ENTRIESREAD n]`. Throws a server error with code
    /// `BUSYGROUP` when the group exists.
    public static func xgroupCreate(_ key: String, group: String, start: GroupStart, makeStream: Bool = true, entriesRead: Int? = nil) -> Self {
        var args: [RESPArgument] = ["XGROUP", "CREATE", .string(key), .string(group), start.argument]
        if makeStream { args.append("MKSTREAM") }
        if let entriesRead { args += ["ENTRIESREAD", .integer(entriesRead)] }
        return RedisCommand(RESPCommand(args)) { value in
            guard value.string == "OK" else { throw RedisError.unexpected("XGROUP CREATE", value) }
        }
    }

    /// `XGROUP SETID key group id [ENTRIESREAD n]`.
    public static func xgroupSetID(_ key: String, group: String, start: GroupStart, entriesRead: Int? = nil) -> Self {
        var args: [RESPArgument] = ["XGROUP", "SETID", .string(key), .string(group), start.argument]
        if let entriesRead { args += ["ENTRIESREAD", .integer(entriesRead)] }
        return RedisCommand(RESPCommand(args)) { value in
            guard value.string == "OK" else { throw RedisError.unexpected("XGROUP SETID", value) }
        }
    }
}

extension RedisCommand where Response == AutoClaimResult {
    /// `XAUTOCLAIM key group consumer min-idle start [COUNT n]`: claims entries pending longer than
    /// `minIdle` (of any consumer) for `consumer`.
    public static func xautoclaim(_ key: String, group: String, consumer: String, minIdle: Duration, start: StreamEntryID = .zero, count: Int? = nil) -> Self {
        var args: [RESPArgument] = ["XAUTOCLAIM", .string(key), .string(group), .string(consumer), .integer(Int(minIdle.milliseconds)), .string(start.description)]
        if let count { args += ["COUNT", .integer(count)] }
        return RedisCommand(RESPCommand(args)) { value in
            guard case .array(let parts) = value, parts.count >= 2 else { throw RedisError.unexpected("XAUTOCLAIM", value) }
            let next = try StreamEntryID.decode(parts[0], "XAUTOCLAIM")
            guard case .array(let items) = parts[1] else { throw RedisError.unexpected("XAUTOCLAIM", value) }
            let entries = try items.filter { !$0.isNull }.map { try StreamEntry.decode($0, "XAUTOCLAIM") }
            var deleted: [StreamEntryID] = []
            if parts.count >= 3, case .array(let ids) = parts[2] {
                deleted = try ids.map { try StreamEntryID.decode($0, "XAUTOCLAIM deleted") }
            }
            return AutoClaimResult(nextStart: next, entries: entries, deletedIDs: deleted)
        }
    }
}

extension RedisCommand where Response == PendingSummary {
    /// `XPENDING key group`: how many entries are pending, their id range and count per consumer.
    public static func xpending(_ key: String, group: String) -> Self {
        RedisCommand(RESPCommand("XPENDING", .string(key), .string(group))) { value in
            guard case .array(let parts) = value, parts.count == 4, let count = parts[0].int else { throw RedisError.unexpected("XPENDING", value) }
            var consumers: [String: Int] = [:]
            if case .array(let rows) = parts[3] {
                for row in rows {
                    guard case .array(let pair) = row, pair.count == 2, let name = pair[0].string, let n = pair[1].int else {
                        throw RedisError.unexpected("XPENDING consumers", value)
                    }
                    consumers[name] = n
                }
            }
            return PendingSummary(
                count: count,
                smallestID: parts[1].string.flatMap(StreamEntryID.init),
                greatestID: parts[2].string.flatMap(StreamEntryID.init),
                consumers: consumers
            )
        }
    }
}

extension RedisCommand where Response == [PendingEntry] {
    /// `XPENDING key group [IDLE ms] start end count [consumer]`: one row per pending entry with
    /// its owner, idle time and delivery count.
    public static func xpending(
        _ key: String, group: String, from start: StreamEntryID? = nil, to end: StreamEntryID? = nil,
        count: Int, consumer: String? = nil, minIdle: Duration? = nil
    ) -> Self {
        var args: [RESPArgument] = ["XPENDING", .string(key), .string(group)]
        if let minIdle { args += ["IDLE", .integer(Int(minIdle.milliseconds))] }
        args += [.string(start?.description ?? "-"), .string(end?.description ?? "+"), .integer(count)]
        if let consumer { args.append(.string(consumer)) }
        return RedisCommand(RESPCommand(args)) { value in
            guard case .array(let rows) = value else { throw RedisError.unexpected("XPENDING", value) }
            return try rows.map { row in
                guard case .array(let f) = row, f.count == 4, let consumer = f[1].string, let idle = f[2].int, let deliveries = f[3].int else {
                    throw RedisError.unexpected("XPENDING row", row)
                }
                return PendingEntry(id: try StreamEntryID.decode(f[0], "XPENDING"), consumer: consumer, idle: .milliseconds(idle), deliveryCount: deliveries)
            }
        }
    }
}

/// Turns Redis' flat `name value name value…` replies (XINFO) into a dictionary.
private func fieldMap(_ value: RESPValue, _ what: String) throws -> [String: RESPValue] {
    guard case .array(let flat) = value, flat.count % 2 == 0 else { throw RedisError.unexpected(what, value) }
    var map: [String: RESPValue] = [:]
    var i = 0
    while i < flat.count {
        guard let name = flat[i].string else { throw RedisError.unexpected(what, value) }
        map[name] = flat[i + 1]
        i += 2
    }
    return map
}

extension RedisCommand where Response == StreamInfo {
    /// `XINFO STREAM key`. Throws a server error (`ERR no such key`) for a missing stream.
    public static func xinfoStream(_ key: String) -> Self {
        RedisCommand(RESPCommand("XINFO", "STREAM", .string(key))) { value in
            let map = try fieldMap(value, "XINFO STREAM")
            guard let length = map["length"]?.int, let groups = map["groups"]?.int else { throw RedisError.unexpected("XINFO STREAM", value) }
            func entry(_ name: String) throws -> StreamEntry? {
                guard let v = map[name], !v.isNull else { return nil }
                return try StreamEntry.decode(v, "XINFO STREAM \(name)")
            }
            return StreamInfo(
                length: length,
                lastGeneratedID: map["last-generated-id"]?.string.flatMap(StreamEntryID.init),
                maxDeletedEntryID: map["max-deleted-entry-id"]?.string.flatMap(StreamEntryID.init),
                entriesAdded: map["entries-added"]?.int,
                groups: groups,
                firstEntry: try entry("first-entry"),
                lastEntry: try entry("last-entry")
            )
        }
    }
}

extension RedisCommand where Response == [StreamGroupInfo] {
    /// `XINFO GROUPS key`: each group's consumers, pending count, last delivered id and lag.
    public static func xinfoGroups(_ key: String) -> Self {
        RedisCommand(RESPCommand("XINFO", "GROUPS", .string(key))) { value in
            guard case .array(let rows) = value else { throw RedisError.unexpected("XINFO GROUPS", value) }
            return try rows.map { row in
                let map = try fieldMap(row, "XINFO GROUPS")
                guard let name = map["name"]?.string, let consumers = map["consumers"]?.int, let pending = map["pending"]?.int else {
                    throw RedisError.unexpected("XINFO GROUPS", row)
                }
                return StreamGroupInfo(
                    name: name, consumers: consumers, pending: pending,
                    lastDeliveredID: map["last-delivered-id"]?.string.flatMap(StreamEntryID.init),
                    entriesRead: map["entries-read"]?.int,
                    lag: map["lag"]?.int
                )
            }
        }
    }
}

extension RedisCommand where Response == [StreamConsumerInfo] {
    /// `XINFO CONSUMERS key group`: each consumer's pending count and idle time.
    public static func xinfoConsumers(_ key: String, group: String) -> Self {
        RedisCommand(RESPCommand("XINFO", "CONSUMERS", .string(key), .string(group))) { value in
            guard case .array(let rows) = value else { throw RedisError.unexpected("XINFO CONSUMERS", value) }
            return try rows.map { row in
                let map = try fieldMap(row, "XINFO CONSUMERS")
                guard let name = map["name"]?.string, let pending = map["pending"]?.int, let idle = map["idle"]?.int else {
                    throw RedisError.unexpected("XINFO CONSUMERS", row)
                }
                return StreamConsumerInfo(name: name, pending: pending, idle: .milliseconds(idle), inactive: map["inactive"]?.int.map { .milliseconds($0) })
            }
        }
    }
}

extension Duration {
    /// Whole milliseconds (truncated), as Redis takes them (BLOCK, PX, MINID by age).
    public var milliseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }
}
