/// The rows a statement returned, copied out of libpq's result.
public struct PostgresRows: Sendable, RandomAccessCollection {
    /// Column names in result order.
    public let columns: [String]
    /// The rows.
    public let rows: [PostgresRow]
    /// Rows inserted, updated or deleted (from the command tag), or the row count of a SELECT.
    public let affectedRows: Int
    /// The command tag, e.g. `INSERT 0 3`.
    public let commandTag: String

    public var startIndex: Int { rows.startIndex }
    public var endIndex: Int { rows.endIndex }
    public subscript(position: Int) -> PostgresRow { rows[position] }

    init(columns: [String], rows: [PostgresRow], affectedRows: Int, commandTag: String) {
        self.columns = columns
        self.rows = rows
        self.affectedRows = affectedRows
        self.commandTag = commandTag
    }
}

/// One row. Decode its columns by name or position; errors name the column.
///
/// ```swift
/// for row in try await db.query("SELECT id, name, created_at FROM leads") {
///     let id = try row.decode(UUID.self, "id")
///     let name = try row.decode(String?.self, "name")
/// }
/// ```
public struct PostgresRow: Sendable {
    let columnIndex: ColumnIndex
    let values: [[UInt8]?]

    /// The column's value as it arrived (text form), `nil` for NULL.
    public func raw(_ column: String) -> [UInt8]? {
        columnIndex.positions[column].flatMap { values[$0] }
    }

    /// The value of the column at `position` (0-based) as it arrived, `nil` for NULL or past the end.
    public func raw(at position: Int) -> [UInt8]? {
        values.indices.contains(position) ? values[position] : nil
    }

    /// Decodes the named column.
    /// - Throws: ``PostgresError`` with code `decoding` naming the column, its type and the reason.
    public func decode<Value: PostgresDecodable>(_ type: Value.Type, _ column: String) throws -> Value {
        guard let position = columnIndex.positions[column] else {
            throw PostgresError(code: .decoding, message: "no column named '\(column)' in the result (columns: \(columnIndex.names.joined(separator: ", ")))")
        }
        return try decode(type, at: position)
    }

    /// Decodes the column at `position` (0-based).
    public func decode<Value: PostgresDecodable>(_ type: Value.Type, at position: Int) throws -> Value {
        guard values.indices.contains(position) else {
            throw PostgresError(code: .decoding, message: "the result has \(values.count) columns; there is no column \(position)")
        }
        do {
            return try Value(postgresText: values[position])
        } catch {
            var failure = PostgresError(code: .decoding, message: "column '\(columnIndex.names[position])' as \(Value.self): \(error.reason)")
            failure.column = columnIndex.names[position]
            throw failure
        }
    }
}

/// Column names shared by all rows of a result.
final class ColumnIndex: Sendable {
    let names: [String]
    let positions: [String: Int]

    init(names: [String]) {
        self.names = names
        var positions: [String: Int] = [:]
        for (i, name) in names.enumerated() where positions[name] == nil { positions[name] = i }
        self.positions = positions
    }
}
