import VoiceCoreTime

/// A type with a hand-written JSON object form (the payload types and their parts).
///
/// Hand-written rather than `Codable`: Codable's containers, boxes and dynamic casts made a
/// TranscriptChunk round trip cost about 10 µs even with a custom encoder; writing fields straight
/// into bytes and reading them from a parsed tree costs a fraction of that.
public protocol JSONObjectCodable: Sendable {
    /// Writes the object's fields (the writer adds the braces).
    func writeJSON(to object: inout JSONObjectWriter)
    /// Reads the object; errors name the field by its path.
    init(json object: JSONObject) throws(MessageDecodingError)
}

/// Writes one JSON object field by field. Optional fields that are `nil` are left out.
///
/// The bytes go into a buffer on the stack (a larger object moves to a growing buffer of the
/// writer's own), copied once into the array returned, so a field costs a few stores, not an
/// array append per piece. Not copyable: a copy would share that buffer.
public struct JSONObjectWriter: ~Copyable {
    private var base: UnsafeMutablePointer<UInt8>
    private var capacity: Int
    private var count = 0
    /// `base` was allocated by the writer (the object outgrew the array's reserved storage).
    private var ownsBase = false
    private var empty = true

    private init(base: UnsafeMutablePointer<UInt8>, capacity: Int) {
        self.base = base
        self.capacity = capacity
    }

    /// The finished object.
    static func encode(_ value: some JSONObjectCodable) -> [UInt8] {
        build(reserving: 512) { value.writeJSON(to: &$0) }
    }

    /// One object written by `build`, e.g. an HTTP answer:
    /// `JSONObjectWriter.object { $0.field("command_id", id) }`.
    public static func object(_ build: (inout JSONObjectWriter) -> Void) -> [UInt8] {
        Self.build(reserving: 128, build)
    }

    private static func build(reserving capacity: Int, _ body: (inout JSONObjectWriter) -> Void) -> [UInt8] {
        // Written on the stack and copied once into the array returned (an object that outgrows
        // the reserve moves to a buffer of the writer's own). Cheaper than writing into
        // `Array(unsafeUninitializedCapacity:)`'s storage: that calls the unspecialized
        // allocator, which looks up the array's metadata at run time.
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: capacity) { buffer in
            var writer = JSONObjectWriter(base: buffer.baseAddress!, capacity: buffer.count)
            writer.byte(UInt8(ascii: "{"))
            body(&writer)
            writer.byte(UInt8(ascii: "}"))
            let bytes = Array(UnsafeBufferPointer(start: writer.base, count: writer.count))
            if writer.ownsBase { writer.base.deallocate() }
            return bytes
        }
    }

    // MARK: Bytes

    /// Makes room for `extra` more bytes.
    @inline(__always)
    private mutating func reserve(_ extra: Int) {
        if count + extra > capacity { grow(count + extra) }
    }

    private mutating func grow(_ needed: Int) {
        let newCapacity = max(needed, capacity * 2)
        let newBase = UnsafeMutablePointer<UInt8>.allocate(capacity: newCapacity)
        newBase.update(from: base, count: count)
        if ownsBase { base.deallocate() }
        base = newBase
        capacity = newCapacity
        ownsBase = true
    }

    @inline(__always)
    private mutating func byte(_ value: UInt8) {
        reserve(1)
        base[count] = value
        count += 1
    }

    @inline(__always)
    private mutating func append(_ bytes: UnsafeBufferPointer<UInt8>) {
        reserve(bytes.count)
        if let source = bytes.baseAddress { (base + count).update(from: source, count: bytes.count) }
        count += bytes.count
    }

    private mutating func append(_ text: String) {
        var text = text
        text.withUTF8 { append($0) }
    }

    /// `,"name":` (no comma before the first field).
    @inline(__always)
    private mutating func key(_ name: StaticString) {
        name.withUTF8Buffer { name in
            reserve(name.count + 4)
            if empty { empty = false } else { base[count] = UInt8(ascii: ","); count += 1 }
            base[count] = UInt8(ascii: "\"")
            if let source = name.baseAddress { (base + count + 1).update(from: source, count: name.count) }
            count += name.count + 1
            base[count] = UInt8(ascii: "\"")
            base[count + 1] = UInt8(ascii: ":")
            count += 2
        }
    }

    public mutating func field(_ name: StaticString, _ value: String) {
        key(name)
        string(value)
    }

    public mutating func field(_ name: StaticString, _ value: Int) {
        key(name)
        integer(Int64(value))
    }

    public mutating func field(_ name: StaticString, _ value: Int64) {
        key(name)
        integer(value)
    }

    /// Integral values are written without a fraction (`3`, not `3.0`); non-finite values cannot
    /// reach here (validation rejects them).
    public mutating func field(_ name: StaticString, _ value: Double) {
        key(name)
        if value == value.rounded(), abs(value) < 1e15 {
            integer(Int64(value))
        } else if !value.isFinite {
            append("null")
        } else if !shortDecimal(value) {
            append(value.description)
        }
    }

    /// Writes a value of at most six decimals below 10⁹ in magnitude (confidences, scores,
    /// amounts) as such, e.g. `0.93`, without building a String; returns false for any other
    /// value. The text is the shortest that reads back as `value`: `n / 10⁶` rounds to `value`,
    /// and below 10⁹ doubles lie closer together than 10⁻⁶, so no other decimal of six places
    /// or fewer does.
    private mutating func shortDecimal(_ value: Double) -> Bool {
        guard abs(value) < 1e9 else { return false }
        let scaled = (value * 1e6).rounded()
        guard scaled / 1e6 == value else { return false }
        let micros = Int64(scaled)
        if micros < 0 { byte(UInt8(ascii: "-")) }
        integer(Int64(micros.magnitude / 1_000_000))
        var fraction = micros.magnitude % 1_000_000  // not 0: integral values are written before
        var digits = 6
        while fraction % 10 == 0 { fraction /= 10; digits -= 1 }
        reserve(digits + 1)
        base[count] = UInt8(ascii: ".")
        for position in stride(from: digits, to: 0, by: -1) {
            base[count + position] = UInt8(ascii: "0") + UInt8(truncatingIfNeeded: fraction % 10)
            fraction /= 10
        }
        count += digits + 1
        return true
    }

    public mutating func field(_ name: StaticString, _ value: Bool) {
        key(name)
        append(value ? "true" : "false")
    }

    public mutating func field(_ name: StaticString, _ value: Identifier) {
        key(name)
        reserve(38)
        base[count] = UInt8(ascii: "\"")
        value.write(to: base + count + 1)
        base[count + 37] = UInt8(ascii: "\"")
        count += 38
    }

    public mutating func field(_ name: StaticString, _ value: Timestamp) {
        key(name)
        let length = Timestamp.rfc3339Length
        reserve(length + 2)
        base[count] = UInt8(ascii: "\"")
        value.writeRFC3339(to: base + count + 1)
        base[count + length + 1] = UInt8(ascii: "\"")
        count += length + 2
    }

    public mutating func field<E: RawRepresentable>(_ name: StaticString, _ value: E) where E.RawValue == String {
        field(name, value.rawValue)
    }

    public mutating func field(_ name: StaticString, _ value: [String]) {
        key(name)
        byte(UInt8(ascii: "["))
        for (i, element) in value.enumerated() {
            if i > 0 { byte(UInt8(ascii: ",")) }
            string(element)
        }
        byte(UInt8(ascii: "]"))
    }

    /// An object of strings, keys in sorted order so equal maps give equal bytes.
    public mutating func field(_ name: StaticString, _ value: [String: String]) {
        key(name)
        byte(UInt8(ascii: "{"))
        for (i, entry) in value.sorted(by: { $0.key < $1.key }).enumerated() {
            if i > 0 { byte(UInt8(ascii: ",")) }
            string(entry.key)
            byte(UInt8(ascii: ":"))
            string(entry.value)
        }
        byte(UInt8(ascii: "}"))
    }

    public mutating func field(_ name: StaticString, _ value: [Identifier]) {
        key(name)
        byte(UInt8(ascii: "["))
        for (i, element) in value.enumerated() {
            if i > 0 { byte(UInt8(ascii: ",")) }
            string(element.description)
        }
        byte(UInt8(ascii: "]"))
    }

    /// An object of integers, keys in sorted order so equal maps give equal bytes.
    public mutating func field(_ name: StaticString, _ value: [String: Int]) {
        key(name)
        byte(UInt8(ascii: "{"))
        for (i, entry) in value.sorted(by: { $0.key < $1.key }).enumerated() {
            if i > 0 { byte(UInt8(ascii: ",")) }
            string(entry.key)
            byte(UInt8(ascii: ":"))
            integer(Int64(entry.value))
        }
        byte(UInt8(ascii: "}"))
    }

    public mutating func field(_ name: StaticString, _ value: some JSONObjectCodable) {
        key(name)
        object(value)
    }

    public mutating func field(_ name: StaticString, _ value: [some JSONObjectCodable]) {
        key(name)
        byte(UInt8(ascii: "["))
        for (i, element) in value.enumerated() {
            if i > 0 { byte(UInt8(ascii: ",")) }
            object(element)
        }
        byte(UInt8(ascii: "]"))
    }

    /// A nested object, written in place by the same writer.
    private mutating func object(_ value: some JSONObjectCodable) {
        byte(UInt8(ascii: "{"))
        empty = true
        value.writeJSON(to: &self)
        empty = false
        byte(UInt8(ascii: "}"))
    }

    // Optionals: absent when nil.
    public mutating func field(_ name: StaticString, _ value: String?) { if let value { field(name, value) } }
    public mutating func field(_ name: StaticString, _ value: Int?) { if let value { field(name, value) } }
    public mutating func field(_ name: StaticString, _ value: Double?) { if let value { field(name, value) } }
    public mutating func field(_ name: StaticString, _ value: Identifier?) { if let value { field(name, value) } }
    public mutating func field(_ name: StaticString, _ value: Timestamp?) { if let value { field(name, value) } }

    private mutating func string(_ value: String) {
        var value = value
        value.withUTF8 { utf8 in
            // Quotes and plain text at once; anything that needs escaping byte by byte after.
            let plainUntil = Self.plainPrefix(utf8)
            reserve(plainUntil + 2)
            base[count] = UInt8(ascii: "\"")
            count += 1
            append(UnsafeBufferPointer(rebasing: utf8[..<plainUntil]))
            if plainUntil < utf8.count {
                var escaped: [UInt8] = []
                Self.appendEscaped(UnsafeBufferPointer(rebasing: utf8[plainUntil...]), to: &escaped)
                escaped.withUnsafeBufferPointer { append($0) }
            }
            byte(UInt8(ascii: "\""))
        }
    }

    private mutating func integer(_ value: Int64) {
        // Digits are written backwards into a stack buffer, then copied at once.
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 20) { digits in
            var magnitude = value.magnitude
            var start = 20
            repeat {
                start -= 1
                digits[start] = UInt8(ascii: "0") + UInt8(truncatingIfNeeded: magnitude % 10)
                magnitude /= 10
            } while magnitude > 0
            if value < 0 { byte(UInt8(ascii: "-")) }
            append(UnsafeBufferPointer(rebasing: digits[start..<20]))
        }
    }

    /// Appends `value` as a JSON string literal (quoted and escaped).
    public static func appendString(_ value: String, to bytes: inout [UInt8]) {
        var value = value
        value.withUTF8 { utf8 in
            bytes.append(UInt8(ascii: "\""))
            let plainUntil = plainPrefix(utf8)
            bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[..<plainUntil]))
            if plainUntil < utf8.count { appendEscaped(UnsafeBufferPointer(rebasing: utf8[plainUntil...]), to: &bytes) }
            bytes.append(UInt8(ascii: "\""))
        }
    }

    /// How many bytes at the start need no escaping.
    private static func plainPrefix(_ utf8: UnsafeBufferPointer<UInt8>) -> Int {
        var plainUntil = 0
        while plainUntil < utf8.count {
            let byte = utf8[plainUntil]
            if byte == UInt8(ascii: "\"") || byte == 92 || byte < 0x20 { break }
            plainUntil += 1
        }
        return plainUntil
    }

    private static func appendEscaped(_ utf8: UnsafeBufferPointer<UInt8>, to bytes: inout [UInt8]) {
        for byte in utf8 {
            switch byte {
            case UInt8(ascii: "\""): bytes.append(92); bytes.append(UInt8(ascii: "\""))
            case 92: bytes.append(92); bytes.append(92)
            case 10: bytes.append(92); bytes.append(UInt8(ascii: "n"))
            case 13: bytes.append(92); bytes.append(UInt8(ascii: "r"))
            case 9: bytes.append(92); bytes.append(UInt8(ascii: "t"))
            case 0..<0x20:
                let hex: [UInt8] = Array("0123456789abcdef".utf8)
                bytes.append(contentsOf: [92, UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"), hex[Int(byte >> 4)], hex[Int(byte & 0xf)]])
            default: bytes.append(byte)
            }
        }
    }
}
