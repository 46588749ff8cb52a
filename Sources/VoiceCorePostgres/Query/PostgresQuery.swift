/// A SQL statement whose values travel as `$n` parameters, never as SQL text.
///
/// String interpolation turns each interpolated value into the next bind parameter:
///
/// ```swift
/// let name = "'); DROP TABLE leads;--"
/// let rows = try await db.query("SELECT id FROM leads WHERE tenant_id = \(tenant) AND name = \(name)")
/// // sent as: SELECT id FROM leads WHERE tenant_id = $1 AND name = $2
/// ```
///
/// Identifiers (table or column names chosen by code) go through `\(identifier: name)`, which
/// quotes them. Raw SQL assembled at run time needs the explicitly named
/// ``init(unsafeSQL:binds:)``.
import Foundation

public struct PostgresQuery: Sendable, Hashable, ExpressibleByStringInterpolation, CustomStringConvertible {
    /// The SQL text, with `$1`, `$2`, … where values go.
    public private(set) var sql: String
    /// The values, in `$n` order.
    public private(set) var binds: [PostgresBind]

    /// SQL text taken as is. Only for SQL built by code that controls every character of it.
    public init(unsafeSQL sql: String, binds: [PostgresBind] = []) {
        self.sql = sql
        self.binds = binds
    }

    public init(stringLiteral value: String) {
        self.init(unsafeSQL: value)
    }

    public init(stringInterpolation: StringInterpolation) {
        self.init(unsafeSQL: stringInterpolation.sql, binds: stringInterpolation.binds)
    }

    /// A name as an SQL identifier: `"name"`, inner quotes doubled (for SQL built with
    /// ``init(unsafeSQL:binds:)``, where `\(identifier:)` is not at hand).
    public static func quoteIdentifier(_ name: String) -> String {
        "\"" + name.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }

    /// The SQL text only: binds are never printed (they may hold personal data or secrets).
    public var description: String { sql }

    /// Builds the SQL text and its binds.
    public struct StringInterpolation: StringInterpolationProtocol {
        var sql: String
        var binds: [PostgresBind] = []

        public init(literalCapacity: Int, interpolationCount: Int) {
            sql = ""
            sql.reserveCapacity(literalCapacity + interpolationCount * 3)
            binds.reserveCapacity(interpolationCount)
        }

        public mutating func appendLiteral(_ literal: String) {
            sql += literal
        }

        /// A value: becomes `$n`.
        public mutating func appendInterpolation<Value: PostgresEncodable>(_ value: Value) {
            binds.append(PostgresBind(value))
            sql += "$\(binds.count)"
        }

        /// An optional value: `$n`, bound to NULL when `nil`.
        public mutating func appendInterpolation<Value: PostgresEncodable>(_ value: Value?) {
            binds.append(PostgresBind(value))
            sql += "$\(binds.count)"
        }

        /// A table or column name chosen by code: quoted as an identifier (`"name"`).
        public mutating func appendInterpolation(identifier: String) {
            sql += PostgresQuery.quoteIdentifier(identifier)
        }
    }
}

/// One bound parameter: its Postgres type and its bytes (`nil` for NULL): the binary form when
/// the value has one and a definite type (see ``PostgresBinaryEncodable``), else the text form.
public struct PostgresBind: Sendable, Hashable {
    /// The parameter's type OID (0 lets the server infer it).
    public var type: PostgresDataType
    /// The value's bytes (text without a terminating NUL, or binary), or `nil` for NULL.
    public var bytes: [UInt8]?
    /// Whether ``bytes`` is the binary form.
    public var isBinary: Bool

    public init<Value: PostgresEncodable>(_ value: Value) {
        type = Value.postgresType
        isBinary = false
        if value.isPostgresNull {
            bytes = nil
            return
        }
        var bytes: [UInt8] = []
        if Value.postgresType != .unspecified, let binary = value as? any PostgresBinaryEncodable {
            binary.encodePostgresBinary(into: &bytes)
            isBinary = true
        } else {
            value.encodePostgresText(into: &bytes)
        }
        self.bytes = bytes
    }
}

/// A Postgres type OID.
public struct PostgresDataType: Sendable, Hashable, RawRepresentable {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public init(_ rawValue: UInt32) { self.rawValue = rawValue }

    /// Let the server infer the type from the statement.
    public static let unspecified = PostgresDataType(0)
    public static let bool = PostgresDataType(16)
    public static let bytea = PostgresDataType(17)
    public static let int8 = PostgresDataType(20)
    public static let int2 = PostgresDataType(21)
    public static let int4 = PostgresDataType(23)
    public static let int4Array = PostgresDataType(1007)
    public static let text = PostgresDataType(25)
    public static let float8 = PostgresDataType(701)
    public static let timestamptz = PostgresDataType(1184)
    public static let uuid = PostgresDataType(2950)
    public static let json = PostgresDataType(114)
    public static let jsonb = PostgresDataType(3802)
    public static let boolArray = PostgresDataType(1000)
    public static let int8Array = PostgresDataType(1016)
    public static let textArray = PostgresDataType(1009)
    public static let float8Array = PostgresDataType(1022)
    public static let timestamptzArray = PostgresDataType(1185)
    public static let uuidArray = PostgresDataType(2951)
    public static let jsonArray = PostgresDataType(199)
    public static let jsonbArray = PostgresDataType(3807)
}
