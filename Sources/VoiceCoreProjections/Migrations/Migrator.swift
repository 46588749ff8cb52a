import Foundation
import Logging
import VoiceCoreEvents
import VoiceCorePostgres

/// One SQL migration: `database/migrations/NNNN_name.sql`.
public struct Migration: Sendable, Hashable {
    public var version: Int
    public var name: String
    public var sql: String
    /// SHA-1 of the file, recorded when applied; a changed file is refused.
    public var checksum: String

    public var fileName: String { String(format: "%04d_%@.sql", version, name) }
}

/// Why migrating failed.
public struct MigrationError: Error, Sendable, CustomStringConvertible {
    public var message: String
    /// The underlying Postgres error, when the server rejected a statement.
    public var postgres: PostgresError?

    public var description: String { message }
}

/// Applies the numbered SQL files of a directory in order, each in its own transaction, recorded
/// in `schema_migrations`. A Postgres advisory lock (per schema) makes concurrent migrators wait
/// for each other, so each migration is applied once. A failing migration is rolled back whole
/// (the schema stays as it was before it) and the error names the file, the line and the
/// statement. A file changed after it was applied is refused (its checksum differs).
///
/// ```swift
/// let migrator = Migrator(connection: db, directory: URL(fileURLWithPath: "database/migrations"))
/// let applied = try await migrator.up()
/// ```
public struct Migrator: Sendable {
    let connection: PostgresConnection
    public let directory: URL
    let logger: Logger

    public init(connection: PostgresConnection, directory: URL, logger: Logger = Logger(label: "voicecore.migrations")) {
        self.connection = connection
        self.directory = directory
        self.logger = logger
    }

    /// The migrations in the directory, ordered by version.
    public func migrations() throws -> [Migration] {
        guard let files = try? FileManager.default.contentsOfDirectory(atPath: directory.path) else {
            throw MigrationError(message: "no migrations directory at \(directory.path) (run from the repository root, or pass --directory)")
        }
        var migrations: [Migration] = []
        for file in files.sorted() where file.hasSuffix(".sql") {
            let stem = file.dropLast(4)
            guard let underscore = stem.firstIndex(of: "_"), let version = Int(stem[..<underscore]), version > 0 else {
                throw MigrationError(message: "\(file): migration files are named NNNN_name.sql")
            }
            let sql = try String(contentsOf: directory.appendingPathComponent(file), encoding: .utf8)
            if let clash = migrations.first(where: { $0.version == version }) {
                throw MigrationError(message: "\(file) and \(clash.fileName) share version \(version)")
            }
            migrations.append(Migration(version: version, name: String(stem[stem.index(after: underscore)...]), sql: sql, checksum: SHA1.hex(Array(sql.utf8))))
        }
        return migrations.sorted { $0.version < $1.version }
    }

    /// Each migration with when it was applied (`nil`: pending).
    public func status() async throws -> [(migration: Migration, appliedAt: Date?)] {
        let migrations = try migrations()
        let applied = try await connection.withConnection { db in
            try Self.ensureTable(db)
            return try Self.applied(db)
        }
        return migrations.map { ($0, applied[$0.version]?.appliedAt) }
    }

    /// Applies what is pending. Returns the migrations applied now.
    @discardableResult
    public func up() async throws -> [Migration] {
        let migrations = try migrations()
        let logger = logger
        return try await connection.withConnection { db in
            try db.query("SELECT pg_advisory_lock(hashtext('voicecore.migrations.' || current_schema()))")
            defer { _ = try? db.query("SELECT pg_advisory_unlock(hashtext('voicecore.migrations.' || current_schema()))") }
            try Self.ensureTable(db)
            let applied = try Self.applied(db)
            for migration in migrations {
                if let record = applied[migration.version], record.checksum != migration.checksum {
                    throw MigrationError(message: "\(migration.fileName) changed after it was applied (checksum \(record.checksum.prefix(12))… → \(migration.checksum.prefix(12))…); add a new migration instead of editing an applied one")
                }
            }
            var done: [Migration] = []
            for migration in migrations where applied[migration.version] == nil {
                try db.simpleQuery(unsafeSQL: "BEGIN")
                // Statement by statement, so a failure names its statement and line even when the
                // server gives no position.
                var current: SQLStatements.Statement?
                do {
                    for statement in SQLStatements.split(migration.sql) {
                        current = statement
                        try db.simpleQuery(unsafeSQL: statement.text)
                    }
                    current = nil
                    try db.query("INSERT INTO schema_migrations (version, name, checksum) VALUES (\(migration.version), \(migration.name), \(migration.checksum))")
                    try db.simpleQuery(unsafeSQL: "COMMIT")
                } catch let error as PostgresError {
                    _ = try? db.simpleQuery(unsafeSQL: "ROLLBACK")
                    throw MigrationError(message: Self.describe(error, in: migration, statement: current), postgres: error)
                }
                logger.info("applied migration", metadata: ["migration": "\(migration.fileName)"])
                done.append(migration)
            }
            return done
        }
    }

    private static func ensureTable(_ db: isolated PostgresConnection) throws {
        try db.simpleQuery(unsafeSQL: """
            CREATE TABLE IF NOT EXISTS schema_migrations (
              version    integer PRIMARY KEY,
              name       text NOT NULL,
              checksum   text NOT NULL,
              applied_at timestamptz NOT NULL DEFAULT now()
            )
            """)
    }

    private static func applied(_ db: isolated PostgresConnection) throws -> [Int: (checksum: String, appliedAt: Date)] {
        var result: [Int: (String, Date)] = [:]
        for row in try db.query("SELECT version, checksum, applied_at FROM schema_migrations") {
            result[try row.decode(Int.self, "version")] = (try row.decode(String.self, "checksum"), try row.decode(Date.self, "applied_at"))
        }
        return result
    }

    /// "0002_add_x.sql failed and was rolled back at line 7: relation "nowhere" does not exist — in: CREATE TABLE c (…)".
    static func describe(_ error: PostgresError, in migration: Migration, statement: SQLStatements.Statement?) -> String {
        var text = "\(migration.fileName) failed and was rolled back"
        if let statement {
            var line = statement.line
            if let position = error.position, position > 0 {
                line += statement.text.unicodeScalars.prefix(position - 1).filter { $0 == "\n" }.count
            }
            let excerpt = statement.text.split(whereSeparator: \.isWhitespace).joined(separator: " ")
            text += " at line \(line): \(error.message) — in: \(excerpt.prefix(160))"
        } else {
            text += ": \(error.message)"
        }
        if let sqlState = error.sqlState { text += " (SQLSTATE \(sqlState))" }
        return text
    }
}
