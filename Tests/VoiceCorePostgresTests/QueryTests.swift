import Foundation
import Testing
import VoiceCoreTime
@testable import VoiceCorePostgres

@Suite("Postgres queries against a real server")
struct QueryTests {
    @Test func everyTypeRoundTripsIncludingNullAndNonASCII() async throws {
        let db = try await TestPostgres.connect()
        let table = TestPostgres.table()
        try await db.query("""
            CREATE TABLE \(identifier: table) (
              i bigint, i4 integer, d double precision, b boolean, s text, t timestamptz, u uuid,
              bytes bytea, j jsonb, n text)
            """)
        let id = UUID()
        let time = Date(timeIntervalSince1970: 1_795_550_000.123456)
        let text = "Grüße, 東京 📞 — O'Brien \"quoted\" \\ back\ttab\nline"
        let bytes = PostgresBytes([0, 1, 2, 0x5c, 0xff])
        let json = try PostgresJSON(["intent": "appointment", "caller": "Zoë"])
        let none: String? = nil
        try await db.query("""
            INSERT INTO \(identifier: table) VALUES
              (\(Int.max), \(Int32(-7)), \(3.25), \(true), \(text), \(time), \(id), \(bytes), \(json), \(none))
            """)
        let row = try await db.query("SELECT * FROM \(identifier: table)")[0]
        #expect(try row.decode(Int.self, "i") == Int.max)
        #expect(try row.decode(Int64.self, "i") == Int64.max)
        #expect(try row.decode(Int32.self, "i4") == -7)
        #expect(try row.decode(Double.self, "d") == 3.25)
        #expect(try row.decode(Bool.self, "b") == true)
        #expect(try row.decode(String.self, "s") == text)
        #expect(try row.decode(Date.self, "t") == Date(timeIntervalSince1970: 1_795_550_000.123456))
        let decodedTime = try row.decode(Date.self, "t")
        #expect(abs(decodedTime.timeIntervalSince1970 - time.timeIntervalSince1970) < 0.000_001)
        #expect(try row.decode(UUID.self, "u") == id)
        let spelled = try await db.query("""
            SELECT 'ABCDEF01-2345-6789-ABCD-EF0123456789' AS upper, 'abcdef01-2345-6789-abcd-ef012345678g' AS bad, 'abcdef0123456789abcdef0123456789' AS bare
            """)[0]
        #expect(try spelled.decode(UUID.self, "upper") == UUID(uuidString: "abcdef01-2345-6789-abcd-ef0123456789"))
        #expect(throws: PostgresError.self) { try spelled.decode(UUID.self, "bad") }
        #expect(throws: PostgresError.self) { try spelled.decode(UUID.self, "bare") }
        #expect(try row.decode(PostgresBytes.self, "bytes") == bytes)
        #expect(try row.decode(PostgresJSON.self, "j").decode([String: String].self) == ["intent": "appointment", "caller": "Zoë"])
        #expect(try row.decode(String?.self, "n") == nil)
        #expect(try row.decode(Int?.self, "i") == Int.max)
        try await db.query("DROP TABLE \(identifier: table)")
    }

    @Test func decodingErrorsNameTheColumn() async throws {
        let db = try await TestPostgres.connect()
        let row = try await db.query("SELECT NULL::text AS nickname, 'abc' AS amount")[0]
        #expect {
            try row.decode(String.self, "nickname")
        } throws: { error in
            let error = error as? PostgresError
            return error?.code == .decoding && error?.column == "nickname" && error?.message.contains("NULL") == true
        }
        #expect {
            try row.decode(Int.self, "amount")
        } throws: { ($0 as? PostgresError)?.message.contains("'amount' as Int") == true }
        #expect {
            try row.decode(Int.self, "missing")
        } throws: { ($0 as? PostgresError)?.message.contains("no column named 'missing'") == true }
    }

    @Test func injectionTextIsStoredVerbatim() async throws {
        let db = try await TestPostgres.connect()
        let table = TestPostgres.table()
        try await db.query("CREATE TABLE \(identifier: table) (name text)")
        let hostile = "'); DROP TABLE \(table);--"
        let query: PostgresQuery = "INSERT INTO \(identifier: table) (name) VALUES (\(hostile))"
        #expect(query.sql == "INSERT INTO \"\(table)\" (name) VALUES ($1)")
        try await db.query(query)
        let rows = try await db.query("SELECT name FROM \(identifier: table)")
        #expect(try rows.map { try $0.decode(String.self, "name") } == [hostile])
        try await db.query("DROP TABLE \(identifier: table)")
    }

    @Test func transactionCommitsOnReturnAndRollsBackOnThrow() async throws {
        let db = try await TestPostgres.connect()
        let table = TestPostgres.table()
        try await db.query("CREATE TABLE \(identifier: table) (n int)")
        struct Boom: Error {}
        await #expect(throws: Boom.self) {
            try await db.withTransaction { db in
                try db.query("INSERT INTO \(identifier: table) VALUES (1)")
                throw Boom()
            }
        }
        let inserted = try await db.withTransaction { db in
            try db.query("INSERT INTO \(identifier: table) VALUES (2), (3)").affectedRows
        }
        #expect(inserted == 2)
        let values = try await db.query("SELECT n FROM \(identifier: table) ORDER BY n").map { try $0.decode(Int.self, "n") }
        #expect(values == [2, 3])
        // A failed statement inside the transaction rolls it all back, and the connection stays usable.
        await #expect(throws: PostgresError.self) {
            try await db.withTransaction { db in
                try db.query("INSERT INTO \(identifier: table) VALUES (4)")
                try db.query("INSERT INTO \(identifier: table) VALUES ('not a number')")
            }
        }
        #expect(try await db.query("SELECT count(*) AS c FROM \(identifier: table)")[0].decode(Int.self, "c") == 2)
        try await db.query("DROP TABLE \(identifier: table)")
    }

    @Test("writes held back in a transaction reach the server before any read or COPY, commit together, and fail it whole")
    func deferredWritesCommitTogetherAndFailTheTransactionWhole() async throws {
        let db = try await TestPostgres.connect()
        let observer = try await TestPostgres.connect()
        let table = TestPostgres.table()
        try await db.query("CREATE TABLE \(identifier: table) (n int)")
        func committed() async throws -> [Int] {
            try await observer.query("SELECT n FROM \(identifier: table) ORDER BY n").map { try $0.decode(Int.self, "n") }
        }
        // A read inside the transaction sees the writes before it; a COPY follows them.
        let seen = try await db.withTransaction(deferringWrites: true) { db in
            try db.write("INSERT INTO \(identifier: table) VALUES (1)")
            try db.write("INSERT INTO \(identifier: table) VALUES (2)")
            let seen = try db.query("SELECT count(*) AS c FROM \(identifier: table)")[0].decode(Int.self, "c")
            try db.write("INSERT INTO \(identifier: table) VALUES (3)")
            try db.copyFromStdin("COPY \(identifier: table) (n) FROM STDIN") { try $0.appendRow(4) }
            try db.write("INSERT INTO \(identifier: table) VALUES (5)")
            return seen
        }
        #expect(seen == 2)
        #expect(try await committed() == [1, 2, 3, 4, 5])
        // A write the server refuses fails the transaction when it is sent (here with the COMMIT),
        // with the server's reason; nothing of the transaction is stored.
        let refused = await #expect(throws: PostgresError.self) {
            try await db.withTransaction(deferringWrites: true) { db in
                try db.write("INSERT INTO \(identifier: table) VALUES (6)")
                try db.write("INSERT INTO \(identifier: table) VALUES ('not a number')")
                try db.write("INSERT INTO \(identifier: table) VALUES (7)")
            }
        }
        #expect(refused?.sqlState == "22P02", "\(String(describing: refused))")
        #expect(try await committed() == [1, 2, 3, 4, 5])
        // A transaction that fails before anything was sent leaves nothing behind either, and the
        // next one starts clean: no statement of the failed one rides along.
        struct Boom: Error {}
        await #expect(throws: Boom.self) {
            try await db.withTransaction(deferringWrites: true) { db in
                try db.write("INSERT INTO \(identifier: table) VALUES (8)")
                throw Boom()
            }
        }
        // Outside a transaction a write runs at once, committed on its own.
        try await db.write("INSERT INTO \(identifier: table) VALUES (9)")
        try await db.withTransaction(deferringWrites: true) { db in try db.write("INSERT INTO \(identifier: table) VALUES (10)") }
        #expect(try await committed() == [1, 2, 3, 4, 5, 9, 10])
        try await db.query("DROP TABLE \(identifier: table)")
        await observer.close()
    }

    @Test("statements sent in pipelines are prepared once per session, up to the configured number, and stay correct when their table changes")
    func pipelinedStatementsArePreparedOncePerSession() async throws {
        func connect(keeping count: Int) async throws -> PostgresConnection {
            var configuration = try PostgresConfiguration(url: TestPostgres.url)
            configuration.preparedStatements = count
            return try await PostgresConnection.connect(configuration)
        }
        let db = try await connect(keeping: 2)
        let table = TestPostgres.table()
        try await db.query("CREATE TABLE \(identifier: table) (n int, label text)")
        func kept(_ db: PostgresConnection) async throws -> [String] {
            try await db.query("SELECT statement FROM pg_prepared_statements WHERE statement LIKE '%' || \(table) || '%' ORDER BY statement")
                .map { try $0.decode(String.self, "statement") }
        }
        // The same INSERT in three pipelines (and in a transaction of held-back writes): prepared once.
        for round in 0..<3 {
            try await db.pipeline((0..<4).map { "INSERT INTO \(identifier: table) (n, label) VALUES (\(round * 10 + $0), \("r\(round)"))" })
        }
        try await db.withTransaction(deferringWrites: true) { db in
            try db.write("INSERT INTO \(identifier: table) (n, label) VALUES (\(100), \("tx"))")
        }
        let keptOnce = try await kept(db)
        #expect(keptOnce.count == 1, "\(keptOnce)")
        #expect(try await db.query("SELECT count(*) AS c FROM \(identifier: table)")[0].decode(Int.self, "c") == 13)
        // Two more statements: one is kept, the third runs unnamed, and all three give their rows.
        let selects = try await db.pipeline([
            "SELECT n FROM \(identifier: table) WHERE n = \(1)",
            "SELECT label FROM \(identifier: table) WHERE n = \(21)",
            "SELECT count(*) AS c FROM \(identifier: table) WHERE n >= \(0)",
        ])
        #expect(try selects[0][0].decode(Int.self, "n") == 1)
        #expect(try selects[1][0].decode(String.self, "label") == "r2")
        #expect(try selects[2][0].decode(Int.self, "c") == 13)
        #expect(try await kept(db).count == 2)
        // A kept statement whose table changed shape fails once with the server's reason, then is
        // prepared afresh and answers with the new shape.
        let star: PostgresQuery = "SELECT * FROM \(identifier: table) WHERE n = \(1)"
        let other = try await connect(keeping: 8)
        #expect(try await other.pipeline([star])[0][0].decode(Int.self, "n") == 1)
        try await db.query("ALTER TABLE \(identifier: table) ADD COLUMN extra int DEFAULT 7")
        let changed = await #expect(throws: PostgresError.self) { try await other.pipeline([star]) }
        #expect(changed?.sqlState == "0A000", "\(String(describing: changed))")
        #expect(try await other.pipeline([star])[0][0].decode(Int.self, "extra") == 7)
        // 0 keeps none.
        let none = try await connect(keeping: 0)
        try await none.pipeline(["INSERT INTO \(identifier: table) (n) VALUES (\(5))", "INSERT INTO \(identifier: table) (n) VALUES (\(6))"])
        #expect(try await kept(none).isEmpty)
        try await db.query("DROP TABLE \(identifier: table)")
        for connection in [db, other, none] { await connection.close() }
    }

    @Test func uniqueViolationCarriesSQLStateAndConstraint() async throws {
        let db = try await TestPostgres.connect()
        let table = TestPostgres.table()
        try await db.query("CREATE TABLE \(identifier: table) (email text CONSTRAINT \(identifier: table + "_email_key") UNIQUE)")
        try await db.query("INSERT INTO \(identifier: table) VALUES (\("a@example.com"))")
        await #expect {
            try await db.query("INSERT INTO \(identifier: table) VALUES (\("a@example.com"))")
        } throws: { error in
            guard let error = error as? PostgresError else { return false }
            return error.sqlState == "23505" && error.isUniqueViolation && error.constraint == table + "_email_key"
                && error.detail?.contains("already exists") == true && error.query?.contains("$1") == true
                && !error.description.contains("a@example.com")
        }
        try await db.query("DROP TABLE \(identifier: table)")
    }

    @Test func copyLoadsOneHundredThousandRows() async throws {
        let db = try await TestPostgres.connect()
        let table = TestPostgres.table()
        try await db.query("CREATE TABLE \(identifier: table) (id bigint PRIMARY KEY, note text, at timestamptz)")
        let at = Date(timeIntervalSince1970: 1_795_550_000)
        let copied = try await db.copyFromStdin(PostgresQuery(unsafeSQL: "COPY \"\(table)\" (id, note, at) FROM STDIN")) { writer in
            for i in 0..<100_000 {
                let note: String? = i % 10 == 0 ? nil : (i == 7 ? "tab\there\nnewline \\ backslash" : "row \(i)")
                try writer.appendRow(i, note, at)
            }
        }
        #expect(copied == 100_000)
        let stats = try await db.query("SELECT count(*) AS n, sum(id) AS s, count(note) AS notes FROM \(identifier: table)")[0]
        #expect(try stats.decode(Int.self, "n") == 100_000)
        #expect(try stats.decode(Int.self, "s") == 99_999 * 100_000 / 2)
        #expect(try stats.decode(Int.self, "notes") == 90_000)
        let special = try await db.query("SELECT note, at FROM \(identifier: table) WHERE id = 7")[0]
        #expect(try special.decode(String.self, "note") == "tab\there\nnewline \\ backslash")
        #expect(try special.decode(Date.self, "at") == at)
        try await db.query("DROP TABLE \(identifier: table)")
    }

    @Test func failedCopyStoresNothing() async throws {
        let db = try await TestPostgres.connect()
        let table = TestPostgres.table()
        try await db.query("CREATE TABLE \(identifier: table) (id bigint PRIMARY KEY)")
        struct Stop: Error {}
        await #expect(throws: Stop.self) {
            try await db.copyFromStdin(PostgresQuery(unsafeSQL: "COPY \"\(table)\" (id) FROM STDIN")) { writer in
                for i in 0..<1000 { try writer.appendRow(i) }
                throw Stop()
            }
        }
        // A duplicate key makes the server reject the whole COPY.
        await #expect {
            try await db.copyFromStdin(PostgresQuery(unsafeSQL: "COPY \"\(table)\" (id) FROM STDIN")) { writer in
                try writer.appendRow(1)
                try writer.appendRow(1)
            }
        } throws: { ($0 as? PostgresError)?.sqlState == "23505" }
        #expect(try await db.query("SELECT count(*) AS n FROM \(identifier: table)")[0].decode(Int.self, "n") == 0)
        try await db.query("DROP TABLE \(identifier: table)")
    }

    @Test func pipelineModeRunsBatchesAndStopsAtTheFirstError() async throws {
        let db = try await TestPostgres.connect()
        let table = TestPostgres.table()
        try await db.query("CREATE TABLE \(identifier: table) (id bigint PRIMARY KEY)")
        let inserts: [PostgresQuery] = (0..<5000).map { "INSERT INTO \(identifier: table) VALUES (\($0))" }
        let results = try await db.withTransaction { db in try db.pipeline(inserts, syncEvery: 700) }
        #expect(results.count == 5000)
        #expect(results.allSatisfy { $0.affectedRows == 1 })
        #expect(try await db.query("SELECT count(*) AS n FROM \(identifier: table)")[0].decode(Int.self, "n") == 5000)

        let failing: [PostgresQuery] = ["INSERT INTO \(identifier: table) VALUES (\(9001))", "INSERT INTO \(identifier: table) VALUES (\(1))", "INSERT INTO \(identifier: table) VALUES (\(9002))"]
        await #expect {
            try await db.withTransaction { db in try db.pipeline(failing) }
        } throws: { ($0 as? PostgresError)?.sqlState == "23505" }
        #expect(try await db.query("SELECT count(*) AS n FROM \(identifier: table) WHERE id > 9000")[0].decode(Int.self, "n") == 0)
        // The connection is usable afterwards.
        #expect(try await db.query("SELECT 1 AS one")[0].decode(Int.self, "one") == 1)
        try await db.query("DROP TABLE \(identifier: table)")
    }

    @Test func arrayParametersFeedUnnest() async throws {
        let db = try await TestPostgres.connect()
        let ids = [3, 1, 2, 4, 5, 6, 7]
        let names: [String?] = ["a \"quoted\" name", nil, "back\\slash, comma {brace}", "ends with \\", "\"\\\"\\", "NULL", ""]
        let rows = try await db.query("SELECT * FROM unnest(\(ids), \(names)) AS t(id, name) ORDER BY id")
        #expect(try rows.map { try $0.decode(Int.self, "id") } == [1, 2, 3, 4, 5, 6, 7])
        #expect(try rows.map { try $0.decode(String?.self, "name") }
                == [nil, "back\\slash, comma {brace}", "a \"quoted\" name", "ends with \\", "\"\\\"\\", "NULL", ""])
    }

    @Test func wrongPasswordGivesAClearAuthenticationError() async throws {
        let url = TestPostgres.url.replacingOccurrences(of: "voicecore:voicecore@", with: "voicecore:wrong-pass-9931@")
        await #expect {
            try await PostgresConnection.connect(PostgresConfiguration(url: url))
        } throws: { error in
            guard let error = error as? PostgresError else { return false }
            return error.code == .connection && error.isAuthenticationFailure
                && error.message.contains("password authentication failed")
                && !"\(error)".contains("wrong-pass-9931") && !error.debugDescription.contains("wrong-pass-9931")
        }
    }

    @Test func urlParametersPassThroughToLibpq() async throws {
        let separator = TestPostgres.url.contains("?") ? "&" : "?"
        let db = try await PostgresConnection.connect(PostgresConfiguration(url: TestPostgres.url + separator + "options=-c%20statement_timeout%3D1234&application_name=vc-test-app"))
        let row = try await db.query("SELECT current_setting('statement_timeout') AS t, current_setting('application_name') AS a")[0]
        #expect(try row.decode(String.self, "t") == "1234ms")
        #expect(try row.decode(String.self, "a") == "vc-test-app")
        // Without URL parameters the application name is VoiceCore's default.
        let plain = try await TestPostgres.connect()
        #expect(try await plain.query("SELECT current_setting('application_name') AS a")[0].decode(String.self, "a") == "voicecore")
    }

    @Test func configurationHidesThePassword() throws {
        let configuration = try PostgresConfiguration(url: "postgres://app:s3cret@db:5432/vc?sslmode=require&password=other")
        #expect(configuration.description == "postgres://app:***@db:5432/vc?sslmode=require&password=***")
        #expect(throws: PostgresError.self) { try PostgresConfiguration(url: "mysql://x") }
    }

    @Test func aTerminatedBackendFailsTheStatementAndTheNextReconnects() async throws {
        let db = try await TestPostgres.connect()
        let admin = try await TestPostgres.connect()
        let pid = try await db.query("SELECT pg_backend_pid() AS pid")[0].decode(Int.self, "pid")
        try await admin.query("SELECT pg_terminate_backend(\(Int32(pid)))")
        await #expect {
            try await db.query("SELECT 1")
        } throws: { ($0 as? PostgresError)?.code == .connection && ($0 as? PostgresError)?.isOutage == true }
        // The next statement connects again by itself: a new session with the same settings.
        let rows = try await db.query("SELECT pg_backend_pid() AS pid, current_setting('TimeZone') AS zone")
        #expect(try rows[0].decode(Int.self, "pid") != pid)
        #expect(try rows[0].decode(String.self, "zone") == "UTC")

        // Lost inside a transaction: the transaction fails whole, nothing of it is committed, and
        // no later statement of it runs on a new session.
        let table = "reconnect_\(UUID().uuidString.prefix(8).lowercased())"
        try await db.simpleQuery(unsafeSQL: "CREATE TABLE \(table) (n int)")
        defer { Task { _ = try? await admin.simpleQuery(unsafeSQL: "DROP TABLE IF EXISTS \(table)") } }
        let victim = try await db.query("SELECT pg_backend_pid() AS pid")[0].decode(Int.self, "pid")
        await #expect(throws: PostgresError.self) {
            try await db.withTransaction { db in
                try db.query(PostgresQuery(unsafeSQL: "INSERT INTO \(table) VALUES (1)"))
                _ = try? db.query("SELECT pg_terminate_backend(\(Int32(victim)))")
                try db.query(PostgresQuery(unsafeSQL: "INSERT INTO \(table) VALUES (2)"))
            }
        }
        #expect(try await admin.query(PostgresQuery(unsafeSQL: "SELECT count(*) AS n FROM \(table)"))[0].decode(Int.self, "n") == 0)
        #expect(try await db.query("SELECT 2 AS two")[0].decode(Int.self, "two") == 2)

        // A holder whose session state matters (the projector's advisory locks) turns it off.
        var configuration = try PostgresConfiguration(url: TestPostgres.url)
        configuration.reconnectsAutomatically = false
        let locked = try await PostgresConnection.connect(configuration)
        let lockedPID = try await locked.query("SELECT pg_backend_pid() AS pid")[0].decode(Int.self, "pid")
        try await admin.query("SELECT pg_terminate_backend(\(Int32(lockedPID)))")
        await #expect { try await locked.query("SELECT 1") } throws: { ($0 as? PostgresError)?.code == .connection }
        await #expect { try await locked.query("SELECT 1") } throws: { ($0 as? PostgresError)?.code == .connectionClosed }
        try await locked.reconnect()
        #expect(try await locked.query("SELECT 3 AS three")[0].decode(Int.self, "three") == 3)
    }

    @Test func slowQueriesDoNotDelayOtherTasks() async throws {
        let sleepers = [try await TestPostgres.connect(), try await TestPostgres.connect()]
        let clock = ContinuousClock()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for db in sleepers {
                group.addTask { try await db.query("SELECT pg_sleep(1.5)") }
            }
            try await Task.sleep(for: .milliseconds(100))
            let start = clock.now
            for _ in 0..<10 { try await Task.sleep(for: .milliseconds(5)) }
            let elapsed = clock.now - start
            #expect(elapsed < .milliseconds(700), "ten 5 ms sleeps took \(elapsed) while two queries slept in Postgres")
            try await group.waitForAll()
        }
    }

    @Test func timestampsAreExactToTheMicrosecond() async throws {
        let db = try await TestPostgres.connect()
        let instant = Timestamp(microsecondsSinceEpoch: 1_795_550_000_123_457)
        let row = try await db.query("SELECT \(instant)::timestamptz AS t, \(instant)::timestamptz + interval '90 minutes' AS later")[0]
        #expect(try row.decode(Timestamp.self, "t") == instant)
        #expect(try row.decode(Timestamp.self, "later") == instant.adding(microseconds: 90 * 60 * 1_000_000))
        // Whatever the server's zone, sessions read UTC.
        #expect(try await db.query("SELECT current_setting('TimeZone') AS z")[0].decode(String.self, "z") == "UTC")
    }

    /// Typed parameters travel in binary: the server must see exactly the value the text form
    /// gives, for the edges of every type (extremes, NaN, negative zero, times before 2000,
    /// NULL elements, empty arrays, text the array literal would have to quote).
    @Test func binaryParametersMeanWhatTheirTextMeans() async throws {
        let db = try await TestPostgres.connect()
        func check<Value: PostgresEncodable>(_ value: Value, as type: String, sourceLocation: SourceLocation = #_sourceLocation) async throws {
            let binary = PostgresBind(value)
            #expect(binary.isBinary, "\(Value.self) should travel in binary", sourceLocation: sourceLocation)
            var text = binary
            text.isBinary = false
            text.bytes = value.isPostgresNull ? nil : { var bytes: [UInt8] = []; value.encodePostgresText(into: &bytes); return bytes }()
            let row = try await db.query(PostgresQuery(unsafeSQL: "SELECT $1::\(type)::text AS binary, $2::\(type)::text AS text", binds: [binary, text]))[0]
            let fromBinary = try row.decode(String?.self, "binary"), fromText = try row.decode(String?.self, "text")
            #expect(fromBinary == fromText, "\(type): binary \(fromBinary ?? "NULL") ≠ text \(fromText ?? "NULL")", sourceLocation: sourceLocation)
        }
        for value in [Int.min, -1, 0, 1, Int.max] { try await check(value, as: "int8") }
        for value in [Int32.min, -7, 0, Int32.max] { try await check(value, as: "int4") }
        for value in [0.1, -0.0, .leastNonzeroMagnitude, -Double.greatestFiniteMagnitude, .infinity, -.infinity, .nan, 3.25] { try await check(value, as: "float8") }
        try await check(true, as: "bool")
        try await check(false, as: "bool")
        for micros: Int64 in [0, -1, 946_684_800_000_000, 946_684_799_999_999, 1_795_550_000_123_457, -62_135_596_800_000_000] {
            try await check(Timestamp(microsecondsSinceEpoch: micros), as: "timestamptz")
        }
        try await check(Date(timeIntervalSince1970: 1_795_550_000.25), as: "timestamptz")
        try await check(UUID(), as: "uuid")
        try await check(PostgresBytes([0, 1, 0x5c, 0xff]), as: "bytea")
        try await check(try PostgresJSON(["b": "Zoë", "a": "say \"hi\""]), as: "jsonb")
        try await check(PostgresJSONText(rawJSON: Array(#"{"z": 1,  "a": [true, null]}"#.utf8)), as: "json")
        try await check([Int](), as: "int8[]")
        try await check([Int?](arrayLiteral: 1, nil, -3), as: "int8[]")
        try await check([Int32(1), Int32.min], as: "int4[]")
        try await check([UUID(), UUID()], as: "uuid[]")
        try await check([Timestamp(microsecondsSinceEpoch: -1), Timestamp(microsecondsSinceEpoch: 1_795_550_000_000_001)], as: "timestamptz[]")
        try await check([0.1, .nan, -0.0], as: "float8[]")
        try await check([true, false], as: "bool[]")
        try await check(["a \"quoted\" name", nil, "back\\slash, comma {brace}", "NULL", "", "Grüße 📞\ttab\nline"] as [String?], as: "text[]")
        try await check([PostgresJSONText(rawJSON: Array("[1, 2]".utf8)), PostgresJSONText(rawJSON: Array(#"{"k":"v"}"#.utf8))], as: "json[]")
        try await check([try PostgresJSON(["k": 1])], as: "jsonb[]")
        // A string parameter stays text: the server still infers its type from the statement.
        #expect(!PostgresBind("x").isBinary)
        #expect(try await db.query("SELECT \("{\"k\": 2}")::jsonb ->> 'k' AS k")[0].decode(String.self, "k") == "2")
    }

    @Test func binaryCopyLoadsEveryTypeExactly() async throws {
        let db = try await TestPostgres.connect()
        let table = TestPostgres.table()
        try await db.query("""
            CREATE TABLE \(identifier: table) (
              id bigint PRIMARY KEY, i4 integer, d double precision, b boolean, s text, t timestamptz, u uuid,
              bytes bytea, j jsonb, js json)
            """)
        let base = Timestamp(microsecondsSinceEpoch: 946_684_799_999_990)
        let special = "tab\there\nnewline \\ backslash, Grüße 📞"
        let copied = try await db.copyBinaryFromStdin(PostgresQuery(unsafeSQL: "COPY \"\(table)\" (id, i4, d, b, s, t, u, bytes, j, js) FROM STDIN (FORMAT binary)")) { writer in
            for i in 0..<50_000 {
                let note: String? = i % 10 == 0 ? nil : (i == 7 ? special : "row \(i)")
                try writer.appendRow(i, Int32(clamping: -i), Double(i) / 4, i % 2 == 0, note, base.adding(microseconds: Int64(i)),
                                     UUID(uuid: (UInt8(i & 0xff), UInt8(i >> 8 & 0xff), UInt8(i >> 16 & 0xff), 0, 0, 0, 0x40, 0, 0x80, 0, 0, 0, 0, 0, 0, 1)),
                                     i == 7 ? PostgresBytes([0, 0x5c, 0xff]) : nil, try PostgresJSON(["n": i]), PostgresJSONText(rawJSON: Array("[\(i), \"x\"]".utf8)))
            }
        }
        #expect(copied == 50_000)
        let stats = try await db.query("""
            SELECT count(*) AS n, sum(id) AS s, sum(i4) AS s4, sum(d) AS d, count(*) FILTER (WHERE b) AS evens, count(s) AS notes,
                   min(t) AS first, max(t) AS last, count(DISTINCT u) AS ids, sum((j ->> 'n')::int8) AS jn, sum((js ->> 0)::int8) AS jsn
            FROM \(identifier: table)
            """)[0]
        #expect(try stats.decode(Int.self, "n") == 50_000)
        #expect(try stats.decode(Int.self, "s") == 49_999 * 50_000 / 2)
        #expect(try stats.decode(Int.self, "s4") == -(49_999 * 50_000 / 2))
        #expect(try stats.decode(Double.self, "d") == Double(49_999 * 50_000 / 2) / 4)
        #expect(try stats.decode(Int.self, "evens") == 25_000)
        #expect(try stats.decode(Int.self, "notes") == 45_000)
        #expect(try stats.decode(Timestamp.self, "first") == base)
        #expect(try stats.decode(Timestamp.self, "last") == base.adding(microseconds: 49_999))
        #expect(try stats.decode(Int.self, "ids") == 50_000)
        #expect(try stats.decode(Int.self, "jn") == 49_999 * 50_000 / 2)
        #expect(try stats.decode(Int.self, "jsn") == 49_999 * 50_000 / 2)
        let row = try await db.query("SELECT s, bytes, js::text AS js, t FROM \(identifier: table) WHERE id = 7")[0]
        #expect(try row.decode(String.self, "s") == special)
        #expect(try row.decode(PostgresBytes.self, "bytes") == PostgresBytes([0, 0x5c, 0xff]))
        #expect(try row.decode(String.self, "js") == "[7, \"x\"]")
        #expect(try await db.query("SELECT t::text AS t FROM \(identifier: table) WHERE id = 0")[0].decode(String.self, "t") == "1999-12-31 23:59:59.99999+00")
        try await db.query("DROP TABLE \(identifier: table)")
    }

    @Test func failedBinaryCopyStoresNothingAndSaysWhy() async throws {
        let db = try await TestPostgres.connect()
        let table = TestPostgres.table()
        try await db.query("CREATE TABLE \(identifier: table) (id bigint PRIMARY KEY, n integer)")
        let copy = PostgresQuery(unsafeSQL: "COPY \"\(table)\" (id, n) FROM STDIN (FORMAT binary)")
        struct Stop: Error {}
        await #expect(throws: Stop.self) {
            try await db.copyBinaryFromStdin(copy) { writer in
                for i in 0..<1000 { try writer.appendRow(i, Int32(i)) }
                throw Stop()
            }
        }
        // An Int (8 bytes) for an integer column (4): the server refuses the binary value.
        await #expect {
            try await db.copyBinaryFromStdin(copy) { writer in try writer.appendRow(1, 2) }
        } throws: { ($0 as? PostgresError)?.sqlState == "22P03" }
        await #expect {
            try await db.copyBinaryFromStdin(copy) { writer in
                try writer.appendRow(1, Int32(1))
                try writer.appendRow(1, Int32(2))
            }
        } throws: { ($0 as? PostgresError)?.sqlState == "23505" }
        #expect(try await db.query("SELECT count(*) AS n FROM \(identifier: table)")[0].decode(Int.self, "n") == 0)
        // The connection is usable afterwards.
        #expect(try await db.copyBinaryFromStdin(copy) { writer in try writer.appendRow(5, Int32(6)) } == 1)
        try await db.query("DROP TABLE \(identifier: table)")
    }
}
