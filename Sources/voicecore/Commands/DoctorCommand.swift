import ArgumentParser
import VoiceCorePostgres
import VoiceCoreRedis

struct DoctorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "doctor",
        abstract: "Check that Redis and Postgres answer, and print their versions.",
        discussion: "Exits non-zero and says what to do when either one does not answer."
    )

    @OptionGroup var connections: ConnectionOptions

    func run() async throws {
        var healthy = true
        do {
            let configuration = try connections.redisConfiguration()
            do {
                let redis = try await RedisClient.connect(configuration)
                let (_, server, persistence) = try await redis.execute(.ping(), .info("server"), .info("persistence"))
                let version = Self.infoField("redis_version", in: server) ?? "?"
                let aof = Self.infoField("aof_enabled", in: persistence) == "1" ? "AOF on" : "AOF off: acknowledged events can be lost in a crash"
                print("ok    Redis \(version) at \(configuration) (\(aof))")
            } catch let error as RedisError {
                healthy = false
                print("FAIL  Redis: \(error.message)")
                if error.kind == .server {
                    print("      Fix: check the user and password in REDIS_URL.")
                } else {
                    print("      Fix: start the local servers with `tools/dev-env start`, or point REDIS_URL at a running Redis 7.")
                }
            }
        } catch {
            healthy = false
            print("FAIL  REDIS_URL: \(error)")
        }
        do {
            let configuration = try connections.postgresConfiguration()
            do {
                let db = try await PostgresConnection.connect(configuration)
                let rows = try await db.query("SELECT current_setting('server_version') AS version, current_user AS role, current_database() AS db")
                let version = try rows[0].decode(String.self, "version")
                let role = try rows[0].decode(String.self, "role")
                let database = try rows[0].decode(String.self, "db")
                print("ok    Postgres \(version) at \(configuration) (role \(role), database \(database))")
            } catch let error as PostgresError {
                healthy = false
                print("FAIL  Postgres: \(error.message)")
                if error.hint == nil {
                    print("      Fix: start the local servers with `tools/dev-env start`, or point DATABASE_URL at a running Postgres 15.")
                }
            }
        } catch {
            healthy = false
            print("FAIL  DATABASE_URL: \(error)")
        }
        if !healthy { throw ExitCode(1) }
    }

    static func infoField(_ name: String, in info: String) -> String? {
        for line in info.split(whereSeparator: \.isNewline) where line.hasPrefix(name + ":") {
            return String(line.dropFirst(name.count + 1))
        }
        return nil
    }
}
