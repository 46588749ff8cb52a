import VoiceCoreEvents
import VoiceCoreRedis
import VoiceCoreTime

/// Which owner each value of a scope belongs to, decided atomically across every writer: the first
/// writer of a value (a phone number, an e-mail address) claims it for its owner, and everyone
/// after it finds that claim. The CRM's contact identity is one use: a caller, a lead and a contact
/// written through the API that share a phone are one contact, whichever arrives first, whatever
/// partition or instance handles each.
///
/// A scope is one Redis hash (its key, e.g. `vc:{crm-contacts:<tenant>}`, carries its own hash
/// tag), and every resolution is one Lua script on it: Redis serialises concurrent writers, the
/// second finds the first's claim, and a resolution repeated for a redelivered message finds its
/// own earlier claim. Fields of the hash, for a kind tag `k`:
/// - `k:<value>`: the owner that claimed the value.
/// - `c:<owner>`: the owner's revision (µs); its presence means the owner exists.
/// - `ck:<owner>`: the owner's current value of kind `k`.
/// - `a:<id>`: an id an update named for an owner that already existed under another id (one of
///   its values was claimed): later updates through that id reach the same owner.
///
/// A value once claimed stays its owner's, even after the owner's current value of that kind
/// changes: it is never handed to another owner, so a value appears with one owner only, ever.
///
/// Each resolution returns a revision: Redis' clock in µs, strictly increasing per owner, so
/// whatever is derived from resolutions can be ordered by it even when published out of order.
///
/// ```swift
/// let contacts = ClaimIndex(connection: connection)
/// let resolution = try await contacts.resolve(in: "vc:{crm-contacts:\(tenant)}",
///     values: [.init(.init("p"), "+4930123"), .init(.init("e"), nil)], proposed: newID, fallback: otherID)
/// ```
public struct ClaimIndex: Sendable {
    /// A kind of value owners claim: one lower-case letter other than `a` and `c` (those name the
    /// index's own fields).
    public struct Kind: Sendable, Hashable, CustomStringConvertible {
        public let tag: String

        /// - Precondition: `tag` is a lower-case ASCII letter other than `a` and `c`.
        public init(_ tag: Unicode.Scalar) {
            precondition(("b"..."z").contains(tag) && tag != "c", "a claim kind is one lower-case letter other than a and c")
            self.tag = String(Character(tag))
        }

        public var description: String { tag }
    }

    /// A value of one kind, as asked for; `nil` asks for none of that kind.
    public struct Value: Sendable, Hashable {
        public var kind: Kind
        public var value: String?

        public init(_ kind: Kind, _ value: String?) {
            self.kind = kind
            self.value = value
        }
    }

    /// An owner and its values after a resolution.
    public struct Resolution: Sendable, Hashable {
        public var owner: String
        /// The owner's current value of each kind asked about, in the order asked (`nil`: none).
        public var values: [String?]
        /// Strictly increasing per owner (Redis' clock when it is ahead).
        public var revision: Timestamp
        /// The kinds whose value an update asked for and another owner holds (left unchanged).
        public var refused: [Kind]
    }

    private let connection: BusConnection

    public init(connection: BusConnection) {
        self.connection = connection
    }

    /// The owner of the first of `values` (in order) that is claimed, else `proposed` (else
    /// `fallback` when `proposed` already exists as an owner, with other values). Each value no one
    /// has claimed is claimed for the owner when the owner has none of its kind yet; the owner's
    /// existing values are not replaced.
    public func resolve(in index: String, values: [Value], proposed: String, fallback: String) async throws -> Resolution {
        try await run(index, mode: "touch", requested: "", proposed: proposed, fallback: fallback, values: values)
    }

    /// The owner an update of `requested` applies to: `requested` itself when it exists (or when
    /// none of `values` is claimed), else the owner of the first claimed value, remembered for
    /// `requested` from then on. Each of `values` becomes the owner's current value of its kind,
    /// claimed for it, unless another owner claimed it (then the kind is in ``Resolution/refused``).
    public func update(in index: String, owner requested: String, values: [Value]) async throws -> Resolution {
        try await run(index, mode: "update", requested: requested, proposed: requested, fallback: requested, values: values)
    }

    private func run(_ index: String, mode: String, requested: String, proposed: String, fallback: String, values: [Value]) async throws -> Resolution {
        var arguments: [RESPArgument] = [.string(mode), .string(requested), .string(proposed), .string(fallback)]
        for value in values {
            arguments.append(.string(value.kind.tag))
            arguments.append(.string(value.value ?? ""))
        }
        let reply = try await Self.script.run(on: connection.client, keys: [index], arguments: arguments)
        guard let items = reply.array, items.count == 3 + values.count,
              let owner = items[0].string, !owner.isEmpty, let micros = items[1].string.flatMap({ Int64($0) })
        else { throw RedisError(kind: .unexpectedReply, message: "the claim index \(index) answered \(reply)") }
        let kinds = Dictionary(values.map { ($0.kind.tag, $0.kind) }, uniquingKeysWith: { first, _ in first })
        return Resolution(
            owner: owner,
            values: items[3...].map { item in item.string.flatMap { $0.isEmpty ? nil : $0 } },
            revision: Timestamp(microsecondsSinceEpoch: micros),
            refused: (items[2].string ?? "").split(separator: ",").compactMap { kinds[String($0)] })
    }

    /// ARGV: mode (`touch` | `update`), requested id (update), proposed id, fallback id (when the
    /// proposed id is already another owner's), then kind tag and value per kind (empty = none).
    /// Returns {owner, revision µs, refused kind tags comma-separated, then each kind's value}.
    private static let script = RedisScript("""
        local index = KEYS[1]
        local mode, requested, proposed, fallback = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
        local kinds, values = {}, {}
        for i = 5, #ARGV - 1, 2 do
          kinds[#kinds + 1] = ARGV[i]
          values[#values + 1] = ARGV[i + 1]
        end
        local function get(field)
          local value = redis.call('HGET', index, field)
          if value == false then return nil end
          return value
        end
        local function owner(kind, value)
          if value == '' then return nil end
          return get(kind .. ':' .. value)
        end
        local function firstOwner()
          for i = 1, #kinds do
            local found = owner(kinds[i], values[i])
            if found ~= nil then return found end
          end
          return nil
        end

        local contact
        if mode == 'update' then
          contact = get('a:' .. requested) or requested
          if get('c:' .. contact) == nil then
            local existing = firstOwner()
            if existing ~= nil and existing ~= contact then
              redis.call('HSET', index, 'a:' .. requested, existing)
              contact = existing
            end
          end
        else
          contact = firstOwner()
          if contact == nil then
            contact = proposed
            if get('c:' .. proposed) ~= nil then contact = fallback end
          end
        end

        local refused = {}
        local function take(kind, value, current)
          if value == '' then return current end
          local holder = get(kind .. ':' .. value)
          if holder == contact then
            if mode == 'update' or current == nil then return value end
            return current
          end
          if holder ~= nil then
            if mode == 'update' then table.insert(refused, kind) end
            return current
          end
          if mode == 'update' or current == nil then
            redis.call('HSET', index, kind .. ':' .. value, contact)
            return value
          end
          return current
        end
        local current = {}
        for i = 1, #kinds do
          current[i] = take(kinds[i], values[i], get('c' .. kinds[i] .. ':' .. contact))
        end

        local time = redis.call('TIME')
        local revision = tonumber(time[1]) * 1000000 + tonumber(time[2])
        local previous = tonumber(get('c:' .. contact) or '0')
        if previous >= revision then revision = previous + 1 end
        local text = string.format('%d', revision)
        redis.call('HSET', index, 'c:' .. contact, text)
        for i = 1, #kinds do
          if current[i] ~= nil then redis.call('HSET', index, 'c' .. kinds[i] .. ':' .. contact, current[i]) end
        end
        local out = {contact, text, table.concat(refused, ',')}
        for i = 1, #kinds do out[#out + 1] = current[i] or '' end
        return out
        """)
}

extension ClaimIndex {
    /// The key of a tenant's CRM contact index (`<prefix>:{crm-contacts:<tenant>}`, its own hash
    /// tag): named here, in the bus, so the CRM service that writes it and an erasure that removes
    /// a contact's claims from it (``StreamErasure/forgetContacts(tenant:contacts:)``) agree.
    public static func contactIndexKey(prefix: String, tenant: Identifier) -> String {
        "\(prefix):{crm-contacts:\(tenant)}"
    }
}
