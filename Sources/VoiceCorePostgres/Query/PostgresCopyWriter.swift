/// Writes rows for `COPY … FROM STDIN` in Postgres' text format, streaming them to the server in
/// chunks. Obtained from ``PostgresConnection/copyFromStdin(_:file:line:_:)``; valid only inside
/// its closure.
public final class PostgresCopyWriter {
    private var chunks: CopyChunks
    private var field: [UInt8] = []
    /// Rows appended so far.
    public var rowCount: Int { chunks.rows }

    init(send: @escaping ([UInt8]) throws -> Void) {
        chunks = CopyChunks(send: send)
    }

    /// Appends one row; values in the COPY statement's column order (`nil` optionals are NULL).
    public func appendRow<each Value: PostgresEncodable>(_ values: repeat each Value) throws {
        var first = true
        for value in repeat each values {
            if !first { chunks.buffer.append(9) }
            first = false
            append(value)
        }
        chunks.buffer.append(10)
        try chunks.endRow()
    }

    /// Appends one row of values of mixed, run-time types.
    public func appendRow(_ values: [any PostgresEncodable]) throws {
        for (i, value) in values.enumerated() {
            if i > 0 { chunks.buffer.append(9) }
            append(value)
        }
        chunks.buffer.append(10)
        try chunks.endRow()
    }

    func flush() throws { try chunks.flush() }

    private func append(_ value: some PostgresEncodable) {
        if value.isPostgresNull {
            chunks.buffer.append(UInt8(ascii: "\\"))
            chunks.buffer.append(UInt8(ascii: "N"))
            return
        }
        field.removeAll(keepingCapacity: true)
        value.encodePostgresText(into: &field)
        // Text format escapes: backslash, tab, newline and carriage return.
        if !field.contains(where: { $0 == 92 || $0 == 9 || $0 == 10 || $0 == 13 }) {
            chunks.buffer.append(contentsOf: field)
            return
        }
        for byte in field {
            switch byte {
            case UInt8(ascii: "\\"): chunks.buffer.append(92); chunks.buffer.append(92)
            case 9: chunks.buffer.append(92); chunks.buffer.append(UInt8(ascii: "t"))
            case 10: chunks.buffer.append(92); chunks.buffer.append(UInt8(ascii: "n"))
            case 13: chunks.buffer.append(92); chunks.buffer.append(UInt8(ascii: "r"))
            default: chunks.buffer.append(byte)
            }
        }
    }
}

/// Writes rows for `COPY … FROM STDIN (FORMAT binary)`: the format's header, then per row the
/// field count and each value as its length and binary form, then the trailer. Obtained from
/// ``PostgresConnection/copyBinaryFromStdin(_:file:line:_:)``; valid only inside its closure.
public final class PostgresBinaryCopyWriter {
    private var chunks: CopyChunks
    /// Rows appended so far.
    public var rowCount: Int { chunks.rows }

    /// "PGCOPY\n\xFF\r\n\0", then flags (no OIDs) and the length of a header extension (none).
    static let header: [UInt8] = Array("PGCOPY\n".utf8) + [0xFF, 0x0D, 0x0A, 0x00] + [0, 0, 0, 0] + [0, 0, 0, 0]

    init(send: @escaping ([UInt8]) throws -> Void) {
        chunks = CopyChunks(send: send)
        chunks.buffer.append(contentsOf: Self.header)
    }

    /// Appends one row; values in the COPY statement's column order, each of its column's type
    /// (`nil` optionals are NULL).
    public func appendRow<each Value: PostgresBinaryEncodable>(_ values: repeat each Value) throws {
        let countAt = chunks.buffer.count
        chunks.buffer.append(0)
        chunks.buffer.append(0)
        var fields: UInt16 = 0
        for value in repeat each values {
            appendBinaryField(value, to: &chunks.buffer)
            fields += 1
        }
        chunks.buffer[countAt] = UInt8(fields >> 8)
        chunks.buffer[countAt + 1] = UInt8(fields & 0xFF)
        try chunks.endRow()
    }

    func flush() throws { try chunks.flush() }

    /// The trailer (a field count of -1), then what is left.
    func finish() throws {
        chunks.buffer.append(contentsOf: [0xFF, 0xFF] as [UInt8])
        try flush()
    }
}

/// The COPY data both writers build: rows in a buffer, sent to the server 256 KiB at a time.
struct CopyChunks {
    var buffer: [UInt8] = []
    private(set) var rows = 0
    private let send: ([UInt8]) throws -> Void
    private static let threshold = 256 * 1024

    init(send: @escaping ([UInt8]) throws -> Void) {
        self.send = send
        buffer.reserveCapacity(Self.threshold + 4096)
    }

    /// A row is complete: counted, and the buffer sent once it is full.
    mutating func endRow() throws {
        rows += 1
        if buffer.count >= Self.threshold { try flush() }
    }

    mutating func flush() throws {
        guard !buffer.isEmpty else { return }
        try send(buffer)
        buffer.removeAll(keepingCapacity: true)
    }
}
