/// Writes rows for `COPY … FROM STDIN` in Postgres' text format, streaming them to the server in
/// chunks. Obtained from ``PostgresConnection/copyFromStdin(_:file:line:_:)``; valid only inside
/// its closure.
public final class PostgresCopyWriter {
    private var buffer: [UInt8] = []
    private var field: [UInt8] = []
    private let send: ([UInt8]) throws -> Void
    private let flushThreshold = 256 * 1024
    /// Rows appended so far.
    public private(set) var rowCount = 0

    init(send: @escaping ([UInt8]) throws -> Void) {
        self.send = send
        buffer.reserveCapacity(flushThreshold + 4096)
    }

    /// Appends one row; values in the COPY statement's column order (`nil` optionals are NULL).
    public func appendRow<each Value: PostgresEncodable>(_ values: repeat each Value) throws {
        var first = true
        for value in repeat each values {
            if !first { buffer.append(9) }
            first = false
            append(value)
        }
        buffer.append(10)
        rowCount += 1
        if buffer.count >= flushThreshold { try flush() }
    }

    /// Appends one row of values of mixed, run-time types.
    public func appendRow(_ values: [any PostgresEncodable]) throws {
        for (i, value) in values.enumerated() {
            if i > 0 { buffer.append(9) }
            append(value)
        }
        buffer.append(10)
        rowCount += 1
        if buffer.count >= flushThreshold { try flush() }
    }

    func flush() throws {
        guard !buffer.isEmpty else { return }
        try send(buffer)
        buffer.removeAll(keepingCapacity: true)
    }

    private func append(_ value: some PostgresEncodable) {
        if value.isPostgresNull {
            buffer.append(UInt8(ascii: "\\"))
            buffer.append(UInt8(ascii: "N"))
            return
        }
        field.removeAll(keepingCapacity: true)
        value.encodePostgresText(into: &field)
        // Text format escapes: backslash, tab, newline and carriage return.
        if !field.contains(where: { $0 == 92 || $0 == 9 || $0 == 10 || $0 == 13 }) {
            buffer.append(contentsOf: field)
            return
        }
        for byte in field {
            switch byte {
            case UInt8(ascii: "\\"): buffer.append(92); buffer.append(92)
            case 9: buffer.append(92); buffer.append(UInt8(ascii: "t"))
            case 10: buffer.append(92); buffer.append(UInt8(ascii: "n"))
            case 13: buffer.append(92); buffer.append(UInt8(ascii: "r"))
            default: buffer.append(byte)
            }
        }
    }
}

/// Writes rows for `COPY … FROM STDIN (FORMAT binary)`: the format's header, then per row the
/// field count and each value as its length and binary form, then the trailer. Obtained from
/// ``PostgresConnection/copyBinaryFromStdin(_:file:line:_:)``; valid only inside its closure.
public final class PostgresBinaryCopyWriter {
    private var buffer: [UInt8] = []
    private let send: ([UInt8]) throws -> Void
    private let flushThreshold = 256 * 1024
    /// Rows appended so far.
    public private(set) var rowCount = 0

    /// "PGCOPY\n\xFF\r\n\0", then flags (no OIDs) and the length of a header extension (none).
    static let header: [UInt8] = Array("PGCOPY\n".utf8) + [0xFF, 0x0D, 0x0A, 0x00] + [0, 0, 0, 0] + [0, 0, 0, 0]

    init(send: @escaping ([UInt8]) throws -> Void) {
        self.send = send
        buffer.reserveCapacity(flushThreshold + 4096)
        buffer.append(contentsOf: Self.header)
    }

    /// Appends one row; values in the COPY statement's column order, each of its column's type
    /// (`nil` optionals are NULL).
    public func appendRow<each Value: PostgresBinaryEncodable>(_ values: repeat each Value) throws {
        let countAt = buffer.count
        buffer.append(0)
        buffer.append(0)
        var fields: UInt16 = 0
        for value in repeat each values {
            appendBinaryField(value, to: &buffer)
            fields += 1
        }
        buffer[countAt] = UInt8(fields >> 8)
        buffer[countAt + 1] = UInt8(fields & 0xFF)
        rowCount += 1
        if buffer.count >= flushThreshold { try flush() }
    }

    func flush() throws {
        guard !buffer.isEmpty else { return }
        try send(buffer)
        buffer.removeAll(keepingCapacity: true)
    }

    /// The trailer (a field count of -1), then what is left.
    func finish() throws {
        buffer.append(contentsOf: [0xFF, 0xFF] as [UInt8])
        try flush()
    }
}
