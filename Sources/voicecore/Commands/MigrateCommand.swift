import ArgumentParser
import Foundation
import VoiceCorePostgres
import VoiceCoreProjections

struct MigrateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate",
        abstract: "Apply the database migrations, or show which are applied.",
        subcommands: [Up.self, Status.self],
        defaultSubcommand: Status.self
    )

    struct Options: ParsableArguments {
        @OptionGroup var connections: ConnectionOptions
        @Option(help: "The migrations directory.") var directory = "database/migrations"

        func migrator() async throws -> Migrator {
            let db = try await PostgresConnection.connect(try connections.postgresConfiguration())
            return Migrator(connection: db, directory: URL(fileURLWithPath: directory))
        }
    }

    struct Up: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Apply pending migrations in order, each in its own transaction (concurrent runs wait for each other)."
        )
        @OptionGroup var options: Options

        func run() async throws {
            do {
                let applied = try await options.migrator().up()
                print(applied.isEmpty ? "nothing to apply" : applied.map { "applied \($0.fileName)" }.joined(separator: "\n"))
            } catch let error as MigrationError {
                throw CommandFailure(error.message)
            }
        }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List migrations and when each was applied.")
        @OptionGroup var options: Options

        func run() async throws {
            do {
                for (migration, appliedAt) in try await options.migrator().status() {
                    print("\(migration.fileName)  \(appliedAt.map { "applied \($0)" } ?? "pending")")
                }
            } catch let error as MigrationError {
                throw CommandFailure(error.message)
            }
        }
    }
}
