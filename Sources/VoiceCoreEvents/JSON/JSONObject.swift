import VoiceCoreTime

/// A parsed JSON object with typed accessors that name the failing field by its path.
public struct JSONObject {
    let members: [JSONMember]
    /// The path of this object, `data` or `data.settings.intents[2]`.
    public let path: String

    init(_ node: JSONNode, path: String) throws(MessageDecodingError) {
        guard case .object(let members) = node else { throw .invalid(path, "must be an object, found \(node.kind)") }
        self.members = members
        self.path = path
    }

    /// Parses `json`, which must be one object.
    static func parse(_ json: [UInt8], path: String = "data") throws(MessageDecodingError) -> JSONObject {
        let node: JSONNode
        do {
            node = try JSONParser.parse(json)
        } catch {
            throw .invalid(path, "is not valid JSON at byte \(error.offset): \(error.reason)")
        }
        return try JSONObject(node, path: path)
    }

    private func node(_ name: String) -> JSONNode? {
        for member in members where member.key == name {
            if case .null = member.value { return nil }
            return member.value
        }
        return nil
    }

    private func required(_ name: String) throws(MessageDecodingError) -> JSONNode {
        guard let node = node(name) else { throw .missing("\(path).\(name)") }
        return node
    }

    private func mismatch(_ name: String, _ expected: String, _ node: JSONNode) -> MessageDecodingError {
        .invalid("\(path).\(name)", "must be \(expected), found \(node.kind)")
    }

    // MARK: Required

    public func string(_ name: String) throws(MessageDecodingError) -> String {
        let node = try required(name)
        guard case .string(let value) = node else { throw mismatch(name, "a string", node) }
        return value
    }

    public func int(_ name: String) throws(MessageDecodingError) -> Int {
        Int(try int64(name))
    }

    public func int64(_ name: String) throws(MessageDecodingError) -> Int64 {
        let node = try required(name)
        guard case .number(let text) = node else { throw mismatch(name, "an integer", node) }
        if let value = Int64(text) { return value }
        if let d = Double(text), d == d.rounded(), let value = Int64(exactly: d) { return value }
        throw .invalid("\(path).\(name)", "must be an integer, found \(text)")
    }

    public func double(_ name: String) throws(MessageDecodingError) -> Double {
        let node = try required(name)
        guard case .number(let text) = node, let value = Double(text) else { throw mismatch(name, "a number", node) }
        return value
    }

    public func bool(_ name: String) throws(MessageDecodingError) -> Bool {
        let node = try required(name)
        guard case .bool(let value) = node else { throw mismatch(name, "true or false", node) }
        return value
    }

    public func identifier(_ name: String) throws(MessageDecodingError) -> Identifier {
        let text = try string(name)
        guard let value = Identifier(text) else { throw .invalid("\(path).\(name)", "must be a UUID") }
        return value
    }

    public func timestamp(_ name: String) throws(MessageDecodingError) -> Timestamp {
        let text = try string(name)
        guard let value = Timestamp(rfc3339: text) else { throw .invalid("\(path).\(name)", "must be an RFC 3339 date-time") }
        return value
    }

    public func enumeration<E: RawRepresentable & CaseIterable>(_ type: E.Type, _ name: String) throws(MessageDecodingError) -> E where E.RawValue == String {
        let text = try string(name)
        guard let value = E(rawValue: text) else {
            throw .invalid("\(path).\(name)", "must be one of \(E.allCases.map { $0.rawValue }.joined(separator: ", ")); found '\(text.prefix(40))'")
        }
        return value
    }

    public func strings(_ name: String) throws(MessageDecodingError) -> [String] {
        let node = try required(name)
        guard case .array(let elements) = node else { throw mismatch(name, "an array", node) }
        var out: [String] = []
        out.reserveCapacity(elements.count)
        for (i, element) in elements.enumerated() {
            guard case .string(let value) = element else { throw .invalid("\(path).\(name)[\(i)]", "must be a string, found \(element.kind)") }
            out.append(value)
        }
        return out
    }

    public func stringMap(_ name: String) throws(MessageDecodingError) -> [String: String] {
        let node = try required(name)
        guard case .object(let members) = node else { throw mismatch(name, "an object", node) }
        var out: [String: String] = [:]
        for member in members {
            guard case .string(let value) = member.value else { throw .invalid("\(path).\(name).\(member.key)", "must be a string, found \(member.value.kind)") }
            out[member.key] = value
        }
        return out
    }

    public func object<T: JSONObjectCodable>(_ type: T.Type, _ name: String) throws(MessageDecodingError) -> T {
        try T(json: JSONObject(try required(name), path: "\(path).\(name)"))
    }

    public func objects<T: JSONObjectCodable>(_ type: T.Type, _ name: String) throws(MessageDecodingError) -> [T] {
        let node = try required(name)
        guard case .array(let elements) = node else { throw mismatch(name, "an array", node) }
        var out: [T] = []
        out.reserveCapacity(elements.count)
        for (i, element) in elements.enumerated() {
            out.append(try T(json: JSONObject(element, path: "\(path).\(name)[\(i)]")))
        }
        return out
    }

    // MARK: Optional (absent or null is nil)

    public func optionalString(_ name: String) throws(MessageDecodingError) -> String? { node(name) == nil ? nil : try string(name) }
    public func optionalInt(_ name: String) throws(MessageDecodingError) -> Int? { node(name) == nil ? nil : try int(name) }
    public func optionalDouble(_ name: String) throws(MessageDecodingError) -> Double? { node(name) == nil ? nil : try double(name) }
    public func optionalIdentifier(_ name: String) throws(MessageDecodingError) -> Identifier? { node(name) == nil ? nil : try identifier(name) }
    public func optionalEnumeration<E: RawRepresentable & CaseIterable>(_ type: E.Type, _ name: String) throws(MessageDecodingError) -> E? where E.RawValue == String {
        node(name) == nil ? nil : try enumeration(type, name)
    }
}
